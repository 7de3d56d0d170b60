//! The operator's HTTP server (axum): `/healthz` (the process is alive), `/readyz` (the
//! store and the API server answer, and a leader's caches are synced) and `/metrics`
//! (Prometheus text). Served by every replica, leader or standby. People never reach this
//! port: invitations are accepted on the console's (see [`crate::web`]).

use crate::controller::metrics::Metrics;
use crate::store::Store;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// What the endpoints report on.
pub struct Health {
    /// The store, once opened.
    pub store: OnceLock<Arc<dyn Store>>,
    /// The API client.
    pub client: kube::Client,
    /// Whether the controllers' caches hold their first full list.
    pub synced: Arc<AtomicBool>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
}

/// How long a readiness check waits for the store or the API server.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

impl Health {
    /// Why the replica is not ready, or `None` when it is.
    pub async fn not_ready(&self) -> Option<String> {
        let Some(store) = self.store.get() else { return Some("the store is not open yet".into()) };
        match tokio::time::timeout(CHECK_TIMEOUT, store.ping()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Some(format!("store: {e}")),
            Err(_) => return Some("store: no answer in time".into()),
        }
        match tokio::time::timeout(CHECK_TIMEOUT, self.client.apiserver_version()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Some(format!("API server: {e}")),
            Err(_) => return Some("API server: no answer in time".into()),
        }
        // A leader (the `leader` gauge) must have its caches synced to be ready.
        if self.metrics.leader.get() == 1 && !self.synced.load(Ordering::SeqCst) {
            return Some("caches are not synced yet".into());
        }
        None
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(h): State<Arc<Health>>) -> impl IntoResponse {
    match h.not_ready().await {
        None => (StatusCode::OK, "ok\n".to_owned()),
        Some(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n")),
    }
}

async fn metrics(State(h): State<Arc<Health>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], h.metrics.render())
}

/// The router.
pub fn router(health: Arc<Health>) -> axum::Router {
    axum::Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(health)
}

/// Serve on `listener` until `shutdown`.
pub async fn serve(listener: tokio::net::TcpListener, health: Arc<Health>, shutdown: CancellationToken) {
    let app = router(health);
    if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await {
        tracing::error!(error = %e, "HTTP server failed");
    }
}
