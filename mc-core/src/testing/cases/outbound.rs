//! Cases for the gateways the relay dials and the relay's settings.

use std::sync::Arc;

use crate::ids::*;
use crate::model::*;
use crate::store::{ConflictKind, Store, StoreError};
use crate::testing::fixtures::{self, now};

fn link(gateway: GatewayId) -> OutboundLink {
    OutboundLink {
        gateway_id: gateway,
        url: "ws://127.0.0.1:18789".into(),
        token: Some("shared-secret".into()),
        device_token: None,
        pairing_request_id: None,
        last_error: None,
        updated_at: now(),
    }
}

pub async fn outbound_gateway_create_update_delete(store: Arc<dyn Store>) {
    let org = fixtures::org();
    store.create_org(&org).await.unwrap();
    let mut gateway = fixtures::gateway(org.id);
    gateway.auto_registered = false;
    gateway.url = Some("ws://127.0.0.1:18789".into());
    let stored = link(gateway.id);
    store.create_outbound_gateway(&gateway, &stored).await.unwrap();
    assert_eq!(store.get_gateway(gateway.id).await.unwrap(), Some(gateway.clone()));
    assert_eq!(store.get_outbound_link(gateway.id).await.unwrap(), Some(stored.clone()));
    assert_eq!(store.list_outbound_links().await.unwrap(), vec![stored.clone()]);
    assert_eq!(store.count_outbound_gateways(org.id).await.unwrap(), 1);
    assert_eq!(store.count_outbound_gateways(OrgId::new()).await.unwrap(), 0, "per organization");

    // A name taken in the organization: neither row is written.
    let mut twin = fixtures::gateway(org.id);
    twin.name = gateway.name.clone();
    let err = store.create_outbound_gateway(&twin, &link(twin.id)).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(ConflictKind::GatewayName)), "{err:?}");
    assert_eq!(store.get_outbound_link(twin.id).await.unwrap(), None);
    assert_eq!(store.list_outbound_links().await.unwrap().len(), 1);
    // An unknown organization.
    let stray = fixtures::gateway(OrgId::new());
    let err = store.create_outbound_gateway(&stray, &link(stray.id)).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");

    let later = now();
    store
        .set_outbound_state(gateway.id, Some("req-1"), Some("pairing required"), later)
        .await
        .unwrap();
    store.set_outbound_device_token(gateway.id, Some("device-token"), later).await.unwrap();
    let changed = store.get_outbound_link(gateway.id).await.unwrap().unwrap();
    assert_eq!(changed.pairing_request_id.as_deref(), Some("req-1"));
    assert_eq!(changed.last_error.as_deref(), Some("pairing required"));
    assert_eq!(changed.device_token.as_deref(), Some("device-token"));
    assert_eq!(changed.token, stored.token);
    assert_eq!(changed.updated_at, later);
    store.set_outbound_state(gateway.id, None, None, later).await.unwrap();
    let cleared = store.get_outbound_link(gateway.id).await.unwrap().unwrap();
    assert_eq!((cleared.pairing_request_id, cleared.last_error), (None, None));
    assert_eq!(cleared.device_token.as_deref(), Some("device-token"));

    let missing = GatewayId::new();
    let err = store.set_outbound_state(missing, None, None, later).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    let err = store.set_outbound_device_token(missing, None, later).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");

    // A gateway that dials the relay has no link; deleting the gateway deletes its link.
    let inbound = fixtures::gateway(org.id);
    store.create_gateway(&inbound).await.unwrap();
    assert_eq!(store.get_outbound_link(inbound.id).await.unwrap(), None);
    assert_eq!(store.count_outbound_gateways(org.id).await.unwrap(), 1, "dialled ones only");
    store.delete_gateway(gateway.id).await.unwrap();
    assert_eq!(store.get_outbound_link(gateway.id).await.unwrap(), None);
    assert!(store.list_outbound_links().await.unwrap().is_empty());
}

pub async fn settings_keep_the_first_value(store: Arc<dyn Store>) {
    assert_eq!(store.setting_or_insert("device", "first").await.unwrap(), "first");
    assert_eq!(store.setting_or_insert("device", "second").await.unwrap(), "first");
    assert_eq!(store.setting_or_insert("other", "x").await.unwrap(), "x");
    // Racing writers all get the one value that was stored.
    let racers = (0..8).map(|i| {
        let store = store.clone();
        tokio::spawn(async move { store.setting_or_insert("raced", &format!("v{i}")).await })
    });
    let mut seen = std::collections::HashSet::new();
    for racer in racers {
        seen.insert(racer.await.unwrap().unwrap());
    }
    assert_eq!(seen.len(), 1, "{seen:?}");
}
