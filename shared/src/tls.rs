//! Whom Eider's outgoing HTTPS trusts: the AWS clients (DynamoDB, S3, SES, SQS, API Gateway)
//! and reqwest (webhooks, forwarding to URL targets) share one rustls configuration on ring.
//!
//! The roots are Mozilla's, compiled in (`webpki-roots`), so starting a function parses no
//! certificate: loading the platform's store instead (rustls-native-certs: a bundle and a
//! directory of PEM files, base64-decoded) took about 2.5 ms of every cold start here, half of a
//! Lambda function's init beside its connections. An operator whose endpoint has a private CA
//! (a proxy, DynamoDB Local behind TLS) names its PEM file in `SSL_CERT_FILE`: its certificates
//! are trusted as well.

use std::sync::{Arc, LazyLock};

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// The client configuration, built once per process (the first HTTPS client asks for it).
pub fn client_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: LazyLock<Arc<rustls::ClientConfig>> = LazyLock::new(|| {
        Arc::new(config_with(trusted_roots(
            std::env::var_os("SSL_CERT_FILE").as_deref(),
        )))
    });
    CONFIG.clone()
}

/// A configuration trusting `roots`, with ring's cipher suites and TLS 1.2 and 1.3.
pub fn config_with(roots: RootCertStore) -> rustls::ClientConfig {
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("ring supports TLS 1.2 and 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// Mozilla's roots, plus the certificates of the PEM file `extra` if given. A file that cannot
/// be read or holds no certificate is logged and left out: the compiled-in roots still serve
/// every AWS endpoint.
pub fn trusted_roots(extra: Option<&std::ffi::OsStr>) -> RootCertStore {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let Some(path) = extra.filter(|p| !p.is_empty()) else {
        return roots;
    };
    let certs =
        CertificateDer::pem_file_iter(path).and_then(|certs| certs.collect::<Result<Vec<_>, _>>());
    match certs {
        Ok(certs) => {
            let (added, ignored) = roots.add_parsable_certificates(certs);
            if added == 0 || ignored > 0 {
                tracing::warn!(file = ?path, added, ignored, "SSL_CERT_FILE: certificates left out");
            }
        }
        Err(error) => tracing::warn!(file = ?path, %error, "SSL_CERT_FILE not read"),
    }
    roots
}
