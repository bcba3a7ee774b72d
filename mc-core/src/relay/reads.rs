//! A user's other requests: `history`, `sessions`, `abort`, `subscribe`/`unsubscribe`, and
//! the lookups every request shares (the user's assignment of an agent, the user's session).

use std::collections::HashMap;
use std::sync::Arc;

use super::connections::{SessionMeta, UserConnection};
use super::driver::Asker;
use super::engine::{Engine, Failure};
use crate::bus::{BusMessage, BusTopic, GatewayCommand};
use crate::ids::{AgentId, SessionId, UserId};
use crate::protocol::{ChatMessage, ErrorCode, ServerFrame, SessionInfo, Topic};
use crate::store::{AssignedAgent, Page};

impl Engine {
    /// The user's assignments, from the store.
    pub(crate) async fn load_assignments(
        &self,
        user: UserId,
    ) -> crate::Result<HashMap<AgentId, AssignedAgent>> {
        let list = self.services.store().list_user_assignments(user).await?;
        Ok(list.into_iter().map(|a| (a.agent.id, a)).collect())
    }

    /// The user's assignment of `agent` (cached while the user is connected);
    /// `NOT_ASSIGNED` if there is none.
    pub(crate) async fn assigned_agent(
        &self,
        conn: &UserConnection,
        agent: AgentId,
    ) -> Result<AssignedAgent, Failure> {
        let user = conn.principal().user_id;
        let found = match self.connections.assignment(user, agent) {
            Some(cached) => cached,
            None => {
                let loaded = self.load_assignments(user).await?;
                let found = loaded.get(&agent).cloned();
                self.connections.cache_assignments(user, loaded);
                found
            }
        };
        found.ok_or_else(|| {
            Failure::new(ErrorCode::NotAssigned, format!("agent {agent} is not assigned to you"))
        })
    }

    /// The user's session (cached while the user is connected); `SESSION_NOT_FOUND` if it is
    /// not theirs.
    pub(crate) async fn session_meta(
        &self,
        conn: &UserConnection,
        session: SessionId,
    ) -> Result<SessionMeta, Failure> {
        let user = conn.principal().user_id;
        if let Some(meta) = self.connections.session(user, session) {
            return Ok(meta);
        }
        let stored = self.services.store().get_session(session).await?;
        let Some(stored) = stored.filter(|s| s.user_id == user) else {
            return Err(Failure::new(
                ErrorCode::SessionNotFound,
                format!("no session {session} of yours"),
            ));
        };
        let meta = SessionMeta {
            agent_id: stored.agent_id,
            gateway_id: stored.gateway_id,
            session_key: stored.session_key,
            status: stored.status,
        };
        self.connections.cache_session(user, session, meta.clone());
        Ok(meta)
    }

    /// `history`: a page of the session's messages, newest last.
    pub(crate) async fn history(
        &self,
        conn: &UserConnection,
        id: Option<String>,
        session: SessionId,
        before_seq: Option<u64>,
        limit: u32,
    ) -> Result<(), Failure> {
        let meta = self.session_meta(conn, session).await?;
        let page = self.services.store().list_messages(session, before_seq, limit).await?;
        let messages = page.messages.iter().map(|m| ChatMessage::new(m, meta.agent_id)).collect();
        conn.reply(&ServerFrame::History {
            id,
            session_id: session,
            messages,
            has_more: page.has_more,
        });
        Ok(())
    }

    /// `sessions`: the user's newest sessions.
    pub(crate) async fn sessions(
        &self,
        conn: &UserConnection,
        id: Option<String>,
    ) -> Result<(), Failure> {
        let user = conn.principal().user_id;
        let page = self.services.store().list_user_sessions(user, Page::first(200)).await?;
        let sessions = page
            .items
            .into_iter()
            .map(|s| SessionInfo {
                session_id: s.id,
                agent_id: s.agent_id,
                last_seq: s.last_seq,
                last_message_at: s.last_message_at,
                status: s.status,
            })
            .collect();
        conn.reply(&ServerFrame::Sessions { id, sessions });
        Ok(())
    }

    /// `abort`: asks the session's gateway to stop its run.
    pub(crate) async fn abort(
        &self,
        conn: &UserConnection,
        id: Option<String>,
        session: SessionId,
        run_id: Option<String>,
    ) -> Result<(), Failure> {
        let meta = self.session_meta(conn, session).await?;
        let command = GatewayCommand::Abort {
            session_id: session,
            session_key: meta.session_key,
            run_id,
            user_id: conn.principal().user_id,
            connection: conn.id(),
            request_id: id,
        };
        if self.to_gateway(meta.gateway_id, command).await == 0 {
            return Err(Failure::new(
                ErrorCode::AgentUnavailable,
                "the agent's gateway is not connected",
            ));
        }
        Ok(())
    }

    /// `subscribe` / `unsubscribe` (admins only): the socket's event topics become `topics`.
    pub(crate) async fn set_topics(
        &self,
        conn: &Arc<UserConnection>,
        topics: u8,
    ) -> Result<(), Failure> {
        if !conn.principal().is_admin() {
            return Err(Failure::new(
                ErrorCode::Forbidden,
                "subscribing to events needs the admin role",
            ));
        }
        let Some(generation) = self.connections.set_topics(conn, topics) else { return Ok(()) };
        let org = conn.principal().organization_id;
        let me = self.me.clone();
        let handler = Arc::new(move |message: BusMessage| {
            if let Some(engine) = me.upgrade() {
                engine.connections.deliver_org(org, message);
            }
        });
        match self.bus.subscribe(BusTopic::Org(org), handler).await {
            Ok(subscription) => self.connections.org_subscribed(org, generation, subscription),
            Err(err) => {
                tracing::warn!(error = %err, %org, "cannot subscribe to organization events")
            }
        }
        Ok(())
    }

    /// The topics of a subscribe request added to (or removed from) the socket's.
    pub(crate) fn topics_after(conn: &UserConnection, topics: &[Topic], add: bool) -> u8 {
        topics
            .iter()
            .fold(conn.topics(), |bits, t| if add { bits | t.bit() } else { bits & !t.bit() })
    }

    /// Tells whoever asked that a gateway request failed.
    pub(crate) async fn tell_asker(&self, asker: &Asker, code: ErrorCode, message: String) {
        let frame = ServerFrame::Error {
            id: asker.request_id.clone(),
            code,
            message,
            retry_after_ms: None,
        };
        self.send_to_user(asker.user, &frame, Some(asker.connection), None).await;
    }
}
