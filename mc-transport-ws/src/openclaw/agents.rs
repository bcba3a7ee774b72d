//! Reading `agents.list` (OPENCLAW.md §3): `{agents:[{id, name?, identity?:{name?}}, …]}`.

use mc_core::AgentReport;
use serde_json::Value;

/// The agents of an `agents.list` answer, as the relay records them: the OpenClaw id is the
/// agent key; the name is `name`, else `identity.name`, else the id. Entries without an id
/// are skipped.
pub fn agent_reports(list: &Value) -> Vec<AgentReport> {
    list.get("agents")
        .and_then(Value::as_array)
        .map(|agents| {
            agents
                .iter()
                .filter_map(|a| {
                    let key = a.get("id").and_then(Value::as_str)?;
                    let name = a
                        .get("name")
                        .or_else(|| a.pointer("/identity/name"))
                        .and_then(Value::as_str)
                        .unwrap_or(key);
                    Some(AgentReport { agent_key: key.to_owned(), name: name.to_owned() })
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fall_back_to_identity_then_id() {
        let list = serde_json::json!({ "agents": [
            { "id": "main", "name": "Main" },
            { "id": "ops", "identity": { "name": "Ops bot" } },
            { "id": "bare" },
            { "name": "no id" },
        ]});
        let names: Vec<_> =
            agent_reports(&list).into_iter().map(|a| (a.agent_key, a.name)).collect();
        assert_eq!(
            names,
            [("main", "Main"), ("ops", "Ops bot"), ("bare", "bare")]
                .map(|(k, n)| (k.to_owned(), n.to_owned()))
        );
        assert!(agent_reports(&serde_json::json!({ "agents": 3 })).is_empty());
    }
}
