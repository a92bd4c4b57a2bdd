//! Helpers for the workspace-level tests: backends to run against (embedded and moto),
//! an in-process app built from every router, and a client for the updates stream.

pub mod app;
pub mod backends;
pub mod clock;
pub mod counting;
pub mod faults;
pub mod lmtp_client;
pub mod moto;
pub mod sinks;
/// The spec's HTTP examples and helpers, shared with the local server's end-to-end tests.
#[path = "../../functions/local/tests/common/spec.rs"]
pub mod spec;
pub mod sse;
pub mod template;
pub mod tools;
pub mod totp;

/// Runs each named `async fn` twice, as `embedded::<name>` and `moto::<name>`: with a fresh
/// [`app::TestApp`] on each backend, or with `backend:` first, a fresh [`backends::Backend`].
#[macro_export]
macro_rules! on_both_backends {
    (backend: $($name:ident),* $(,)?) => {
        $crate::on_both_backends!(@each $crate::backends::embedded, $crate::backends::moto; $($name),*);
    };
    (@each $embedded:path, $moto:path; $($name:ident),*) => {
        mod embedded {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($embedded().await).await })*
        }
        mod moto {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($moto().await).await })*
        }
    };
    ($($name:ident),* $(,)?) => {
        $crate::on_both_backends!(
            @each $crate::app::TestApp::embedded, $crate::app::TestApp::moto; $($name),*
        );
    };
}
