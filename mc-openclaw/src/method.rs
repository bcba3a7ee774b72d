//! [`Method`]: an OpenClaw method as a type, naming its wire name, its parameters and its
//! result, so a call is written and read without touching JSON; and the methods this crate
//! types.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::frame::{Payload, Request, Response};
use crate::{Error, agent, approval, artifact, chat, operator};

/// An OpenClaw method.
pub trait Method {
    /// Its wire name, e.g. `chat.send`.
    const NAME: &'static str;
    /// What it takes.
    type Params: Serialize + DeserializeOwned + Send + Sync;
    /// What it answers.
    type Result: Serialize + DeserializeOwned + Send;
}

/// The parameters of method `M`, ready to send.
pub fn params<M: Method>(params: &M::Params) -> Result<Payload, Error> {
    Payload::encode(params)
}

/// Reads an answer's payload as method `M`'s result.
pub fn result<M: Method>(payload: &Payload) -> Result<M::Result, Error> {
    payload.decode(M::NAME)
}

impl Request {
    /// A request of method `M`.
    pub fn of<M: Method>(id: impl Into<String>, params: &M::Params) -> Result<Self, Error> {
        Ok(Self::new(id, M::NAME, self::params::<M>(params)?))
    }

    /// Reads the parameters as method `M`'s (the caller matched [`Method::NAME`]).
    pub fn params_of<M: Method>(&self) -> Result<M::Params, Error> {
        self.params.decode(M::NAME)
    }
}

impl Response {
    /// A successful answer of method `M` to request `id`.
    pub fn of<M: Method>(id: impl Into<String>, result: &M::Result) -> Result<Self, Error> {
        Ok(Self::ok(id, Payload::encode(result)?))
    }
}

/// Declares unit types implementing [`Method`].
macro_rules! methods {
    ($($(#[$doc:meta])* $ty:ident = $wire:literal ($params:ty) -> $result:ty;)*) => {
        $(
            $(#[$doc])*
            #[derive(Debug, Clone, Copy, PartialEq, Eq)]
            pub struct $ty;

            impl Method for $ty {
                const NAME: &'static str = $wire;
                type Params = $params;
                type Result = $result;
            }
        )*
    };
}

methods! {
    /// Starts a run in a session (`operator.write`).
    ChatSend = "chat.send" (chat::ChatSendParams) -> chat::ChatSendResult;
    /// A session's transcript (`operator.read`).
    ChatHistory = "chat.history" (chat::ChatHistoryParams) -> chat::ChatHistoryResult;
    /// Stops a session's run (`operator.write`).
    ChatAbort = "chat.abort" (chat::ChatAbortParams) -> chat::ChatAbortResult;
    /// The gateway's agents (`operator.read`).
    AgentsList = "agents.list" (agent::AgentsListParams) -> agent::AgentsListResult;
    /// One approval, pending or resolved (`operator.approvals`).
    ApprovalGet = "approval.get" (approval::ApprovalGetParams) -> approval::ApprovalGetResult;
    /// Resolves an approval, first answer wins (`operator.approvals`).
    ApprovalResolve = "approval.resolve" (approval::ApprovalResolveParams) -> approval::ApprovalResolveResult;
    /// Resolved approvals, newest first (`operator.approvals`).
    ApprovalHistory = "approval.history" (approval::ApprovalHistoryParams) -> approval::ApprovalHistoryResult;
    /// Decides an exec approval (`operator.approvals`).
    ExecApprovalResolve = "exec.approval.resolve" (approval::DecisionParams) -> operator::Untyped;
    /// Decides a plugin approval (`operator.approvals`).
    PluginApprovalResolve = "plugin.approval.resolve" (approval::DecisionParams) -> operator::Untyped;
    /// Pending exec approvals (`operator.approvals`).
    ExecApprovalList = "exec.approval.list" (approval::ApprovalListParams) -> Vec<approval::ApprovalRequested>;
    /// Pending plugin approvals (`operator.approvals`).
    PluginApprovalList = "plugin.approval.list" (approval::ApprovalListParams) -> Vec<approval::ApprovalRequested>;
    /// Pending questions (`operator.questions`).
    QuestionList = "question.list" (approval::QuestionListParams) -> approval::QuestionListResult;
    /// Answers or cancels a question (`operator.questions`).
    QuestionResolve = "question.resolve" (approval::QuestionResolveParams) -> approval::QuestionResolveResult;
    /// A session's, run's or task's artifacts (`operator.read`).
    ArtifactsList = "artifacts.list" (artifact::ArtifactQuery) -> artifact::ArtifactsListResult;
    /// One artifact's summary (`operator.read`).
    ArtifactsGet = "artifacts.get" (artifact::ArtifactQuery) -> artifact::ArtifactsGetResult;
    /// One artifact's bytes, or a short-lived URL to them (`operator.read`).
    ArtifactsDownload = "artifacts.download" (artifact::ArtifactQuery) -> artifact::ArtifactsDownloadResult;
    /// The gateway's health (any connection).
    Health = "health" (operator::NoParams) -> operator::HealthResult;
    /// The gateway's status (`operator.read`).
    Status = "status" (operator::NoParams) -> operator::Untyped;
    /// The session index (`operator.read`).
    SessionsList = "sessions.list" (operator::SessionsListParams) -> operator::SessionsListResult;
    /// Subscribes this connection to `sessions.changed` (`operator.read`).
    SessionsSubscribe = "sessions.subscribe" (operator::SessionsListParams) -> operator::Untyped;
    /// Scheduled jobs (`operator.read`).
    CronList = "cron.list" (operator::Untyped) -> operator::CronListResult;
    /// The scheduler's state (`operator.read`).
    CronStatus = "cron.status" (operator::Untyped) -> operator::Untyped;
    /// Past runs of scheduled jobs (`operator.read`).
    CronRuns = "cron.runs" (operator::Untyped) -> operator::CronRunsResult;
    /// Cost and tokens over a date range (`operator.read`).
    UsageCost = "usage.cost" (operator::Untyped) -> operator::Untyped;
    /// Usage per session (`operator.read`).
    SessionsUsage = "sessions.usage" (operator::Untyped) -> operator::Untyped;
}
