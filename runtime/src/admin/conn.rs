//! The API's connections: hyper's HTTP/1.1 with a timer, so no client holds a connection by
//! being slow, and a bound on how many are open, so clients cannot take the file descriptors
//! that RocksDB and librdkafka need.
//!
//! - A request's headers must arrive within [`Limits::header_timeout`] of the connection
//!   becoming ready for them: a client that sends half a request, or opens a connection and
//!   sends nothing, is closed then. hyper starts the same clock when a kept-alive connection
//!   goes idle, so it is the idle timeout too.
//! - Past [`Limits::max_connections`] open connections a new one is closed at once (counted in
//!   `weir_http_connections_refused_total`), while the ones open are served.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// How long and how many.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_timeout: Duration,
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { header_timeout: Duration::from_secs(10), max_connections: 2048 }
    }
}

/// Serves `app` on `listener` until the future is dropped.
pub async fn serve(listener: TcpListener, app: Router, limits: Limits, refused: impl Fn() + Send + 'static) {
    let open = Arc::new(Semaphore::new(limits.max_connections));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout).keep_alive(true);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors (EMFILE) or a connection reset before it was taken: wait a
                // moment rather than spin, and go on.
                tracing::warn!("cannot accept a connection: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            refused();
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let connection = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!("connection closed: {e}");
            }
            drop(permit);
        });
    }
}
