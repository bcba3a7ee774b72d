//! [`Services`]: the services of one relay instance (accounts, administration, the gateway
//! registry, the store, the clock and the event channel), built from parts and shared by the
//! relay engine and every transport.

use std::sync::Arc;

use crate::admin::AdminService;
use crate::auth::{AuthConfig, AuthService, Authenticator, Principal};
use crate::clock::{Clock, SystemClock};
use crate::error::Result;
use crate::events::Events;
use crate::ids::TokenFamilyId;
use crate::registry::{RegistryConfig, RegistryService};
use crate::store::Store;

/// Builds [`Services`].
#[derive(Debug)]
pub struct ServicesBuilder {
    store: Arc<dyn Store>,
    auth: AuthConfig,
    clock: Arc<dyn Clock>,
    authenticator: Option<Arc<dyn Authenticator>>,
    registry: RegistryConfig,
}

impl ServicesBuilder {
    /// Gateway registry settings (heartbeat interval, liveness).
    pub fn registry(mut self, config: RegistryConfig) -> Self {
        self.registry = config;
        self
    }

    /// Where time comes from (default: the system clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Authenticates sockets and API calls with `authenticator` instead of the relay's own
    /// JWTs (for example, your existing identity provider's tokens). Its principals must name
    /// users that exist in the store.
    pub fn authenticator(mut self, authenticator: Arc<dyn Authenticator>) -> Self {
        self.authenticator = Some(authenticator);
        self
    }

    /// Builds the services. Fails on invalid configuration.
    pub fn build(self) -> Result<Services> {
        let events = Events::default();
        let auth =
            AuthService::new(self.store.clone(), self.clock.clone(), events.clone(), self.auth)?;
        let custom_authenticator = self.authenticator.is_some();
        let authenticator = match self.authenticator {
            Some(custom) => custom,
            None => Arc::new(auth.clone()),
        };
        let admin = AdminService::new(self.store.clone(), self.clock.clone(), events.clone());
        let registry = RegistryService::new(
            self.store.clone(),
            self.clock.clone(),
            events.clone(),
            self.registry,
        );
        Ok(Services {
            inner: Arc::new(Inner {
                store: self.store,
                clock: self.clock,
                events,
                auth,
                admin,
                registry,
                authenticator,
                custom_authenticator,
            }),
        })
    }
}

#[derive(Debug)]
struct Inner {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    events: Events,
    auth: AuthService,
    admin: AdminService,
    registry: RegistryService,
    authenticator: Arc<dyn Authenticator>,
    custom_authenticator: bool,
}

/// One relay instance's services. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Services {
    inner: Arc<Inner>,
}

impl Services {
    /// Starts building the services over `store` with the built-in authentication configured
    /// by `auth`.
    pub fn builder(store: Arc<dyn Store>, auth: AuthConfig) -> ServicesBuilder {
        ServicesBuilder {
            store,
            auth,
            clock: Arc::new(SystemClock),
            authenticator: None,
            registry: RegistryConfig::default(),
        }
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    /// The event channel.
    pub fn events(&self) -> &Events {
        &self.inner.events
    }

    /// Accounts and sessions.
    pub fn auth(&self) -> &AuthService {
        &self.inner.auth
    }

    /// User administration.
    pub fn admin(&self) -> &AdminService {
        &self.inner.admin
    }

    /// The gateway registry.
    pub fn registry(&self) -> &RegistryService {
        &self.inner.registry
    }

    /// How bearer tokens are checked.
    pub fn authenticator(&self) -> &Arc<dyn Authenticator> {
        &self.inner.authenticator
    }

    /// Verifies a socket's access token: who presented it and when the token expires
    /// (`None` for a custom authenticator: the socket lasts).
    pub async fn authenticate_until(
        &self,
        token: &str,
    ) -> Result<(Principal, Option<crate::model::Timestamp>)> {
        if self.inner.custom_authenticator {
            Ok((self.inner.authenticator.authenticate(token).await?, None))
        } else {
            let (principal, _, expires_at) = self.inner.auth.verify_access_until(token).await?;
            Ok((principal, Some(expires_at)))
        }
    }

    /// Verifies an access token: who presented it and (for the relay's own tokens) its
    /// refresh family.
    pub async fn authenticate(&self, token: &str) -> Result<(Principal, Option<TokenFamilyId>)> {
        if self.inner.custom_authenticator {
            Ok((self.inner.authenticator.authenticate(token).await?, None))
        } else {
            self.inner.auth.verify_access(token).await
        }
    }
}
