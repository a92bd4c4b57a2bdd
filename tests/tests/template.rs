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
                // A stream or queue consumer's trigger is no route (checked in its own test
                // below).
                if matches!(event["Type"].as_str(), Some("DynamoDB" | "SQS")) {
                    continue;
                }
                // Nor is the janitor's schedule (checked in its own test below).
                if event["Type"].as_str() == Some("Schedule") {
                    continue;
                }
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

fn code_routes(routes: eider_shared::http::Routes) -> Routes {
    routes
        .list()
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect()
}

#[test]
fn every_function_crate_is_in_the_template_with_exactly_its_routes() {
    let template = template();
    let functions = functions(&template);
    let expected = [
        ("eider-users", code_routes(eider_users::routes())),
        ("eider-addresses", code_routes(eider_addresses::routes())),
        ("eider-auth", code_routes(eider_auth::routes())),
        ("eider-mailboxes", code_routes(eider_mailboxes::routes())),
        ("eider-messages", code_routes(eider_messages::routes())),
        ("eider-archive", code_routes(eider_archive::routes())),
        ("eider-filters", code_routes(eider_filters::routes())),
        ("eider-autoreply", code_routes(eider_autoreply::routes())),
        ("eider-submit", code_routes(eider_submit::routes())),
        // Invoked by an SES receipt rule, not through the HTTP API.
        ("eider-ingest", Routes::new()),
        // Served by its own function URL (response streaming), not by the HTTP API: see
        // `updates_are_streamed_by_a_function_url_and_pushed_over_websocket`.
        ("eider-updates", Routes::new()),
        // Invoked by the WebSocket API and by the table's stream.
        ("eider-ws", Routes::new()),
        ("eider-stream-bridge", Routes::new()),
        ("eider-indexer", Routes::new()),
        // Invoked by the table's stream and its SQS queue: see
        // `webhooks_are_sent_from_the_stream_through_a_queue_with_a_dead_letter_queue`.
        ("eider-webhooks", Routes::new()),
        // Invoked by an EventBridge schedule: see
        // `janitor_runs_on_a_schedule_with_time_and_rights_to_purge`.
        ("eider-janitor", Routes::new()),
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
            "{name} ({binary}) routes differ from the crate's routes()"
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
    let by_url = code_routes(eider_updates::routes());
    assert!(
        unique.is_disjoint(&by_url),
        "the HTTP API claims an updates route"
    );
    let served: Routes = unique.into_iter().chain(by_url).collect();
    assert_eq!(served, code_routes(eider_local::routes()));
}

#[test]
fn functions_run_on_the_rust_runtime_with_the_table_and_bucket() {
    let template = template();
    let globals = &template["Globals"]["Function"];
    assert_eq!(globals["Runtime"].as_str(), Some("provided.al2023"));
    assert_eq!(globals["Handler"].as_str(), Some("bootstrap"));
    // arm64 by default, x86_64 selectable (builds on x86_64 machines pick it).
    assert!(format!("{:?}", globals["Architectures"][0]).contains("Architecture"));
    let architecture = &template["Parameters"]["Architecture"];
    assert_eq!(architecture["Default"].as_str(), Some("arm64"));
    let allowed: Vec<&str> = architecture["AllowedValues"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(allowed, ["arm64", "x86_64"]);
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

#[test]
fn ses_may_write_incoming_mail_and_invoke_the_ingest_function() {
    let template = template();
    let resources = &template["Resources"];
    let permission = &resources["IngestFunctionSesPermission"]["Properties"];
    assert_eq!(permission["Principal"].as_str(), Some("ses.amazonaws.com"));
    assert_eq!(permission["Action"].as_str(), Some("lambda:InvokeFunction"));
    let statement = &resources["MailBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"][0];
    assert_eq!(
        statement["Principal"]["Service"].as_str(),
        Some("ses.amazonaws.com")
    );
    assert_eq!(statement["Action"].as_str(), Some("s3:PutObject"));
    let ingest = &resources["IngestFunction"]["Properties"];
    let prefix = ingest["Environment"]["Variables"]["EIDER_INCOMING_PREFIX"]
        .as_str()
        .unwrap();
    assert_eq!(
        prefix,
        eider_shared::config::DeliveryConfig::default().incoming_prefix
    );
    let rule = &resources["IncomingReceiptRule"]["Properties"]["Rule"]["Actions"];
    assert_eq!(
        rule[0]["S3Action"]["ObjectKeyPrefix"].as_str(),
        Some(prefix)
    );
    let arn = format!("{:?}", rule[1]["LambdaAction"]["FunctionArn"]);
    assert!(
        arn.contains("GetAtt") && arn.contains("IngestFunction.Arn"),
        "{arn}"
    );
    let policies = format!("{:?}", ingest["Policies"]);
    assert!(policies.contains("ses:SendEmail"), "{policies}");
}

/// The resource of the function whose binary is `binary`.
fn function<'a>(template: &'a Value, binary: &str) -> (&'a str, &'a Value) {
    template["Resources"]
        .as_mapping()
        .unwrap()
        .iter()
        .find(|(_, r)| r["Metadata"]["BuildProperties"]["Binary"].as_str() == Some(binary))
        .map(|(name, r)| (name.as_str().unwrap(), r))
        .unwrap_or_else(|| panic!("{binary} is not in template.yaml"))
}

#[test]
fn updates_are_streamed_by_a_function_url_and_pushed_over_websocket() {
    let template = template();
    let resources = &template["Resources"];

    // SSE: a streaming function URL; the function checks the access token itself.
    let (updates_name, updates) = function(&template, "eider-updates");
    let url = &updates["Properties"]["FunctionUrlConfig"];
    assert_eq!(url["InvokeMode"].as_str(), Some("RESPONSE_STREAM"));
    assert_eq!(url["AuthType"].as_str(), Some("NONE"));
    assert!(
        updates["Properties"]["Events"].is_null(),
        "no HttpApi events"
    );
    let timeout = updates["Properties"]["Timeout"].as_u64().unwrap();
    assert!((60..=900).contains(&timeout), "{timeout}");
    let output = format!("{:?}", template["Outputs"]["UpdatesUrl"]["Value"]);
    assert!(
        output.contains(&format!("{updates_name}Url.FunctionUrl")),
        "{output}"
    );

    // WebSocket: each route of the ws function on the WebSocket API, through one integration
    // that invokes it.
    let (ws_name, ws) = function(&template, "eider-ws");
    assert!(ws["Properties"]["Events"].is_null());
    let api = &resources["WebSocketApi"]["Properties"];
    assert_eq!(api["ProtocolType"].as_str(), Some("WEBSOCKET"));
    let integration = format!("{:?}", resources["WebSocketIntegration"]["Properties"]);
    assert!(
        integration.contains(&format!("{ws_name}.Arn")),
        "{integration}"
    );
    let mut route_keys = BTreeSet::new();
    for (name, resource) in resources.as_mapping().unwrap() {
        if resource["Type"].as_str() != Some("AWS::ApiGatewayV2::Route") {
            continue;
        }
        let props = &resource["Properties"];
        assert!(
            format!("{:?}", props["ApiId"]).contains("WebSocketApi"),
            "{name:?}"
        );
        let target = format!("{:?}", props["Target"]);
        assert!(
            target.contains("integrations/${WebSocketIntegration}"),
            "{target}"
        );
        route_keys.insert(props["RouteKey"].as_str().unwrap().to_string());
    }
    let expected: BTreeSet<String> = eider_ws::ROUTE_KEYS.iter().map(|k| k.to_string()).collect();
    assert_eq!(route_keys, expected);
    let permission = &resources["WsFunctionApiPermission"]["Properties"];
    assert_eq!(
        permission["Principal"].as_str(),
        Some("apigateway.amazonaws.com")
    );
    assert!(format!("{:?}", permission["FunctionName"]).contains(ws_name));

    // The bridge: the table's stream, filtered to new journal items, with batch item failures,
    // allowed to post to connections.
    let (_, bridge) = function(&template, "eider-stream-bridge");
    let events = bridge["Properties"]["Events"].as_mapping().unwrap();
    assert_eq!(events.len(), 1);
    let event = events.values().next().unwrap();
    assert_eq!(event["Type"].as_str(), Some("DynamoDB"));
    let props = &event["Properties"];
    assert!(format!("{:?}", props["Stream"]).contains("Table.StreamArn"));
    assert_eq!(props["StartingPosition"].as_str(), Some("LATEST"));
    assert_eq!(
        props["FunctionResponseTypes"][0].as_str(),
        Some("ReportBatchItemFailures")
    );
    let pattern: serde_json::Value = serde_json::from_str(
        props["FilterCriteria"]["Filters"][0]["Pattern"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(pattern["eventName"], serde_json::json!(["INSERT"]));
    assert_eq!(
        pattern["dynamodb"]["Keys"]["pk"]["S"][0]["prefix"],
        eider_shared::domain::keys::JOURNAL_PK_PREFIX
    );
    let variables = &bridge["Properties"]["Environment"]["Variables"];
    assert!(format!("{:?}", variables["EIDER_WS_ENDPOINT"]).contains("WebSocketStage"));
    let policies = format!("{:?}", bridge["Properties"]["Policies"]);
    assert!(
        policies.contains("execute-api:ManageConnections"),
        "{policies}"
    );
    let stream = &resources["Table"]["Properties"]["StreamSpecification"]["StreamViewType"];
    assert!(
        matches!(stream.as_str(), Some("NEW_IMAGE" | "NEW_AND_OLD_IMAGES")),
        "the bridge reads new images"
    );
}

#[test]
fn janitor_runs_on_a_schedule_with_time_and_rights_to_purge() {
    let template = template();
    let (name, janitor) = function(&template, "eider-janitor");
    assert_eq!(name, "JanitorFunction");
    let props = &janitor["Properties"];
    let events = props["Events"].as_mapping().unwrap();
    assert!(!events.is_empty(), "{name} has no events");
    for (event_name, event) in events {
        assert_eq!(
            event["Type"].as_str(),
            Some("Schedule"),
            "{name}.{event_name:?}: only a schedule invokes the janitor"
        );
        let schedule = event["Properties"]["Schedule"].as_str().unwrap();
        assert!(
            schedule.starts_with("rate(") || schedule.starts_with("cron("),
            "{name}: {schedule}"
        );
    }
    // Its budget ends 30 s before the deadline (eider_janitor::SAFETY_MARGIN): a timeout
    // of minutes leaves it real work time.
    let timeout = props["Timeout"].as_u64().unwrap();
    assert!((120..=900).contains(&timeout), "{name}: Timeout {timeout}");
    assert!(timeout > 2 * eider_janitor::SAFETY_MARGIN.as_secs());
    let policies: Vec<&str> = props["Policies"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|p| p.as_mapping()?.keys().next()?.as_str())
        .collect();
    // The table, the bucket, and SES for the mail it sends when it is due.
    assert_eq!(
        policies,
        ["DynamoDBCrudPolicy", "S3CrudPolicy", "Statement"],
        "{name}"
    );
    let ses = serde_yaml::to_string(&props["Policies"][2]).unwrap();
    assert!(ses.contains("ses:SendRawEmail"), "{ses}");
}

#[test]
fn webhooks_are_sent_from_the_stream_through_a_queue_with_a_dead_letter_queue() {
    let template = template();
    let (_, function) = function(&template, "eider-webhooks");
    let properties = &function["Properties"];
    let queue_url = &properties["Environment"]["Variables"]["EIDER_WEBHOOK_QUEUE_URL"];
    let names = |value: &Value, target: &str| format!("{value:?}").contains(target);
    assert!(names(queue_url, "WebhookQueue"), "{queue_url:?}");
    let events = &properties["Events"];
    let stream = &events["NewDeliveries"]["Properties"];
    assert_eq!(events["NewDeliveries"]["Type"], "DynamoDB");
    let pattern = stream["FilterCriteria"]["Filters"][0]["Pattern"]
        .as_str()
        .unwrap();
    assert!(
        pattern.contains("WEBHOOK_QUEUE#") && pattern.contains("INSERT"),
        "{pattern}"
    );
    assert!(names(
        &stream["DestinationConfig"]["OnFailure"]["Destination"],
        "WebhookDeadLetterQueue.Arn"
    ));
    let queue = &events["Deliveries"];
    assert_eq!(queue["Type"], "SQS");
    assert!(names(&queue["Properties"]["Queue"], "WebhookQueue.Arn"));
    assert_eq!(
        queue["Properties"]["FunctionResponseTypes"][0],
        "ReportBatchItemFailures"
    );
    let resources = &template["Resources"];
    let redrive = &resources["WebhookQueue"]["Properties"]["RedrivePolicy"];
    assert!(names(
        &redrive["deadLetterTargetArn"],
        "WebhookDeadLetterQueue.Arn"
    ));
    let visibility = resources["WebhookQueue"]["Properties"]["VisibilityTimeout"]
        .as_u64()
        .unwrap();
    let timeout = properties["Timeout"].as_u64().unwrap();
    assert!(
        visibility >= 6 * timeout,
        "visibility {visibility} s, timeout {timeout} s"
    );
    // The function's attempts end before the queue shows the message again.
    let attempt = eider_shared::config::WebhookConfig::default()
        .timeout
        .as_secs();
    assert!(
        attempt < timeout,
        "one attempt ({attempt} s) fits in the function ({timeout} s)"
    );
}

#[test]
fn secrets_come_from_secrets_manager_never_from_parameters() {
    let template = template();
    let parameters = template["Parameters"].as_mapping().unwrap();
    for (name, parameter) in parameters {
        let name = name.as_str().unwrap();
        assert!(
            !["AccessToken", "SecretKey"].contains(&name),
            "{name}: a secret as a template parameter"
        );
        assert!(
            parameter["NoEcho"].is_null(),
            "{name}: a hidden parameter is a secret"
        );
    }
    let variables = &template["Globals"]["Function"]["Environment"]["Variables"];
    for (variable, field) in [
        ("EIDER_ACCESS_TOKEN", "accessToken"),
        ("EIDER_SECRET_KEY", "secretKey"),
    ] {
        let value = format!("{:?}", variables[variable]);
        assert!(
            value.contains("resolve:secretsmanager") && value.contains(field),
            "{variable}: {value}"
        );
    }
    // Every function gets the key: they all may seal or open secrets (TOTP seeds, DKIM keys,
    // webhook secrets), so none overrides it.
    for (name, _, _) in functions(&template) {
        let own = &template["Resources"][name.as_str()]["Properties"]["Environment"]["Variables"];
        assert!(
            own["EIDER_SECRET_KEY"].is_null(),
            "{name} overrides EIDER_SECRET_KEY"
        );
    }
    let key = &template["Resources"]["SecretKeySecret"]["Properties"]["GenerateSecretString"];
    assert_eq!(key["PasswordLength"].as_u64(), Some(64));
    assert_eq!(
        key["ExcludeCharacters"].as_str(),
        Some("ghijklmnopqrstuvwxyz")
    );
    assert_eq!(key["ExcludeUppercase"].as_bool(), Some(true));
}

#[test]
fn every_function_has_alarms_and_failed_events_are_kept() {
    let template = template();
    let resources = &template["Resources"];
    for (name, _, _) in functions(&template) {
        for metric in ["Errors", "Throttles"] {
            let alarm = &resources[format!("{name}{metric}Alarm").as_str()]["Properties"];
            assert_eq!(alarm["MetricName"].as_str(), Some(metric), "{name}");
            assert!(
                format!("{:?}", alarm["Dimensions"]).contains(&name),
                "{name}"
            );
            assert!(
                format!("{:?}", alarm["AlarmActions"]).contains("AlarmTopic"),
                "{name}"
            );
        }
    }
    for alarm in [
        "HttpApi5xxAlarm",
        "WebhookDeadLetterAlarm",
        "FailedEventsAlarm",
    ] {
        let actions = format!("{:?}", resources[alarm]["Properties"]["AlarmActions"]);
        assert!(actions.contains("AlarmTopic"), "{alarm}");
    }
    // Asynchronous invocations (SES, the schedule) and the bridge's stream records end in a
    // queue when every attempt failed.
    for binary in ["eider-ingest", "eider-janitor"] {
        let (name, function) = function(&template, binary);
        let config = &function["Properties"]["EventInvokeConfig"]["DestinationConfig"]["OnFailure"];
        assert!(
            format!("{config:?}").contains("FailedEventsQueue.Arn"),
            "{name}"
        );
    }
    let (_, bridge) = function(&template, "eider-stream-bridge");
    let stream = &bridge["Properties"]["Events"]["JournalStream"]["Properties"];
    assert!(format!("{:?}", stream["DestinationConfig"]).contains("FailedEventsQueue.Arn"));
    let (_, indexer) = function(&template, "eider-indexer");
    let stream = &indexer["Properties"]["Events"]["MessageStream"]["Properties"];
    assert!(format!("{:?}", stream["DestinationConfig"]).contains("FailedEventsQueue.Arn"));
    assert!(
        format!("{:?}", stream["FilterCriteria"]).contains("MSGS#"),
        "the indexer reads message items only"
    );
}

/// What each function may do beyond its logs, pinned: a new permission must be added here
/// on purpose (and a function that does not touch S3, SES or a queue never gets it).
#[test]
fn each_function_has_only_the_permissions_it_needs() {
    let template = template();
    let expected: &[(&str, &[&str])] = &[
        // /health's probe blob, audit exports, account imports (messages).
        ("eider-users", &["DynamoDBCrudPolicy", "S3CrudPolicy"]),
        ("eider-addresses", &["DynamoDBCrudPolicy"]),
        ("eider-auth", &["DynamoDBCrudPolicy"]),
        // Deleting a folder moves its messages' blobs along.
        ("eider-mailboxes", &["DynamoDBCrudPolicy", "S3CrudPolicy"]),
        ("eider-messages", &["DynamoDBCrudPolicy", "S3CrudPolicy"]),
        ("eider-archive", &["DynamoDBCrudPolicy", "S3CrudPolicy"]),
        ("eider-filters", &["DynamoDBCrudPolicy"]),
        ("eider-autoreply", &["DynamoDBCrudPolicy"]),
        (
            "eider-submit",
            &[
                "DynamoDBCrudPolicy",
                "S3CrudPolicy",
                "ses:SendEmail,ses:SendRawEmail",
            ],
        ),
        (
            "eider-ingest",
            &[
                "DynamoDBCrudPolicy",
                "S3CrudPolicy",
                "ses:SendEmail,ses:SendRawEmail",
            ],
        ),
        // Reads the journal only.
        ("eider-updates", &["DynamoDBReadPolicy"]),
        ("eider-ws", &["DynamoDBCrudPolicy"]),
        (
            "eider-stream-bridge",
            &["DynamoDBCrudPolicy", "execute-api:ManageConnections"],
        ),
        // Reads messages' sources, writes the search indexes (search/).
        ("eider-indexer", &["DynamoDBCrudPolicy", "S3CrudPolicy"]),
        (
            "eider-webhooks",
            &[
                "DynamoDBCrudPolicy",
                "SQSSendMessagePolicy",
                "SQSSendMessagePolicy",
            ],
        ),
        (
            "eider-janitor",
            &[
                "DynamoDBCrudPolicy",
                "S3CrudPolicy",
                "ses:SendEmail,ses:SendRawEmail",
            ],
        ),
    ];
    let functions = functions(&template);
    assert_eq!(functions.len(), expected.len());
    for (binary, wanted) in expected {
        let (name, function) = function(&template, binary);
        let mut kinds = Vec::new();
        for policy in function["Properties"]["Policies"].as_sequence().unwrap() {
            for (kind, value) in policy.as_mapping().unwrap() {
                let kind = kind.as_str().unwrap();
                if kind == "Statement" {
                    for statement in value.as_sequence().unwrap() {
                        assert_eq!(statement["Effect"].as_str(), Some("Allow"), "{name}");
                        let actions: Vec<&str> = statement["Action"]
                            .as_sequence()
                            .unwrap()
                            .iter()
                            .map(|a| a.as_str().unwrap())
                            .collect();
                        assert!(
                            !actions.iter().any(|a| a.contains('*')),
                            "{name}: {actions:?}"
                        );
                        kinds.push(actions.join(","));
                    }
                } else {
                    kinds.push(kind.to_string());
                }
            }
        }
        assert_eq!(kinds, *wanted, "{name} ({binary})");
    }
}
