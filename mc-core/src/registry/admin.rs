//! Admin operations of the registry: registration tokens, gateway and agent reads, activity.
//! Everything is scoped to the admin's organization; other organizations' records are
//! "not found".

use std::time::Duration;

use chrono::TimeDelta;

use super::{IssuedRegistrationToken, REGISTRATION_TOKEN_PREFIX, RegistryService};
use crate::admin::require_admin;
use crate::auth::Principal;
use crate::auth::refresh::random_secret;
use crate::error::{Error, Result};
use crate::events::RelayEvent;
use crate::ids::{GatewayId, RegistrationTokenId};
use crate::model::{ActivityEvent, Agent, Gateway, GatewayStatus, RegistrationToken, SecretHash};
use crate::store::{Page, Paged};
use crate::validate;

impl RegistryService {
    /// Issues a registration token; its secret is in the result and nowhere else.
    pub async fn create_registration_token(
        &self,
        admin: &Principal,
        label: Option<String>,
        expires_in: Option<Duration>,
        max_uses: Option<u32>,
    ) -> Result<IssuedRegistrationToken> {
        require_admin(admin)?;
        let actor = format!("user:{}", admin.user_id);
        self.issue_registration_token(admin.organization_id, label, expires_in, max_uses, &actor)
            .await
    }

    /// Issues a registration token for `org` with no permission check (operators' tools);
    /// `actor` is recorded in the activity feed. `NotFound` if the organization does not exist.
    pub async fn issue_registration_token(
        &self,
        org: crate::ids::OrgId,
        label: Option<String>,
        expires_in: Option<Duration>,
        max_uses: Option<u32>,
        actor: &str,
    ) -> Result<IssuedRegistrationToken> {
        let label = label.unwrap_or_default();
        validate::plain_text("label", &label, 64)?;
        let max_ttl = self.config.max_registration_token_ttl;
        if let Some(ttl) = expires_in
            && (ttl.is_zero() || ttl > max_ttl)
        {
            return Err(Error::invalid(
                "expires_in_seconds",
                format!("must be from 1 to {}", max_ttl.as_secs()),
            ));
        }
        if max_uses == Some(0) {
            return Err(Error::invalid("max_uses", "must be at least 1 (omit it for unlimited)"));
        }
        let now = self.clock.now();
        let secret = random_secret(REGISTRATION_TOKEN_PREFIX)?;
        let token = RegistrationToken {
            id: RegistrationTokenId::new(),
            organization_id: org,
            token_hash: SecretHash::of(&secret),
            label,
            expires_at: expires_in.and_then(|d| TimeDelta::from_std(d).ok()).map(|d| now + d),
            max_uses,
            uses: 0,
            revoked: false,
            created_at: now,
        };
        self.store.create_registration_token(&token).await?;
        let event = ActivityEvent::new(
            org,
            "registration_token.created",
            actor,
            "registration_token",
            token.id,
            now,
        )
        .with_metadata(serde_json::json!({ "label": token.label, "max_uses": max_uses }));
        crate::events::record_activity(self.store.as_ref(), &self.events, event).await?;
        Ok(IssuedRegistrationToken { token, secret })
    }

    /// The organization's registration tokens (never their secrets).
    pub async fn list_registration_tokens(
        &self,
        admin: &Principal,
        page: Page,
    ) -> Result<Paged<RegistrationToken>> {
        require_admin(admin)?;
        Ok(self.store.list_registration_tokens(admin.organization_id, page).await?)
    }

    /// Revokes a registration token; gateways already registered with it are unaffected.
    pub async fn revoke_registration_token(
        &self,
        admin: &Principal,
        id: RegistrationTokenId,
    ) -> Result<()> {
        require_admin(admin)?;
        self.org_registration_token(admin.organization_id, id).await?;
        self.store.revoke_registration_token(id).await?;
        Ok(())
    }

    /// The organization's gateways, optionally of one status.
    pub async fn list_gateways(
        &self,
        admin: &Principal,
        status: Option<GatewayStatus>,
        page: Page,
    ) -> Result<Paged<Gateway>> {
        require_admin(admin)?;
        Ok(self.store.list_gateways(admin.organization_id, status, page).await?)
    }

    /// A gateway of the organization.
    pub async fn gateway(&self, admin: &Principal, id: GatewayId) -> Result<Gateway> {
        require_admin(admin)?;
        self.store
            .get_gateway(id)
            .await?
            .filter(|g| g.organization_id == admin.organization_id)
            .ok_or(Error::NotFound("gateway"))
    }

    /// A gateway of the organization with its agents.
    pub async fn gateway_with_agents(
        &self,
        admin: &Principal,
        id: GatewayId,
    ) -> Result<(Gateway, Vec<Agent>)> {
        let gateway = self.gateway(admin, id).await?;
        let agents = self.store.list_gateway_agents(id).await?;
        Ok((gateway, agents))
    }

    /// Deletes a gateway with its agents, their assignments and chat sessions, and closes its
    /// socket.
    pub async fn delete_gateway(&self, admin: &Principal, id: GatewayId) -> Result<()> {
        let gateway = self.gateway(admin, id).await?;
        self.store.delete_gateway(id).await?;
        self.events.publish(RelayEvent::GatewayCredentialsRevoked { gateway_id: id });
        let metadata = serde_json::json!({ "name": gateway.name });
        self.record(
            admin.organization_id,
            "gateway.deleted",
            format!("user:{}", admin.user_id),
            id,
            metadata,
        )
        .await
    }

    /// Agents of every gateway of the organization.
    pub async fn list_agents(&self, admin: &Principal, page: Page) -> Result<Paged<Agent>> {
        require_admin(admin)?;
        Ok(self.store.list_agents(admin.organization_id, page).await?)
    }

    /// The organization's activity feed, newest first.
    pub async fn list_activity(
        &self,
        admin: &Principal,
        page: Page,
    ) -> Result<Paged<ActivityEvent>> {
        require_admin(admin)?;
        Ok(self.store.list_activity(admin.organization_id, page).await?)
    }
}
