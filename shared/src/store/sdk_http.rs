//! The HTTP client of every AWS client: hyper's pooled HTTP/1.1 client with rustls on ring and
//! the roots of [`crate::tls`].
//!
//! The SDK's own client (`aws-smithy-http-client`) cannot be given compiled-in roots: it reads
//! and parses the platform's certificate store when a client is built (about 2.5 ms of a cold
//! start here), and it always links HTTP/2 (about 0.7 MB of every function), which DynamoDB
//! and S3 do not need. This one keeps what the SDK expects of a client: the connect and read
//! timeouts of the operation's settings, one connection pool per set of settings shared by
//! every client of the process, and errors sorted the way the SDK's retry strategy reads them
//! (I/O and timeouts retried, a request the client could not send not).

use std::error::Error as StdError;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::retry::ErrorKind;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector as TcpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

type HttpsClient = Client<hyper_rustls::HttpsConnector<TcpConnector>, SdkBody>;

/// How long an idle connection stays in the pool (hyper's and the SDK's default).
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// A new client trusting [`crate::tls::client_config`]'s roots.
pub fn http_client() -> SharedHttpClient {
    SharedHttpClient::new(PooledClient::new(crate::tls::client_config()))
}

/// Hands the SDK a connector per set of timeouts; the SDK asks on every request, so they are
/// kept (in practice one: every client of a process has the same settings).
#[derive(Debug)]
struct PooledClient {
    tls: Arc<rustls::ClientConfig>,
    connectors: Mutex<Vec<(Timeouts, SharedHttpConnector)>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Timeouts {
    connect: Option<Duration>,
    read: Option<Duration>,
}

impl HttpClient for PooledClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        self.connector(Timeouts {
            connect: settings.connect_timeout(),
            read: settings.read_timeout(),
        })
    }
}

impl PooledClient {
    fn new(tls: Arc<rustls::ClientConfig>) -> PooledClient {
        PooledClient {
            tls,
            connectors: Mutex::new(Vec::new()),
        }
    }

    /// The connector for `timeouts`, made on first use.
    fn connector(&self, timeouts: Timeouts) -> SharedHttpConnector {
        let mut connectors = self.connectors.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, connector)) = connectors.iter().find(|(t, _)| *t == timeouts) {
            return connector.clone();
        }
        let connector = SharedHttpConnector::new(Connector {
            client: pooled_client(self.tls.as_ref().clone(), timeouts.connect),
            read_timeout: timeouts.read,
        });
        connectors.push((timeouts, connector.clone()));
        connector
    }
}

/// hyper's pooled client over TCP (`http://` endpoints: moto, DynamoDB Local) and rustls
/// (`https://`), HTTP/1.1 only (hyper-rustls offers it by ALPN).
fn pooled_client(tls: rustls::ClientConfig, connect_timeout: Option<Duration>) -> HttpsClient {
    let mut tcp = TcpConnector::new();
    tcp.enforce_http(false);
    tcp.set_nodelay(true);
    tcp.set_connect_timeout(connect_timeout);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(tcp);
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .build(https)
}

#[derive(Debug)]
struct Connector {
    client: HttpsClient,
    read_timeout: Option<Duration>,
}

impl HttpConnector for Connector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let request = match request.try_into_http1x() {
            Ok(request) => request,
            Err(error) => {
                return HttpConnectorFuture::ready(Err(ConnectorError::user(error.into())));
            }
        };
        let sent = self.client.request(request);
        let read_timeout = self.read_timeout;
        HttpConnectorFuture::new(async move {
            // The read timeout runs from sending to the response's head, as the SDK's does.
            let answered = match read_timeout {
                Some(limit) => tokio::time::timeout(limit, sent)
                    .await
                    .map_err(|elapsed| ConnectorError::timeout(elapsed.into()))?,
                None => sent.await,
            };
            let response = answered.map_err(classify)?;
            HttpResponse::try_from(response.map(SdkBody::from_body_1_x))
                .map_err(|error| ConnectorError::other(error.into(), None))
        })
    }
}

/// What the SDK's retry strategy should make of a failed exchange: a connection that failed,
/// closed or reset is I/O (retried); hyper's own timeouts are timeouts (retried); a response
/// cut short is transient (retried); a request hyper refused to send is the caller's error.
fn classify(error: hyper_util::client::legacy::Error) -> ConnectorError {
    if error.is_connect() {
        return ConnectorError::io(error.into());
    }
    if let Some(hyper_error) = find_source::<hyper::Error>(&error) {
        if hyper_error.is_timeout() {
            return ConnectorError::timeout(error.into());
        }
        if hyper_error.is_user() {
            return ConnectorError::user(error.into());
        }
        if hyper_error.is_incomplete_message() {
            return ConnectorError::other(error.into(), Some(ErrorKind::TransientError));
        }
        if hyper_error.is_closed() || hyper_error.is_canceled() {
            return ConnectorError::io(error.into());
        }
    }
    if find_source::<std::io::Error>(&error).is_some() {
        return ConnectorError::io(error.into());
    }
    ConnectorError::other(error.into(), None)
}

/// The first error of type `E` in `error`'s chain, itself included.
fn find_source<'a, E: StdError + 'static>(error: &'a (dyn StdError + 'static)) -> Option<&'a E> {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(found) = error.downcast_ref::<E>() {
            return Some(found);
        }
        current = error.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use aws_smithy_types::body::SdkBody;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    const ANSWER: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-answer: yes\r\n\r\nhello";

    /// A TLS server on loopback for `localhost` with a self-signed certificate, answering each
    /// connection's first request with [`ANSWER`]; the certificate's PEM file.
    async fn tls_server() -> (u16, tempfile::NamedTempFile) {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let mut pem = tempfile::NamedTempFile::new().unwrap();
        pem.write_all(cert.cert.pem().as_bytes()).unwrap();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.key_pair.serialize_der().into());
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut request = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let _ = tls.write_all(ANSWER).await;
                    let _ = tls.flush().await;
                });
            }
        });
        (port, pem)
    }

    fn get(url: &str) -> HttpRequest {
        let request = http::Request::get(url).body(SdkBody::empty()).unwrap();
        HttpRequest::try_from(request).unwrap()
    }

    fn connector_trusting(
        pem: Option<&std::path::Path>,
        timeouts: Timeouts,
    ) -> SharedHttpConnector {
        let roots = crate::tls::trusted_roots(pem.map(|p| p.as_os_str()));
        PooledClient::new(Arc::new(crate::tls::config_with(roots))).connector(timeouts)
    }

    const NO_TIMEOUTS: Timeouts = Timeouts {
        connect: None,
        read: None,
    };

    #[tokio::test]
    async fn https_to_a_server_of_a_trusted_extra_root_is_answered() {
        let (port, pem) = tls_server().await;
        let connector = connector_trusting(Some(pem.path()), NO_TIMEOUTS);
        for _ in 0..2 {
            let response = connector
                .call(get(&format!("https://localhost:{port}/bucket/key")))
                .await
                .expect("an answer over TLS");
            assert_eq!(response.status().as_u16(), 200);
            assert_eq!(response.headers().get("x-answer"), Some("yes"));
            let body = aws_smithy_types::byte_stream::ByteStream::new(response.into_body())
                .collect()
                .await
                .unwrap()
                .into_bytes();
            assert_eq!(&body[..], b"hello");
        }
    }

    #[tokio::test]
    async fn an_untrusted_certificate_fails_the_request_as_a_connection_error() {
        let (port, _pem) = tls_server().await;
        let connector = connector_trusting(None, NO_TIMEOUTS);
        let error = connector
            .call(get(&format!("https://localhost:{port}/")))
            .await
            .expect_err("a self-signed certificate is not among Mozilla's roots");
        assert!(error.is_io(), "{error:?}");
        assert!(
            crate::with_causes(&error).contains("certificate"),
            "{}",
            crate::with_causes(&error)
        );
    }

    #[tokio::test]
    async fn a_refused_connection_is_io_and_a_silent_server_a_read_timeout() {
        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let error = connector_trusting(None, NO_TIMEOUTS)
            .call(get(&format!("http://127.0.0.1:{port}/")))
            .await
            .unwrap_err();
        assert!(error.is_io(), "{error:?}");

        // Accepts and never answers.
        let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = silent.local_addr().unwrap().port();
        let held = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((tcp, _)) = silent.accept().await {
                held.push(tcp);
            }
        });
        let timeouts = Timeouts {
            connect: Some(Duration::from_secs(5)),
            read: Some(Duration::from_millis(200)),
        };
        let started = std::time::Instant::now();
        let error = connector_trusting(None, timeouts)
            .call(get(&format!("http://127.0.0.1:{port}/")))
            .await
            .unwrap_err();
        assert!(error.is_timeout(), "{error:?}");
        assert!(started.elapsed() < Duration::from_secs(5));
        held.abort();
    }

    #[tokio::test]
    async fn a_connection_closed_before_the_answer_is_retryable() {
        // Reads the request, then hangs up without a word.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = tcp.read(&mut buf).await;
            }
        });
        let error = connector_trusting(None, NO_TIMEOUTS)
            .call(get(&format!("http://127.0.0.1:{port}/")))
            .await
            .unwrap_err();
        assert!(
            error.is_io() || error.as_other() == Some(ErrorKind::TransientError),
            "{error:?}"
        );
    }

    #[test]
    fn connectors_are_kept_per_set_of_timeouts() {
        let client = PooledClient::new(crate::tls::client_config());
        let short = Timeouts {
            connect: Some(Duration::from_secs(1)),
            read: None,
        };
        let _ = client.connector(NO_TIMEOUTS);
        let _ = client.connector(short);
        let _ = client.connector(NO_TIMEOUTS);
        let _ = client.connector(short);
        assert_eq!(client.connectors.lock().unwrap().len(), 2);
    }

    #[test]
    fn an_unreadable_or_empty_extra_file_leaves_the_compiled_in_roots() {
        let mozilla = webpki_roots::TLS_SERVER_ROOTS.len();
        assert!(mozilla > 100);
        assert_eq!(crate::tls::trusted_roots(None).len(), mozilla);
        let missing = std::path::Path::new("/nonexistent/eider-roots.pem");
        assert_eq!(
            crate::tls::trusted_roots(Some(missing.as_os_str())).len(),
            mozilla
        );
        let mut junk = tempfile::NamedTempFile::new().unwrap();
        junk.write_all(b"not a certificate\n").unwrap();
        assert_eq!(
            crate::tls::trusted_roots(Some(junk.path().as_os_str())).len(),
            mozilla
        );
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let mut pem = tempfile::NamedTempFile::new().unwrap();
        pem.write_all(cert.cert.pem().as_bytes()).unwrap();
        assert_eq!(
            crate::tls::trusted_roots(Some(pem.path().as_os_str())).len(),
            mozilla + 1
        );
    }
}
