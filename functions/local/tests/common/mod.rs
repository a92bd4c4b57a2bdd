//! The real `eider-local` binary, started for the end-to-end tests.
// Each test file uses a different part of this module.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub mod spec;

/// A running `eider-local`, killed when dropped.
pub struct LocalServer {
    pub child: Child,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    pub lmtp_port: u16,
    /// From spawning the process to its "listening on" line.
    pub started_in: Duration,
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts the binary over `data_dir` on free loopback ports (HTTP and LMTP), with `env` on
/// top of a clean test environment (no access token, no SMTP relay), and waits until it
/// listens.
pub fn start(data_dir: &Path, env: &[(&str, &str)]) -> LocalServer {
    let (port, lmtp_port) = (free_port(), free_port());
    let mut command = Command::new(env!("CARGO_BIN_EXE_eider-local"));
    command
        .env("EIDER_LISTEN", format!("127.0.0.1:{port}"))
        .env("EIDER_LMTP_LISTEN", format!("127.0.0.1:{lmtp_port}"))
        .env("EIDER_DATA_DIR", data_dir)
        .env("EIDER_DOMAIN", "example.com")
        .env("RUST_LOG", "warn")
        .env_remove("EIDER_ACCESS_TOKEN")
        .env_remove("EIDER_SMTP_RELAY")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let began = Instant::now();
    let mut child = command.spawn().expect("eider-local starts");
    // The server prints its address once it is listening.
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(
        line.contains("listening on"),
        "unexpected first line: {line:?}"
    );
    LocalServer {
        child,
        base: format!("http://127.0.0.1:{port}"),
        lmtp_port,
        started_in: began.elapsed(),
    }
}
