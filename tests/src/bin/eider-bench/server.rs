//! The processes the loopback bench talks to: the release `eider-local` on a fresh data folder,
//! and a hello-world axum server (this binary's `hello` subcommand) as the baseline. Both
//! listen on 127.0.0.1 only and are killed when dropped.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A child process killed (and reaped) on drop, so a failing bench leaves nothing behind.
pub struct Process {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
}

impl Process {
    /// Starts `command` (stdout piped) and waits for the stdout line holding
    /// `http://127.0.0.1:PORT`; the rest of its stdout is drained in a thread.
    fn start(mut command: Command, what: &str) -> Process {
        command.stdout(Stdio::piped()).stdin(Stdio::null());
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        let mut reader = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        let base = loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{what} ended before it said where it listens");
            }
            if let Some(at) = line.find("http://") {
                break line[at..].trim().to_string();
            }
        };
        std::thread::spawn(move || {
            let mut sink = String::new();
            while reader.read_line(&mut sink).is_ok_and(|n| n > 0) {
                sink.clear();
            }
        });
        Process { child, base }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The local server sits next to this binary (`scripts/bench.sh` builds both in the `fast`
/// profile).
pub fn sibling(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap().with_file_name(name);
    assert!(
        exe.exists(),
        "{} is missing: build it with cargo build --profile fast -p eider-local (scripts/bench.sh does)",
        exe.display()
    );
    exe
}

/// A Lambda binary (a function, hello-lambda): in the release profile's folder beside this
/// binary's own (the release profile is what `sam build` deploys), or next to it when the bench
/// itself is a release build.
pub fn release_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap();
    profile_dir
        .parent()
        .map(|target| target.join("release").join(name))
        .filter(|path| path.exists())
        .unwrap_or_else(|| profile_dir.join(name))
}

/// A free loopback port (bound then released: the server binds it a moment later).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Local {
    pub process: Process,
    pub lmtp_port: u16,
}

/// Starts `eider-local` on `data` with HTTP on a port of its choosing and LMTP on a free one.
/// No access token, no janitor runs (they would land at random points of the measurements),
/// logs at `warn`, search through `search_index` (`tantivy`: the full-text index; `terms`: the
/// table's term items), a storage quota large enough for the 100,000-message corpus, and
/// `store_env` on top (`EIDER_STORE=aws` and where: DynamoDB + S3 instead of the data folder).
pub fn start_local(data: &Path, search_index: &str, store_env: &[(&str, String)]) -> Local {
    let lmtp_port = free_port();
    let mut command = Command::new(sibling("eider-local"));
    command
        .env("EIDER_LISTEN", "127.0.0.1:0")
        .env("EIDER_LMTP_LISTEN", format!("127.0.0.1:{lmtp_port}"))
        .env("EIDER_DATA_DIR", data)
        .env("EIDER_JANITOR_SECONDS", "0")
        .env("EIDER_MAX_STORAGE", (1u64 << 40).to_string())
        .env("EIDER_DOMAIN", "example.com")
        .env("RUST_LOG", "warn")
        .env("EIDER_SEARCH_INDEX", search_index)
        .envs(store_env.iter().map(|(k, v)| (k, v)))
        .env_remove("EIDER_ACCESS_TOKEN")
        .env_remove("EIDER_SMTP_RELAY");
    Local {
        process: Process::start(command, "eider-local"),
        lmtp_port,
    }
}

/// Starts this binary's `hello` subcommand: the hello-world axum baseline.
pub fn start_hello() -> Process {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command.arg("hello").arg("127.0.0.1:0");
    Process::start(command, "the hello-world server")
}

/// The `hello` subcommand: `GET /` answers `Hello, World!`, on a multi-threaded runtime like
/// eider-local's. Prints `listening on http://ADDR` first.
pub fn serve_hello(addr: &str) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        println!("listening on http://{}", listener.local_addr().unwrap());
        let app = axum::Router::new().route("/", axum::routing::get(|| async { "Hello, World!" }));
        axum::serve(listener, app).await.unwrap();
    });
}

/// An HTTP client for loopback only (no proxy from the environment).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(64)
        .timeout(Duration::from_secs(600))
        .build()
        .unwrap()
}

/// Bytes a folder takes on disk (allocated blocks, as `du` counts them).
pub fn disk_usage(path: &Path) -> u64 {
    let mut on_disk = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                on_disk += file_usage(&entry.path());
            }
        }
    }
    on_disk
}

/// Bytes one file takes on disk (allocated blocks; 0 if it is missing).
pub fn file_usage(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).map_or(0, |m| m.blocks() * 512)
}
