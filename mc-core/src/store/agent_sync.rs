//! The part of agent syncing every store shares: deciding what to insert and update.

use std::collections::HashMap;

use super::AgentSync;
use crate::ids::{AgentId, GatewayId};
use crate::model::{Agent, AgentReport, AgentStatus, Timestamp};

/// What a store must write to make a gateway's agents match a report.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct AgentSyncPlan {
    /// New agents to insert.
    pub insert: Vec<Agent>,
    /// Existing agents whose name or status changes: (id, new name, new status).
    pub update: Vec<(AgentId, String, AgentStatus)>,
    /// The change lists of the result (its `agents` is left empty for the store to fill).
    pub outcome: AgentSync,
}

/// Plans [`AgentStore::sync_agents`](super::AgentStore::sync_agents): `existing` are the
/// gateway's stored agents, `reports` what it reports now (for a duplicated key the last
/// report wins). Every id list in the outcome is sorted.
pub fn plan_agent_sync(
    gateway: GatewayId,
    existing: &[Agent],
    reports: &[AgentReport],
    at: Timestamp,
) -> AgentSyncPlan {
    // Last report per key, in order of first appearance.
    let mut order: Vec<&str> = Vec::with_capacity(reports.len());
    let mut names: HashMap<&str, &str> = HashMap::with_capacity(reports.len());
    for report in reports {
        if names.insert(&report.agent_key, &report.name).is_none() {
            order.push(&report.agent_key);
        }
    }
    let by_key: HashMap<&str, &Agent> =
        existing.iter().map(|a| (a.agent_key.as_str(), a)).collect();

    let mut plan = AgentSyncPlan::default();
    for key in order {
        let name = names[key];
        match by_key.get(key) {
            Some(agent) => {
                if agent.status == AgentStatus::Gone {
                    plan.outcome.returned.push(agent.id);
                }
                if agent.status != AgentStatus::Active || agent.name != name {
                    plan.update.push((agent.id, name.to_owned(), AgentStatus::Active));
                }
            }
            None => {
                let agent = Agent {
                    id: AgentId::new(),
                    gateway_id: gateway,
                    agent_key: key.to_owned(),
                    name: name.to_owned(),
                    status: AgentStatus::Active,
                    created_at: at,
                };
                plan.outcome.added.push(agent.id);
                plan.insert.push(agent);
            }
        }
    }
    for agent in existing {
        if agent.status == AgentStatus::Active && !names.contains_key(agent.agent_key.as_str()) {
            plan.outcome.gone.push(agent.id);
            plan.update.push((agent.id, agent.name.clone(), AgentStatus::Gone));
        }
    }
    plan.outcome.added.sort();
    plan.outcome.returned.sort();
    plan.outcome.gone.sort();
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, SystemClock};

    fn report(key: &str, name: &str) -> AgentReport {
        AgentReport { agent_key: key.into(), name: name.into() }
    }

    #[test]
    fn unchanged_agents_are_not_rewritten() {
        let gw = GatewayId::new();
        let now = SystemClock.now();
        let first = plan_agent_sync(gw, &[], &[report("a", "A")], now);
        assert_eq!(first.insert.len(), 1);
        let again = plan_agent_sync(gw, &first.insert, &[report("a", "A")], now);
        assert!(again.insert.is_empty() && again.update.is_empty());
        assert_eq!(again.outcome, AgentSync::default());
    }

    #[test]
    fn duplicates_collapse_to_the_last_report() {
        let plan = plan_agent_sync(
            GatewayId::new(),
            &[],
            &[report("a", "A1"), report("b", "B"), report("a", "A2")],
            SystemClock.now(),
        );
        let inserted: Vec<_> =
            plan.insert.iter().map(|a| (a.agent_key.as_str(), a.name.as_str())).collect();
        assert_eq!(inserted, vec![("a", "A2"), ("b", "B")]);
    }
}
