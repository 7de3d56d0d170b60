//! The operator's HTTP server (axum): `/healthz` (the process is alive), `/readyz` (the
//! store and the API server answer, and a leader's caches are synced) and `/metrics`
//! (Prometheus text). Served by every replica, leader or standby.

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

/// `POST /v1/invitations/accept` with `{"token", "account", "accountType"}`. The token is
/// read from the body only (never from the URL, so it stays out of access logs) and never
/// echoed: errors name the field and the rule, not the value.
async fn accept(State(h): State<Arc<Health>>, body: axum::body::Bytes) -> axum::response::Response {
    use crate::notify::accept::{self, Error};
    use crate::store::AcceptRefusal;
    let reply = |code: StatusCode, body: serde_json::Value| (code, axum::Json(body)).into_response();
    let req: accept::Request = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            // The position and class only: serde's message may quote the input.
            let msg = format!(
                "the body must be JSON with token, account and accountType ({:?} error at column {})",
                e.classify(),
                e.column()
            );
            return reply(StatusCode::BAD_REQUEST, serde_json::json!({ "reason": "BadRequest", "message": msg }));
        }
    };
    let Some(store) = h.store.get() else {
        let body = serde_json::json!({ "reason": "Unavailable", "message": "the store is not open yet" });
        return reply(StatusCode::SERVICE_UNAVAILABLE, body);
    };
    match accept::accept(store.as_ref(), &req, jiff::Timestamp::now().as_second()).await {
        Ok(a) => {
            // The leader's delivery worker finds the acceptance and refreshes the Membership,
            // whichever replica served this request.
            h.metrics.notified("invitation", "accepted", 1);
            let mut body = serde_json::to_value(&a).unwrap_or_default();
            body["state"] = "Accepted".into();
            reply(StatusCode::OK, body)
        }
        Err(Error::Invalid(e)) => {
            let body = serde_json::json!({ "reason": "Invalid", "field": e.field, "message": e.to_string() });
            reply(StatusCode::BAD_REQUEST, body)
        }
        Err(Error::Refused(r)) => {
            h.metrics.notified("invitation", "refused", 1);
            let code = match r {
                AcceptRefusal::UnknownToken => StatusCode::NOT_FOUND,
                AcceptRefusal::Used(_) | AcceptRefusal::Superseded(_) => StatusCode::CONFLICT,
                AcceptRefusal::Expired(_) | AcceptRefusal::Revoked => StatusCode::GONE,
                AcceptRefusal::PersonalNotAllowed { .. } | AcceptRefusal::PersonalNotAllowedAtCustomer { .. } => {
                    StatusCode::FORBIDDEN
                }
            };
            reply(code, serde_json::json!({ "reason": r.reason(), "message": r.to_string() }))
        }
        Err(Error::Store(e)) => {
            tracing::warn!(error = %e, "invitation acceptance failed");
            let body = serde_json::json!({ "reason": "StoreError", "message": e.to_string() });
            reply(StatusCode::SERVICE_UNAVAILABLE, body)
        }
    }
}

/// The router.
pub fn router(health: Arc<Health>) -> axum::Router {
    axum::Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/invitations/accept", axum::routing::post(accept))
        .with_state(health)
}

/// Serve on `listener` until `shutdown`.
pub async fn serve(listener: tokio::net::TcpListener, health: Arc<Health>, shutdown: CancellationToken) {
    let app = router(health);
    if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await {
        tracing::error!(error = %e, "HTTP server failed");
    }
}
