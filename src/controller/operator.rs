//! The process around the controllers: HTTP server, store, leader election, signals.
//!
//! Order of events: the HTTP server starts first (so probes answer while the store is still
//! unreachable), then the store is opened (retried until it answers), then the replica
//! campaigns for the lease; while it leads, the controllers run. On SIGTERM/SIGINT the
//! controllers stop taking work and finish what is in flight, and only then is the lease
//! released, so a standby never overlaps with the old leader's last reconciles.

use super::leader::{self, LeaseConfig};
use super::metrics::Metrics;
use super::{Settings, run_controllers};
use crate::http::{self, Health};
use crate::store::{self, StoreError};
use kube::Client;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Everything `servicehub run` needs, resolved from flags and environment.
#[derive(Clone, Debug)]
pub struct Config {
    /// Store URL.
    pub store_url: String,
    /// Controller settings.
    pub settings: Settings,
    /// Leader election, or `None` to lead unconditionally (single replica).
    pub lease: Option<LeaseConfig>,
    /// Where the HTTP server listens.
    pub http_addr: SocketAddr,
    /// Outbox delivery (invitations, Lockbox notifications), or `None` to leave messages queued.
    pub notify: Option<crate::notify::Config>,
    /// After a signal, how long in-flight work may take before it is abandoned.
    pub shutdown_timeout: Duration,
    /// The web console's address and settings, when it is served.
    pub console: Option<(SocketAddr, crate::cli::console::ConsoleSetup)>,
}

/// Wait for SIGTERM or SIGINT, then cancel `token`.
async fn signals(token: CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
            tracing::error!("cannot install signal handlers");
            return;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    token.cancel();
}

/// Open the store, retrying while it is unreachable; `None` if shut down meanwhile.
async fn open_store(url: &str, shutdown: &CancellationToken) -> anyhow::Result<Option<Arc<dyn store::Store>>> {
    let mut failures = 0;
    loop {
        match store::open(url).await {
            Ok(s) => return Ok(Some(s)),
            Err(e @ (StoreError::Unavailable(_) | StoreError::Database(_))) => {
                failures += 1;
                let delay = super::reconcile::backoff(failures).min(Duration::from_secs(30));
                tracing::warn!(error = %e, retry_in = ?delay, "store unreachable; retrying");
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(None),
                    _ = tokio::time::sleep(delay) => {}
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Why no client could be built, once and in words: kube's error repeats its cause
/// through every layer of its chain, and quotes the kubeconfig path twice.
fn no_cluster_config(e: &(dyn std::error::Error + 'static)) -> String {
    let kubeconfig = std::env::var_os("KUBECONFIG")
        .filter(|v| !v.is_empty())
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".kube").join("config")));
    let in_cluster = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some();
    match (in_cluster, kubeconfig) {
        (false, Some(path)) if !path.exists() => format!(
            "no Kubernetes configuration: not running in a pod (KUBERNETES_SERVICE_HOST is unset) and no kubeconfig at {} \
             (set KUBECONFIG to one)",
            path.display()
        ),
        _ => {
            // The innermost cause says it best.
            let mut cause: &(dyn std::error::Error + 'static) = e;
            while let Some(next) = cause.source() {
                cause = next;
            }
            format!("cannot configure the Kubernetes client: {e}; cause: {cause}")
        }
    }
}

/// Run the operator until a signal. Every log line of the run carries the API server's
/// address (`api_server`), so "client error (Connect)" says which server did not answer.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let kube_config = kube::Config::infer().await.map_err(|e| anyhow::anyhow!(no_cluster_config(&e)))?;
    let span = tracing::info_span!("operator", api_server = %kube_config.cluster_url);
    run_with(config, kube_config).instrument(span).await
}

async fn run_with(config: Config, kube_config: kube::Config) -> anyhow::Result<()> {
    let Config { store_url, settings, lease, http_addr, notify, shutdown_timeout, console } = config;
    let client = Client::try_from(kube_config)?;
    let metrics = Arc::new(Metrics::default());
    let shutdown = CancellationToken::new();
    tokio::spawn(signals(shutdown.clone()));

    let synced = Arc::new(AtomicBool::new(false));
    let health = Arc::new(Health {
        store: Default::default(),
        client: client.clone(),
        synced: synced.clone(),
        metrics: metrics.clone(),
    });
    let listener = tokio::net::TcpListener::bind(http_addr).await.map_err(|e| {
        anyhow::anyhow!("cannot listen on {http_addr} (choose another with --http-addr or SERVICEHUB_HTTP_ADDR): {e}")
    })?;
    tracing::info!(addr = %listener.local_addr()?, "serving /healthz, /readyz and /metrics");
    let http_stop = CancellationToken::new();
    let server = tokio::spawn(http::serve(listener, health.clone(), http_stop.clone()).in_current_span());

    let Some(store) = open_store(&store_url, &shutdown).await? else {
        http_stop.cancel();
        let _ = server.await;
        return Ok(());
    };
    tracing::info!(store = %store.url(), "store open");
    let _ = health.store.set(store.clone());
    let notifier = match notify {
        Some(cfg) => {
            tracing::info!(transport = ?cfg.transport, "delivering the outbox");
            Some(Arc::new(crate::notify::Notifier::new(store.clone(), cfg).map_err(anyhow::Error::msg)?))
        }
        None => None,
    };
    let delivery = super::delivery::Delivery::new(notifier);
    // The console runs on every replica (the store is shared); a sign-in link queued on a
    // standby is delivered by the leader's worker within its poll interval.
    let console_server = match console {
        Some((addr, setup)) => {
            let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
                anyhow::anyhow!(
                    "cannot listen on {addr} (choose another with --console-addr or SERVICEHUB_CONSOLE_ADDR): {e}"
                )
            })?;
            let task = crate::cli::console::start(
                setup,
                listener,
                store.clone(),
                crate::web::Clock::system(),
                metrics.clone(),
                Some(delivery.wake.clone()),
                http_stop.clone(),
            );
            Some(tokio::spawn(
                async move {
                    if let Err(e) = task.await {
                        tracing::error!(error = %e, "the console stopped");
                    }
                }
                .in_current_span(),
            ))
        }
        None => None,
    };

    // The elector has its own stop signal: it releases the lease only after the
    // controllers have finished their in-flight work.
    let (leading_tx, mut leading) = watch::channel(lease.is_none());
    let elector_stop = CancellationToken::new();
    // Without election the sender is held here, so "leading" never ends.
    let mut _unelected = None;
    let elector = match lease {
        Some(cfg) => {
            let api = kube::Api::namespaced(client.clone(), &cfg.namespace);
            Some(tokio::spawn(leader::run(api, cfg, leading_tx, elector_stop.clone()).in_current_span()))
        }
        None => {
            _unelected = Some(leading_tx);
            None
        }
    };

    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            r = leading.wait_for(|l| *l) => if r.is_err() { break },
        }
        metrics.leader.set(1);
        tracing::info!("leading: starting the controllers");
        let controllers = run_controllers(
            client.clone(),
            store.clone(),
            metrics.clone(),
            settings.clone(),
            synced.clone(),
            delivery.clone(),
            shutdown.clone(),
        );
        let mut lost = leading.clone();
        // After a signal the controllers finish their in-flight reconciles, but not forever:
        // with the API server or the store unreachable a reconcile may wait on a request far
        // longer than the pod's grace period. Past the deadline its work is dropped (the
        // store writes are transactions; the next leader redoes what was not finished).
        let deadline = async {
            shutdown.cancelled().await;
            tokio::time::sleep(shutdown_timeout).await;
        };
        tokio::select! {
            _ = controllers => {
                tracing::info!("controllers stopped");
                break;
            }
            _ = deadline => {
                tracing::warn!(timeout = ?shutdown_timeout, "in-flight reconciles did not finish in time after the signal: abandoning them");
                break;
            }
            _ = lost.wait_for(|l| !*l) => {
                // Dropping the controllers aborts their reconciles: another replica leads now.
                tracing::warn!("lost the lease: controllers stopped");
                metrics.leader.set(0);
            }
        }
    }
    metrics.leader.set(0);
    elector_stop.cancel();
    if let Some(e) = elector {
        // The elector releases the lease within its renew deadline; this bound is a backstop.
        if tokio::time::timeout(shutdown_timeout, e).await.is_err() {
            tracing::warn!("the lease was not released in time; it expires by itself");
        }
    }
    tracing::debug!("elector stopped; stopping the HTTP server");
    http_stop.cancel();
    // Open keep-alive connections (a prober's) must not hold the exit up.
    let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
    if let Some(c) = console_server {
        let _ = tokio::time::timeout(Duration::from_secs(2), c).await;
    }
    tracing::info!("stopped");
    Ok(())
}
