//! Cases for registration tokens, gateways, agents and assignments.

use std::sync::Arc;

use chrono::TimeDelta;

use crate::ids::*;
use crate::model::*;
use crate::store::{ConflictKind, ConsumeOutcome, Page, Store, StoreError};
use crate::testing::fixtures::{self, ChatWorld, now};

async fn new_org(store: &Arc<dyn Store>) -> Organization {
    let org = fixtures::org();
    store.create_org(&org).await.unwrap();
    org
}

pub async fn registration_token_create_list_revoke(store: Arc<dyn Store>) {
    let org = new_org(&store).await;
    let other = new_org(&store).await;
    let mut tokens = vec![];
    for i in 0..3 {
        let (mut token, _) = fixtures::registration_token(org.id);
        if i == 1 {
            token.expires_at = Some(now() + TimeDelta::hours(1));
            token.max_uses = Some(4);
        }
        store.create_registration_token(&token).await.unwrap();
        tokens.push(token);
    }
    store.create_registration_token(&fixtures::registration_token(other.id).0).await.unwrap();
    assert_eq!(store.get_registration_token(tokens[1].id).await.unwrap(), Some(tokens[1].clone()));
    assert_eq!(store.get_registration_token(RegistrationTokenId::new()).await.unwrap(), None);

    let first = store.list_registration_tokens(org.id, Page::first(2)).await.unwrap();
    assert_eq!(first.items, tokens[..2]);
    let rest =
        store.list_registration_tokens(org.id, Page::after(first.next_cursor.unwrap(), 2)).await;
    assert_eq!(rest.unwrap().items, tokens[2..]);

    let (mut dup, _) = fixtures::registration_token(org.id);
    dup.token_hash = tokens[0].token_hash;
    let err = store.create_registration_token(&dup).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(ConflictKind::TokenHash)), "{err:?}");
    let (orphan, _) = fixtures::registration_token(OrgId::new());
    let err = store.create_registration_token(&orphan).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");

    store.revoke_registration_token(tokens[0].id).await.unwrap();
    assert!(store.get_registration_token(tokens[0].id).await.unwrap().unwrap().revoked);
    let err = store.revoke_registration_token(RegistrationTokenId::new()).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
}

pub async fn registration_token_consume_checks_state(store: Arc<dyn Store>) {
    let org = new_org(&store).await;
    let other = new_org(&store).await;
    let t = now();

    let (open, open_secret) = fixtures::registration_token(org.id);
    store.create_registration_token(&open).await.unwrap();
    for n in 1..=3 {
        match store.consume_registration_token(org.id, &open.token_hash, t).await.unwrap() {
            ConsumeOutcome::Consumed(tok) => assert_eq!(tok.uses, n),
            other => panic!("expected Consumed, got {other:?}"),
        }
    }
    assert_eq!(SecretHash::of(&open_secret), open.token_hash);
    // Right hash, wrong organization.
    let outcome = store.consume_registration_token(other.id, &open.token_hash, t).await.unwrap();
    assert_eq!(outcome, ConsumeOutcome::Unknown);
    let unknown = SecretHash::of("gw_reg_unknown");
    let outcome = store.consume_registration_token(org.id, &unknown, t).await.unwrap();
    assert_eq!(outcome, ConsumeOutcome::Unknown);

    let (mut limited, _) = fixtures::registration_token(org.id);
    limited.max_uses = Some(2);
    store.create_registration_token(&limited).await.unwrap();
    for _ in 0..2 {
        let outcome = store.consume_registration_token(org.id, &limited.token_hash, t).await;
        assert!(matches!(outcome.unwrap(), ConsumeOutcome::Consumed(_)));
    }
    let outcome = store.consume_registration_token(org.id, &limited.token_hash, t).await.unwrap();
    assert_eq!(outcome, ConsumeOutcome::UsedUp);
    assert_eq!(store.get_registration_token(limited.id).await.unwrap().unwrap().uses, 2);

    let (mut expiring, _) = fixtures::registration_token(org.id);
    expiring.expires_at = Some(t + TimeDelta::minutes(5));
    store.create_registration_token(&expiring).await.unwrap();
    let outcome = store.consume_registration_token(org.id, &expiring.token_hash, t).await;
    assert!(matches!(outcome.unwrap(), ConsumeOutcome::Consumed(_)));
    let later = t + TimeDelta::minutes(5);
    let outcome = store.consume_registration_token(org.id, &expiring.token_hash, later).await;
    assert_eq!(outcome.unwrap(), ConsumeOutcome::Expired);

    store.revoke_registration_token(open.id).await.unwrap();
    let outcome = store.consume_registration_token(org.id, &open.token_hash, t).await.unwrap();
    assert_eq!(outcome, ConsumeOutcome::Revoked);
    assert_eq!(store.get_registration_token(open.id).await.unwrap().unwrap().uses, 3);
}

pub async fn registration_token_last_use_race_has_one_winner(store: Arc<dyn Store>) {
    let org = new_org(&store).await;
    for max_uses in [1u32, 5] {
        let (mut token, _) = fixtures::registration_token(org.id);
        token.max_uses = Some(max_uses);
        store.create_registration_token(&token).await.unwrap();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..20 {
            let store = store.clone();
            let hash = token.token_hash;
            tasks.spawn(async move {
                store.consume_registration_token(org.id, &hash, now()).await.unwrap()
            });
        }
        let mut consumed = 0;
        while let Some(outcome) = tasks.join_next().await {
            match outcome.unwrap() {
                ConsumeOutcome::Consumed(_) => consumed += 1,
                ConsumeOutcome::UsedUp => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(consumed, max_uses, "exactly max_uses racing registrations succeed");
        let stored = store.get_registration_token(token.id).await.unwrap().unwrap();
        assert_eq!(stored.uses, max_uses);
    }
}

pub async fn gateway_create_read_update_delete(store: Arc<dyn Store>) {
    let world = ChatWorld::create(&store).await;
    let org = world.org.id;
    let gw = world.gateway.clone();
    assert_eq!(store.get_gateway(gw.id).await.unwrap(), Some(gw.clone()));
    assert_eq!(store.find_gateway_by_name(org, &gw.name).await.unwrap(), Some(gw.clone()));
    assert_eq!(store.find_gateway_by_name(OrgId::new(), &gw.name).await.unwrap(), None);
    assert_eq!(store.get_gateway(GatewayId::new()).await.unwrap(), None);

    let mut dup = fixtures::gateway(org);
    dup.name = gw.name.clone();
    let err = store.create_gateway(&dup).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(ConflictKind::GatewayName)), "{err:?}");
    let other_org = new_org(&store).await;
    let mut same_name_elsewhere = fixtures::gateway(other_org.id);
    same_name_elsewhere.name = gw.name.clone();
    store.create_gateway(&same_name_elsewhere).await.unwrap();
    let err = store.create_gateway(&fixtures::gateway(OrgId::new())).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");

    let mut changed = gw.clone();
    changed.url = Some("ws://127.0.0.1:18789".into());
    changed.workspace_root = Some("/srv/openclaw".into());
    changed.version = Some("2026.9.6".into());
    changed.capabilities = vec!["chat".into(), "tool-events".into()];
    changed.status = GatewayStatus::Online;
    changed.relay_token_hash = SecretHash::of("new relay token");
    changed.last_heartbeat_at = Some(now());
    changed.connection_info = ConnectionInfo {
        ip: Some("127.0.0.1".into()),
        version: Some("2026.9.6".into()),
        capabilities: vec!["chat".into()],
        metrics: Some(GatewayMetrics {
            active_sessions: 3,
            memory_mb: 812.5,
            cpu_pct: 12.25,
            agent_count: 2,
        }),
        metrics_at: Some(now()),
    };
    changed.auto_registered = false;
    changed.updated_at = now() + TimeDelta::seconds(1);
    store.update_gateway(&changed).await.unwrap();
    assert_eq!(store.get_gateway(gw.id).await.unwrap(), Some(changed.clone()));
    let mut other = fixtures::gateway(org);
    store.create_gateway(&other).await.unwrap();
    other.name = gw.name.clone();
    let err = store.update_gateway(&other).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(ConflictKind::GatewayName)), "{err:?}");
    let err = store.update_gateway(&fixtures::gateway(org)).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");

    // Deleting the gateway takes its agents, their assignments and sessions with it.
    store.delete_gateway(gw.id).await.unwrap();
    assert_eq!(store.get_gateway(gw.id).await.unwrap(), None);
    assert_eq!(store.get_agent(world.agent.id).await.unwrap(), None);
    assert_eq!(store.get_assignment(world.user.id, world.agent.id).await.unwrap(), None);
    assert_eq!(store.get_session(world.session.id).await.unwrap(), None);
    assert!(store.get_user(world.user.id).await.unwrap().is_some());
    let err = store.delete_gateway(gw.id).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
}

pub async fn gateway_list_filters_and_pages(store: Arc<dyn Store>) {
    let org = new_org(&store).await;
    let other = new_org(&store).await;
    let mut online = vec![];
    let mut all = vec![];
    for i in 0..5 {
        let mut gw = fixtures::gateway(org.id);
        if i % 2 == 0 {
            gw.status = GatewayStatus::Online;
            online.push(gw.id);
        }
        store.create_gateway(&gw).await.unwrap();
        all.push(gw.id);
        store.create_gateway(&fixtures::gateway(other.id)).await.unwrap();
    }
    let first = store.list_gateways(org.id, None, Page::first(3)).await.unwrap();
    let second = store
        .list_gateways(org.id, None, Page::after(first.next_cursor.unwrap(), 3))
        .await
        .unwrap();
    assert_eq!(second.next_cursor, None);
    let listed: Vec<_> = first.items.iter().chain(&second.items).map(|g| g.id).collect();
    assert_eq!(listed, all);
    let only_online =
        store.list_gateways(org.id, Some(GatewayStatus::Online), Page::first(10)).await.unwrap();
    assert_eq!(only_online.items.iter().map(|g| g.id).collect::<Vec<_>>(), online);
    let none = store.list_gateways(org.id, Some(GatewayStatus::Error), Page::first(10)).await;
    assert!(none.unwrap().items.is_empty());
    let mut counts = store.count_gateways_by_status().await.unwrap();
    counts.sort_by_key(|(s, _)| s.as_str());
    assert_eq!(
        counts,
        vec![(GatewayStatus::Online, 3), (GatewayStatus::Pending, 7)],
        "every organization counts"
    );
}

pub async fn gateway_liveness_updates(store: Arc<dyn Store>) {
    let org = new_org(&store).await;
    let gw = fixtures::gateway(org.id);
    store.create_gateway(&gw).await.unwrap();

    let at = now() + TimeDelta::seconds(5);
    let touched = store.touch_gateway(gw.id, at, None).await.unwrap();
    assert_eq!(touched.last_heartbeat_at, Some(at));
    assert_eq!(touched.status, GatewayStatus::Pending, "a heartbeat alone does not set status");
    assert_eq!(touched.connection_info, gw.connection_info);
    let info = ConnectionInfo {
        ip: Some("::1".into()),
        metrics: Some(GatewayMetrics { agent_count: 1, ..Default::default() }),
        ..Default::default()
    };
    let later = at + TimeDelta::seconds(10);
    let touched = store.touch_gateway(gw.id, later, Some(&info)).await.unwrap();
    assert_eq!(touched.connection_info, info);
    assert_eq!(store.get_gateway(gw.id).await.unwrap(), Some(touched));

    let change = store.set_gateway_status(gw.id, GatewayStatus::Online, later).await.unwrap();
    assert_eq!(change.previous, GatewayStatus::Pending);
    assert_eq!(change.gateway.status, GatewayStatus::Online);
    assert_eq!(change.gateway.updated_at, later);
    let change = store.set_gateway_status(gw.id, GatewayStatus::Online, later).await.unwrap();
    assert_eq!(change.previous, GatewayStatus::Online, "setting the same status is a no-op");

    let missing = GatewayId::new();
    let err = store.touch_gateway(missing, at, None).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    let err = store.set_gateway_status(missing, GatewayStatus::Offline, at).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
}

pub async fn gateway_sweep_marks_only_stale_gateways(store: Arc<dyn Store>) {
    let org = new_org(&store).await;
    let t0 = now();
    let cutoff = t0 - TimeDelta::seconds(90);
    let make = |status: GatewayStatus, heartbeat: Option<TimeDelta>, updated: TimeDelta| {
        let mut gw = fixtures::gateway(org.id);
        gw.status = status;
        gw.last_heartbeat_at = heartbeat.map(|ago| t0 - ago);
        gw.updated_at = t0 - updated;
        gw
    };
    let minutes = TimeDelta::minutes;
    let stale_online = make(GatewayStatus::Online, Some(minutes(5)), minutes(5));
    let fresh_online = make(GatewayStatus::Online, Some(TimeDelta::seconds(10)), minutes(5));
    let stale_error = make(GatewayStatus::Error, Some(minutes(5)), minutes(5));
    let never_beat = make(GatewayStatus::Online, None, minutes(5));
    let pending = make(GatewayStatus::Pending, None, minutes(5));
    let offline = make(GatewayStatus::Offline, Some(minutes(5)), minutes(5));
    let gateways = [&stale_online, &fresh_online, &stale_error, &never_beat, &pending, &offline];
    for gw in gateways {
        store.create_gateway(gw).await.unwrap();
    }
    let mut changed = store.mark_stale_gateways_offline(cutoff, t0).await.unwrap();
    changed.sort_by_key(|c| c.gateway.id);
    let summary: Vec<_> = changed.iter().map(|c| (c.gateway.id, c.previous)).collect();
    assert_eq!(
        summary,
        vec![
            (stale_online.id, GatewayStatus::Online),
            (stale_error.id, GatewayStatus::Error),
            (never_beat.id, GatewayStatus::Online),
        ]
    );
    for c in &changed {
        assert_eq!(c.gateway.status, GatewayStatus::Offline);
        assert_eq!(c.gateway.updated_at, t0);
        assert_eq!(store.get_gateway(c.gateway.id).await.unwrap().as_ref(), Some(&c.gateway));
    }
    let status = |id| {
        let store = store.clone();
        async move { store.get_gateway(id).await.unwrap().unwrap().status }
    };
    assert_eq!(status(fresh_online.id).await, GatewayStatus::Online);
    assert_eq!(status(pending.id).await, GatewayStatus::Pending);
    assert!(store.mark_stale_gateways_offline(cutoff, t0).await.unwrap().is_empty());
}

pub async fn agent_create_and_uniqueness(store: Arc<dyn Store>) {
    let org = new_org(&store).await;
    let gw = fixtures::gateway(org.id);
    let gw2 = fixtures::gateway(org.id);
    store.create_gateway(&gw).await.unwrap();
    store.create_gateway(&gw2).await.unwrap();
    let agent = fixtures::agent(gw.id);
    store.create_agent(&agent).await.unwrap();
    assert_eq!(store.get_agent(agent.id).await.unwrap(), Some(agent.clone()));
    assert_eq!(store.get_agent(AgentId::new()).await.unwrap(), None);

    let mut dup = fixtures::agent(gw.id);
    dup.agent_key = agent.agent_key.clone();
    let err = store.create_agent(&dup).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(ConflictKind::AgentKey)), "{err:?}");
    let mut same_key_other_gateway = fixtures::agent(gw2.id);
    same_key_other_gateway.agent_key = agent.agent_key.clone();
    store.create_agent(&same_key_other_gateway).await.unwrap();
    let err = store.create_agent(&fixtures::agent(GatewayId::new())).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");

    assert_eq!(store.list_gateway_agents(gw.id).await.unwrap(), vec![agent.clone()]);
    let listed = store.list_agents(org.id, Page::first(1)).await.unwrap();
    assert_eq!(listed.items, vec![agent.clone()]);
    let rest = store.list_agents(org.id, Page::after(listed.next_cursor.unwrap(), 1)).await;
    let rest = rest.unwrap();
    assert_eq!(rest.items, vec![same_key_other_gateway]);
    assert_eq!(rest.next_cursor, None);
    assert!(store.list_agents(OrgId::new(), Page::first(5)).await.unwrap().items.is_empty());
}

pub async fn agent_sync_adds_renames_and_marks_gone(store: Arc<dyn Store>) {
    let world = ChatWorld::create(&store).await;
    let gw = world.gateway.id;
    let existing = world.agent.clone();
    let report = |key: &str, name: &str| AgentReport { agent_key: key.into(), name: name.into() };

    let t1 = now();
    let sync = store
        .sync_agents(
            gw,
            &[report("main", "Main"), report(&existing.agent_key, "Renamed"), report("x", "X1")],
            t1,
        )
        .await
        .unwrap();
    assert_eq!(sync.agents.len(), 3);
    assert_eq!(sync.added.len(), 2);
    assert!(sync.gone.is_empty() && sync.returned.is_empty());
    let kept = sync.agents.iter().find(|a| a.id == existing.id).unwrap();
    assert_eq!(kept.name, "Renamed");
    let main_id = sync.agents.iter().find(|a| a.agent_key == "main").unwrap().id;
    let x = sync.agents.iter().find(|a| a.agent_key == "x").unwrap().clone();
    assert_eq!(x.created_at, t1);

    // The assigned agent disappears: it is marked gone, not deleted; its assignment stays.
    let sync = store
        .sync_agents(gw, &[report("main", "Main"), report("x", "X1"), report("x", "X2")], now())
        .await
        .unwrap();
    assert_eq!(sync.gone, vec![existing.id]);
    assert!(sync.added.is_empty());
    let gone = store.get_agent(existing.id).await.unwrap().unwrap();
    assert_eq!(gone.status, AgentStatus::Gone);
    assert_eq!(store.get_agent(x.id).await.unwrap().unwrap().name, "X2", "last duplicate wins");
    assert!(store.get_assignment(world.user.id, existing.id).await.unwrap().is_some());

    // It comes back.
    let sync = store
        .sync_agents(gw, &[report(&existing.agent_key, "Back"), report("main", "Main")], now())
        .await
        .unwrap();
    assert_eq!(sync.returned, vec![existing.id]);
    assert_eq!(sync.gone, vec![x.id]);
    let back = store.get_agent(existing.id).await.unwrap().unwrap();
    assert_eq!((back.status, back.name.as_str()), (AgentStatus::Active, "Back"));
    let ids: Vec<_> = store.list_gateway_agents(gw).await.unwrap().iter().map(|a| a.id).collect();
    let mut expected = vec![existing.id, main_id, x.id];
    expected.sort();
    assert_eq!(ids, expected);

    // An empty report marks everything gone.
    let sync = store.sync_agents(gw, &[], now()).await.unwrap();
    assert_eq!(sync.gone.len(), 2);
    assert!(sync.agents.iter().all(|a| a.status == AgentStatus::Gone));
    let err = store.sync_agents(GatewayId::new(), &[report("a", "A")], now()).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
}

pub async fn assignment_lifecycle(store: Arc<dyn Store>) {
    let world = ChatWorld::create(&store).await;
    let user = world.user.id;
    let second = fixtures::agent(world.gateway.id);
    store.create_agent(&second).await.unwrap();
    let mut assignment = fixtures::assignment(user, second.id);
    assignment.role = AssignmentRole::Owner;
    assignment.board_name = Some("Support".into());
    assignment.assigned_by = Some(user);
    store.create_assignment(&assignment).await.unwrap();
    assert_eq!(store.get_assignment(user, second.id).await.unwrap(), Some(assignment.clone()));
    assert_eq!(store.get_assignment(UserId::new(), second.id).await.unwrap(), None);

    let err = store.create_assignment(&fixtures::assignment(user, second.id)).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(ConflictKind::Assignment)), "{err:?}");
    let err = store.create_assignment(&fixtures::assignment(user, AgentId::new())).await;
    assert!(matches!(err.unwrap_err(), StoreError::NotFound(_)));
    let err = store.create_assignment(&fixtures::assignment(UserId::new(), second.id)).await;
    assert!(matches!(err.unwrap_err(), StoreError::NotFound(_)));

    store.set_gateway_status(world.gateway.id, GatewayStatus::Online, now()).await.unwrap();
    let listed = store.list_user_assignments(user).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].agent, world.agent);
    assert_eq!(listed[1].assignment, assignment);
    assert_eq!(listed[1].agent, second);
    assert!(listed.iter().all(|a| a.gateway_status == GatewayStatus::Online));
    let for_gateway = store.list_gateway_assignments(world.gateway.id).await.unwrap();
    assert_eq!(for_gateway.len(), 2);
    assert!(store.list_gateway_assignments(GatewayId::new()).await.unwrap().is_empty());

    store.delete_assignment(user, second.id).await.unwrap();
    assert_eq!(store.get_assignment(user, second.id).await.unwrap(), None);
    assert_eq!(store.list_user_assignments(user).await.unwrap().len(), 1);
    let err = store.delete_assignment(user, second.id).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
}
