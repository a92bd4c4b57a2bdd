//! What the tests take from template.yaml (the cloud-shape runner `eider-cloud`, the sam build
//! test): each function's binary and code folder, memory and literal environment, its HTTP API
//! routes, and its DynamoDB stream subscription with the filter.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use serde_json::Value as Json;
use serde_yaml::Value;

/// One function of the template.
#[derive(Debug, Clone)]
pub struct Function {
    /// The binary (`Metadata.BuildProperties.Binary`), also its name under the emulator.
    pub binary: String,
    /// The folder SAM builds it in (`CodeUri`, relative to the template).
    pub code_uri: String,
    pub memory_mb: u64,
    /// Environment variables the template gives as plain strings (not `!Ref`/`!Sub`).
    pub env: BTreeMap<String, String>,
    /// `(method, path)` of each `HttpApi` event.
    pub routes: Vec<(String, String)>,
    /// Served by its own function URL (the updates stream).
    pub has_url: bool,
    /// The filter pattern of its DynamoDB stream event, when it has one (`{}` for none).
    pub stream_filter: Option<Json>,
}

/// Every `AWS::Serverless::Function` of `path`.
pub fn functions(path: &Path) -> anyhow::Result<Vec<Function>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    let template: Value = serde_yaml::from_str(&text)?;
    let global_memory = template["Globals"]["Function"]["MemorySize"]
        .as_u64()
        .unwrap_or(256);
    let global_code_uri = template["Globals"]["Function"]["CodeUri"].as_str();
    let global_env = literal_env(&template["Globals"]["Function"]["Environment"]["Variables"]);
    let resources = template["Resources"]
        .as_mapping()
        .context("template.yaml has no Resources")?;
    let mut out = Vec::new();
    for (_, resource) in resources {
        if resource["Type"].as_str() != Some("AWS::Serverless::Function") {
            continue;
        }
        let Some(binary) = resource["Metadata"]["BuildProperties"]["Binary"].as_str() else {
            continue;
        };
        let props = &resource["Properties"];
        let mut env = global_env.clone();
        env.extend(literal_env(&props["Environment"]["Variables"]));
        let mut routes = Vec::new();
        let mut stream_filter = None;
        if let Some(events) = props["Events"].as_mapping() {
            for (_, event) in events {
                let p = &event["Properties"];
                match event["Type"].as_str() {
                    Some("HttpApi") => {
                        let method = p["Method"].as_str().unwrap_or_default().to_uppercase();
                        let path = p["Path"].as_str().unwrap_or_default().to_string();
                        routes.push((method, path));
                    }
                    Some("DynamoDB") => {
                        let pattern = p["FilterCriteria"]["Filters"][0]["Pattern"]
                            .as_str()
                            .map(serde_json::from_str)
                            .transpose()
                            .context("a stream filter pattern is not JSON")?;
                        stream_filter = Some(pattern.unwrap_or(Json::Object(Default::default())));
                    }
                    _ => {}
                }
            }
        }
        out.push(Function {
            binary: binary.to_string(),
            code_uri: props["CodeUri"]
                .as_str()
                .or(global_code_uri)
                .unwrap_or(".")
                .to_string(),
            memory_mb: props["MemorySize"].as_u64().unwrap_or(global_memory),
            env,
            routes,
            has_url: !props["FunctionUrlConfig"].is_null(),
            stream_filter,
        });
    }
    Ok(out)
}

fn literal_env(variables: &Value) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    if let Some(map) = variables.as_mapping() {
        for (key, value) in map {
            if let (Some(key), Some(value)) = (key.as_str(), value.as_str()) {
                env.insert(key.to_string(), value.to_string());
            }
        }
    }
    env
}

/// Whether a stream record (Lambda's JSON shape) passes an event filter pattern: every key of
/// the pattern must match, a list by one of its values (a string, or `{"prefix": ...}`), an
/// object by recursion. The subset of EventBridge patterns the template uses.
pub fn matches(pattern: &Json, record: &Json) -> bool {
    let Some(fields) = pattern.as_object() else {
        return false;
    };
    fields.iter().all(|(key, want)| {
        let got = &record[key];
        match want {
            Json::Array(options) => options.iter().any(|option| match option {
                Json::Object(rule) => match (rule.get("prefix"), got.as_str()) {
                    (Some(Json::String(prefix)), Some(value)) => value.starts_with(prefix),
                    _ => false,
                },
                exact => exact == got,
            }),
            Json::Object(_) => matches(want, got),
            exact => exact == got,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_bridge_filter_takes_journal_inserts_only() {
        let pattern = json!({"eventName": ["INSERT"], "dynamodb": {"Keys": {"pk": {"S": [{"prefix": "JOURNAL#"}]}}}});
        let record = |name: &str, pk: &str| json!({"eventName": name, "dynamodb": {"Keys": {"pk": {"S": pk}}}});
        assert!(matches(&pattern, &record("INSERT", "JOURNAL#u1")));
        assert!(!matches(&pattern, &record("MODIFY", "JOURNAL#u1")));
        assert!(!matches(&pattern, &record("INSERT", "USER#u1")));
        assert!(matches(&json!({}), &record("REMOVE", "X")));
    }
}
