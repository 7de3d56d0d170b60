//! `servicehub run`: flags (each with an environment variable) for the controller.

use super::StoreArgs;
use crate::controller::Settings;
use crate::controller::leader::LeaseConfig;
use crate::controller::operator::{self, Config};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

/// Arguments of `servicehub run`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// The store.
    #[command(flatten)]
    pub store: StoreArgs,
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "SERVICEHUB_WATCH_NAMESPACE")]
    pub namespace: Option<String>,
    /// Reconciles run at once, per kind.
    #[arg(long, env = "SERVICEHUB_CONCURRENCY", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
    pub concurrency: u16,
    /// Reconcile every object at least this often, to correct drift in the store (e.g. `10m`, `30s`).
    #[arg(long, env = "SERVICEHUB_RESYNC", default_value = "10m", value_parser = parse_duration)]
    pub resync: Duration,
    /// Address of the HTTP server (`/healthz`, `/readyz`, `/metrics`).
    #[arg(long, env = "SERVICEHUB_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    pub http_addr: SocketAddr,
    /// After SIGTERM, how long in-flight reconciles may take to finish before they are
    /// abandoned (keep it below the pod's `terminationGracePeriodSeconds`; the lease release
    /// after it is bounded by `--lease-renew-deadline`).
    #[arg(long, env = "SERVICEHUB_SHUTDOWN_TIMEOUT", default_value = "15s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,
    /// Leader election.
    #[command(flatten)]
    pub lease: LeaseArgs,
    /// Delivery of invitations and notifications (the leader delivers).
    #[command(flatten)]
    pub notify: super::notify::NotifyArgs,
    /// Serve the web console (sign-in, the invitation page) on `--console-addr`, on every
    /// replica; it needs a sign-in method (OpenID Connect, or `--console-email-signin`).
    #[arg(long, env = "SERVICEHUB_CONSOLE", default_value_t = false, action = clap::ArgAction::Set)]
    pub console: bool,
    /// Address of the console (its own port: never the metrics port).
    #[arg(long, env = "SERVICEHUB_CONSOLE_ADDR", default_value = "0.0.0.0:8090")]
    pub console_addr: SocketAddr,
    /// The console's settings.
    #[command(flatten)]
    pub console_args: super::console::ConsoleArgs,
}

/// Leader election flags.
#[derive(clap::Args, Debug)]
pub struct LeaseArgs {
    /// Elect a leader with a Lease so that several replicas can run; `false` for a single replica.
    #[arg(long, env = "SERVICEHUB_LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,
    /// Name of the Lease.
    #[arg(long, env = "SERVICEHUB_LEASE_NAME", default_value = "servicehub-operator")]
    pub lease_name: String,
    /// Namespace of the Lease (default: the pod's namespace, from `POD_NAMESPACE`).
    #[arg(long, env = "SERVICEHUB_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// How long a lease is valid without renewal; a standby takes over within it.
    #[arg(long, env = "SERVICEHUB_LEASE_DURATION", default_value = "15s", value_parser = parse_duration)]
    pub lease_duration: Duration,
    /// How long the leader keeps failing to renew before it stops reconciling.
    #[arg(long = "lease-renew-deadline", env = "SERVICEHUB_LEASE_RENEW_DEADLINE", default_value = "10s", value_parser = parse_duration)]
    pub renew_deadline: Duration,
    /// How often to try to acquire or renew the lease.
    #[arg(long = "lease-retry-period", env = "SERVICEHUB_LEASE_RETRY_PERIOD", default_value = "2s", value_parser = parse_duration)]
    pub retry_period: Duration,
    /// This replica's identity (default: `POD_NAME`, else the host name and a random suffix).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
}

/// A duration such as `10m`, `30s`, `1h30m`, `1500ms` or `14d` (a day is 24 hours).
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let d: jiff::SignedDuration = match s.parse() {
        Ok(d) => d,
        Err(e) => s
            .parse::<jiff::Span>()
            .and_then(|span| span.to_duration(jiff::SpanRelativeTo::days_are_24_hours()))
            .map_err(|_| format!("{s:?} is not a duration like 30s, 10m or 14d: {e}"))?,
    };
    if d.is_negative() || d.is_zero() {
        return Err(format!("{s:?}: the duration must be positive"));
    }
    d.try_into().map_err(|e| format!("{s:?}: {e}"))
}

impl RunArgs {
    /// Resolve the flags into the operator's configuration.
    pub fn into_config(self) -> Result<Config, String> {
        let Self {
            store,
            namespace,
            concurrency,
            resync,
            http_addr,
            shutdown_timeout,
            lease,
            notify,
            console,
            console_addr,
            console_args,
        } = self;
        let console = match console {
            true => {
                let mut setup = console_args.into_setup(false)?;
                setup.config.invitation_reissues = notify.invitation_reissues;
                Some((console_addr, setup))
            }
            false => None,
        };
        let mut notify = notify.into_config()?;
        if let Some(n) = notify.as_mut() {
            n.actor = crate::domain::actor::Actor::operator(&crate::telemetry::host());
        }
        if let (Some(n), Some((_, setup))) = (notify.as_mut(), console.as_ref()) {
            n.signin_link_base = setup.config.base_url.join("/signin/email").map_err(|e| e.to_string())?;
        }
        let LeaseArgs {
            leader_elect,
            lease_name,
            lease_namespace,
            lease_duration,
            renew_deadline,
            retry_period,
            identity,
        } = lease;
        let identity = identity.unwrap_or_else(|| {
            let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "servicehub".into());
            format!("{host}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
        });
        if leader_elect && renew_deadline >= lease_duration {
            return Err("--lease-renew-deadline must be shorter than --lease-duration".into());
        }
        if leader_elect && retry_period >= renew_deadline {
            return Err("--lease-retry-period must be shorter than --lease-renew-deadline".into());
        }
        let lease = leader_elect.then(|| LeaseConfig {
            name: lease_name,
            namespace: lease_namespace
                .or_else(|| std::env::var("POD_NAMESPACE").ok())
                .or_else(|| namespace.clone())
                .unwrap_or_else(|| "default".into()),
            identity: identity.clone(),
            lease_duration,
            renew_deadline,
            retry_period,
        });
        let actor = crate::domain::actor::Actor::operator(&crate::telemetry::host());
        let settings = Settings { namespace, concurrency, resync, actor, identity };
        Ok(Config { store_url: store.url, settings, lease, http_addr, notify, shutdown_timeout, console })
    }
}

/// Run the controller until a signal.
pub async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let config = args.into_config().map_err(anyhow::Error::msg)?;
    operator::run(config).await?;
    Ok(ExitCode::SUCCESS)
}
