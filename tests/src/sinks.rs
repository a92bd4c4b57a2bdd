//! Loopback sinks for outgoing traffic in tests: a tiny SMTP server that keeps every message
//! it is given (the relay of autoreplies and forwards), and an HTTP server that keeps every
//! body POSTed to it (`action_targetUrl`).

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// One message the SMTP sink received.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    pub from: String,
    pub to: Vec<String>,
    pub data: String,
}

/// A running SMTP sink on 127.0.0.1.
#[derive(Clone)]
pub struct SmtpSink {
    pub port: u16,
    pub received: Arc<Mutex<Vec<Received>>>,
}

impl SmtpSink {
    pub fn messages(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

fn path_of(line: &str) -> String {
    line.split_once('<')
        .and_then(|(_, rest)| rest.split_once('>'))
        .map(|(address, _)| address.to_string())
        .unwrap_or_default()
}

/// Starts an SMTP sink: it accepts any sender and recipient and answers every message 250.
pub async fn smtp_sink() -> SmtpSink {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let received = Arc::new(Mutex::new(Vec::new()));
    let store = received.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let store = store.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read);
                let _ = write.write_all(b"220 sink ESMTP\r\n").await;
                let (mut from, mut to) = (String::new(), Vec::new());
                let mut line = String::new();
                loop {
                    line.clear();
                    if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let upper = line.to_ascii_uppercase();
                    let answer: &[u8] = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
                        b"250 sink\r\n"
                    } else if upper.starts_with("MAIL") {
                        from = path_of(&line);
                        to.clear();
                        b"250 OK\r\n"
                    } else if upper.starts_with("RCPT") {
                        to.push(path_of(&line));
                        b"250 OK\r\n"
                    } else if upper.starts_with("DATA") {
                        let _ = write.write_all(b"354 go ahead\r\n").await;
                        let mut data = String::new();
                        loop {
                            line.clear();
                            if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
                                return;
                            }
                            if line == ".\r\n" || line == ".\n" {
                                break;
                            }
                            data.push_str(line.strip_prefix('.').unwrap_or(&line));
                        }
                        store.lock().unwrap().push(Received {
                            from: from.clone(),
                            to: to.clone(),
                            data,
                        });
                        b"250 2.0.0 queued as sink\r\n"
                    } else if upper.starts_with("QUIT") {
                        let _ = write.write_all(b"221 bye\r\n").await;
                        return;
                    } else {
                        b"250 OK\r\n"
                    };
                    if write.write_all(answer).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    SmtpSink { port, received }
}

/// The bodies an [`HttpSink`] kept: `(content type, body)`.
pub type Bodies = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// A running HTTP sink: `POST /ok` is kept and answered 200, `POST /fail` answered 500.
#[derive(Clone)]
pub struct HttpSink {
    pub port: u16,
    pub bodies: Bodies,
}

pub async fn http_sink() -> HttpSink {
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::post;
    async fn ok(
        State(bodies): State<Bodies>,
        headers: HeaderMap,
        body: bytes::Bytes,
    ) -> StatusCode {
        let kind = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        bodies.lock().unwrap().push((kind, body.to_vec()));
        StatusCode::OK
    }
    let bodies: Bodies = Arc::new(Mutex::new(Vec::new()));
    let app = axum::Router::new()
        .route("/ok", post(ok))
        .route(
            "/fail",
            post(|| async { StatusCode::INTERNAL_SERVER_ERROR }),
        )
        .with_state(bodies.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    HttpSink { port, bodies }
}
