//! The HTTP front end (hyper): routing, JSON in and out, status codes and long-poll bookkeeping,
//! on top of `queen-engine`. No SQL lives here.
//!
//! [`serve`] accepts connections (HTTP/1.1 with keep-alive and a header-read timeout) until the
//! shutdown future completes, then stops accepting, lets in-flight requests finish (long polls
//! included, bounded by `drain_timeout`) and returns.
//!
//! A client that goes away while its request is being served (typically a long-poll pop) has its
//! request future dropped by hyper: the engine's pop is cancel-safe and leases nothing to it.

mod app;
pub mod auth;
mod body;
mod console;
pub mod error;
mod field;
#[cfg(test)]
mod fuzz;
mod json_out;
pub mod query;
mod rendered;
mod routes;
pub mod stats;
pub mod time;
mod views;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

pub use app::{App, HttpConfig};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
pub use routes::messages::{SUBSCRIPTION_MODES, parse_subscription_mode};
use tokio::net::TcpListener;

/// Serves `app` on `listener` until `shutdown` completes; then drains for at most
/// `drain_timeout`.
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    shutdown: impl Future<Output = ()>,
    drain_timeout: Duration,
) -> std::io::Result<()> {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let header_timeout = app.config.header_read_timeout;
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = service_fn(move |req| {
            let app = app.clone();
            async move { Ok::<_, std::convert::Infallible>(app.handle(req).await) }
        });
        let conn = http1::Builder::new()
            .keep_alive(true)
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after {drain_timeout:?}; closing them");
    }
    Ok(())
}
