//! template.yaml checked against the code: cfn-lint and `sam validate --lint` miss mistakes
//! inside `AWS::Serverless::*` properties (a bad Runtime, a misspelled method), so this test
//! reads the template and compares it with the routes and binaries the crates really have.

use std::collections::BTreeSet;

use serde_yaml::Value;

fn template() -> Value {
    let path = format!("{}/../template.yaml", env!("CARGO_MANIFEST_DIR"));
    serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A set of (method, path) routes.
type Routes = BTreeSet<(String, String)>;

/// (function logical id, binary, routes) of every function in the template.
fn functions(template: &Value) -> Vec<(String, String, Routes)> {
    let resources = template["Resources"].as_mapping().unwrap();
    let mut out = Vec::new();
    for (name, resource) in resources {
        if resource["Type"].as_str() != Some("AWS::Serverless::Function") {
            continue;
        }
        let name = name.as_str().unwrap().to_string();
        assert_eq!(
            resource["Metadata"]["BuildMethod"].as_str(),
            Some("rust-cargolambda"),
            "{name}"
        );
        let binary = resource["Metadata"]["BuildProperties"]["Binary"]
            .as_str()
            .unwrap()
            .to_string();
        let mut routes = BTreeSet::new();
        if let Some(events) = resource["Properties"]["Events"].as_mapping() {
            for (event_name, event) in events {
                assert_eq!(
                    event["Type"].as_str(),
                    Some("HttpApi"),
                    "{name}.{event_name:?}"
                );
                let props = &event["Properties"];
                let method = props["Method"].as_str().unwrap().to_string();
                let path = props["Path"].as_str().unwrap().to_string();
                assert!(
                    ["GET", "POST", "PUT", "DELETE"].contains(&method.as_str()),
                    "{name}: unexpected method {method}"
                );
                assert!(routes.insert((method, path)), "{name}: route listed twice");
            }
        }
        out.push((name, binary, routes));
    }
    out
}

fn code_routes(routes: &[(&str, &str)]) -> Routes {
    routes
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect()
}

#[test]
fn every_function_crate_is_in_the_template_with_exactly_its_routes() {
    let template = template();
    let functions = functions(&template);
    let expected = [
        ("eider-users", code_routes(eider_users::ROUTES)),
        ("eider-addresses", code_routes(eider_addresses::ROUTES)),
        ("eider-auth", code_routes(eider_auth::ROUTES)),
        ("eider-mailboxes", code_routes(eider_mailboxes::ROUTES)),
        ("eider-messages", code_routes(eider_messages::ROUTES)),
        ("eider-archive", code_routes(eider_archive::ROUTES)),
    ];
    assert_eq!(
        functions.len(),
        expected.len(),
        "functions in template: {functions:?}"
    );
    for (binary, routes) in expected {
        let (name, _, listed) = functions
            .iter()
            .find(|(_, b, _)| b == binary)
            .unwrap_or_else(|| panic!("{binary} is not in template.yaml"));
        assert_eq!(
            listed, &routes,
            "{name} ({binary}) routes differ from the crate's ROUTES"
        );
    }
    // Every route the local server serves is deployed somewhere, exactly once.
    let all: Vec<_> = functions
        .iter()
        .flat_map(|(_, _, r)| r.iter().cloned())
        .collect();
    let unique: BTreeSet<_> = all.iter().cloned().collect();
    assert_eq!(
        all.len(),
        unique.len(),
        "a route is claimed by two functions"
    );
    assert_eq!(unique, code_routes(&eider_local::routes()));
}

#[test]
fn functions_run_on_the_rust_runtime_with_the_table_and_bucket() {
    let template = template();
    let globals = &template["Globals"]["Function"];
    assert_eq!(globals["Runtime"].as_str(), Some("provided.al2023"));
    assert_eq!(globals["Handler"].as_str(), Some("bootstrap"));
    assert_eq!(globals["Architectures"][0].as_str(), Some("x86_64"));
    let variables = globals["Environment"]["Variables"].as_mapping().unwrap();
    for name in [
        "EIDER_TABLE",
        "EIDER_BUCKET",
        "EIDER_ACCESS_TOKEN",
        "EIDER_DOMAIN",
    ] {
        assert!(variables.contains_key(name), "{name} missing from Globals");
    }
    let table = &template["Resources"]["Table"]["Properties"];
    assert_eq!(
        table["TimeToLiveSpecification"]["AttributeName"].as_str(),
        Some("ttl")
    );
    let keys: Vec<&str> = table["KeySchema"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|k| k["AttributeName"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["pk", "sk"]);
    let indexes: BTreeSet<&str> = table["GlobalSecondaryIndexes"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|i| i["IndexName"].as_str().unwrap())
        .collect();
    assert_eq!(indexes, BTreeSet::from(["gsi1", "gsi2"]));
}
