//! A moto server (a local imitation of DynamoDB and S3) for the tests that run on AWS APIs.
//!
//! With `EIDER_TEST_AWS_ENDPOINT` set, tests use that server. Otherwise the first test that
//! needs one starts moto on a free port, once per test process, through
//! `scripts/moto_serial.py` (moto with requests handled one at a time, so transactions are
//! isolated as in DynamoDB). The Python that has moto is found next to `EIDER_MOTO_SERVER`,
//! then in `$HOME/.cache/eider/venv` (where `scripts/test.sh` installs it), then next to a
//! `moto_server` on `PATH`. No moto means a panic: these tests must not pass silently.
//!
//! The server is started by a small `sh` wrapper that waits for its stdin to close and then
//! kills it. Only this process holds the other end of that pipe, so however the test process
//! ends (even killed), the pipe closes and moto stops with it.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region};
use aws_sdk_dynamodb::config::Credentials;

/// The region the test clients use.
pub const REGION: &str = "us-east-1";

/// Runs moto until it exits by itself or stdin reaches EOF (the test process is gone).
/// The wrapper exits with moto, so a failed start shows at once.
/// (Background jobs of `sh` read /dev/null, hence the pipe is handed over as fd 3.)
const WATCHDOG: &str = r#"
exec 3<&0
"$0" "$3" -H 127.0.0.1 -p "$1" >"$2" 2>&1 </dev/null 3<&- &
server=$!
(cat <&3 >/dev/null; kill "$server" 2>/dev/null) &
exec 3<&-
wait "$server"
"#;

struct Server {
    endpoint: String,
    /// The wrapper and the pipe that keeps it waiting; never dropped before the process ends.
    _watchdog: Option<(Child, ChildStdin)>,
}

static SERVER: OnceLock<Server> = OnceLock::new();

/// The URL of the moto server for this test process (started on first use).
pub fn endpoint() -> &'static str {
    &SERVER.get_or_init(start).endpoint
}

/// DynamoDB and S3 clients for the moto server, with dummy credentials.
pub async fn clients() -> (aws_sdk_dynamodb::Client, aws_sdk_s3::Client) {
    eider_shared::store::s3::clients_from_config(&sdk_config().await, true)
}

/// The AWS configuration of the moto server: its endpoint, the test region, dummy credentials.
async fn sdk_config() -> aws_config::SdkConfig {
    sdk_config_at(endpoint()).await
}

/// The AWS configuration of a moto server at `endpoint`.
pub async fn sdk_config_at(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(eider_shared::store::sdk_http::http_client())
        .endpoint_url(endpoint)
        .region(Region::new(REGION))
        .credentials_provider(Credentials::new("test", "test", None, None, "eider-tests"))
        .load()
        .await
}

/// An SQS client for the moto server, with dummy credentials.
pub async fn sqs_client() -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(&sdk_config().await)
}

/// A name no other test uses (tables and buckets are created per test).
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}-{:016x}", rand::random::<u64>())
}

fn start() -> Server {
    if let Ok(endpoint) = std::env::var("EIDER_TEST_AWS_ENDPOINT") {
        let address = endpoint
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        wait_until_up(&address, None, &endpoint);
        return Server {
            endpoint,
            _watchdog: None,
        };
    }
    let python = find_moto().and_then(|server| server.parent().map(|d| d.join("python3")));
    let binary = python.filter(|p| p.is_file()).unwrap_or_else(|| {
        panic!(
            "moto_server not found: run `scripts/test.sh` (it installs moto into \
             $HOME/.cache/eider/venv), or set EIDER_MOTO_SERVER to the moto_server binary, \
             or EIDER_TEST_AWS_ENDPOINT to a running server"
        )
    });
    let port = free_port();
    let log = std::env::temp_dir().join(format!("eider-moto-{port}.log"));
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(WATCHDOG)
        .arg(&binary)
        .arg(port.to_string())
        .arg(&log)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../scripts/moto_serial.py"
        ))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
    let stdin = child.stdin.take().expect("piped stdin");
    let address = format!("127.0.0.1:{port}");
    let what = format!("{} (log: {})", binary.display(), log.display());
    wait_until_up(&address, Some(&mut child), &what);
    Server {
        endpoint: format!("http://{address}"),
        _watchdog: Some((child, stdin)),
    }
}

fn find_moto() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("EIDER_MOTO_SERVER") {
        return Some(PathBuf::from(path));
    }
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let venv = home.map(|h| h.join(".cache/eider/venv/bin/moto_server"));
    if let Some(venv) = venv.filter(|p| p.is_file()) {
        return Some(venv);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("moto_server"))
        .find(|p| p.is_file())
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

/// Waits (up to 30 s) until an HTTP request to `address` gets an answer.
fn wait_until_up(address: &str, mut child: Option<&mut Child>, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if answers_http(address) {
            return;
        }
        if let Some(status) = child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
            panic!("moto stopped at start ({status}): {what}");
        }
        if Instant::now() > deadline {
            panic!("moto does not answer on {address} after 30 s: {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn answers_http(address: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect(address) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let request = format!("GET /moto-api/ HTTP/1.0\r\nHost: {address}\r\n\r\n");
    let mut answer = [0u8; 5];
    stream.write_all(request.as_bytes()).is_ok()
        && stream.read_exact(&mut answer).is_ok()
        && &answer == b"HTTP/"
}
