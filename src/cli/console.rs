//! The console's flags (shared by `run` and `serve`), `servicehub serve`, and
//! `servicehub session list|revoke`.

use super::{OutputFormat, StoreArgs, open_existing_store, open_store};
use crate::auth::claims::{AccountTypeRule, ClaimRules, DEFAULT_CONSUMER_DOMAINS};
use crate::auth::oidc;
use crate::auth::session::Lifetimes;
use crate::web::{self, RateLimits};
use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// The console: sign-in, sessions, the invitation page.
#[derive(clap::Args, Debug, Clone)]
#[command(next_help_heading = "Console")]
pub struct ConsoleArgs {
    /// The console's public base URL (links in messages, the OpenID Connect callback; cookies
    /// are `Secure` when it is https).
    #[arg(long, env = "SERVICEHUB_CONSOLE_BASE_URL", default_value = "http://localhost:8080")]
    pub console_base_url: url::Url,
    /// Offer sign-in by an emailed link (sent through the outbox and its transport). On by
    /// default for `serve`; off by default for `run`.
    #[arg(long, env = "SERVICEHUB_CONSOLE_EMAIL_SIGNIN", action = clap::ArgAction::Set)]
    pub console_email_signin: Option<bool>,
    /// Mail domains whose addresses sign in by email link as personal accounts (comma
    /// separated; default: Microsoft's consumer domains and the large consumer mail providers).
    #[arg(long, env = "SERVICEHUB_CONSUMER_DOMAINS", value_delimiter = ',')]
    pub consumer_domains: Vec<String>,
    /// A session not used for this long ends.
    #[arg(long, env = "SERVICEHUB_SESSION_IDLE", default_value = "1h", value_parser = super::run::parse_duration)]
    pub session_idle: Duration,
    /// A session ends this long after sign-in, used or not.
    #[arg(long, env = "SERVICEHUB_SESSION_LIFETIME", default_value = "12h", value_parser = super::run::parse_duration)]
    pub session_lifetime: Duration,
    /// Requests per client address per window to each unauthenticated endpoint.
    #[arg(long, env = "SERVICEHUB_CONSOLE_RATE_LIMIT", default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..))]
    pub console_rate_limit: u32,
    /// Sign-in links per email address per window.
    #[arg(long, env = "SERVICEHUB_CONSOLE_EMAIL_RATE_LIMIT", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub console_email_rate_limit: u32,
    /// The rate limits' window.
    #[arg(long, env = "SERVICEHUB_CONSOLE_RATE_WINDOW", default_value = "10m", value_parser = super::run::parse_duration)]
    pub console_rate_window: Duration,
    /// OpenID Connect issuer URL (Microsoft Entra ID: `https://login.microsoftonline.com/<tenant>/v2.0`).
    #[arg(long, env = "SERVICEHUB_OIDC_ISSUER")]
    pub oidc_issuer: Option<url::Url>,
    /// OpenID Connect client id.
    #[arg(long, env = "SERVICEHUB_OIDC_CLIENT_ID")]
    pub oidc_client_id: Option<String>,
    /// OpenID Connect client secret: environment only (`SERVICEHUB_OIDC_CLIENT_SECRET`, from a Secret).
    #[arg(skip = std::env::var("SERVICEHUB_OIDC_CLIENT_SECRET").ok())]
    pub oidc_client_secret: Option<String>,
    /// The provider's name on the sign-in button.
    #[arg(long, env = "SERVICEHUB_OIDC_NAME", default_value = "Microsoft Entra ID")]
    pub oidc_name: String,
    /// Claims tried in order for the person's email address.
    #[arg(
        long,
        env = "SERVICEHUB_OIDC_EMAIL_CLAIMS",
        value_delimiter = ',',
        default_value = "email,preferred_username,upn"
    )]
    pub oidc_email_claims: Vec<String>,
    /// For providers other than Entra ID: `CLAIM=VALUE` meaning a personal account (default:
    /// Entra's `tid`, where the consumer tenant means personal).
    #[arg(long, env = "SERVICEHUB_OIDC_PERSONAL_CLAIM")]
    pub oidc_personal_claim: Option<String>,
    /// The claim holding group object ids.
    #[arg(long, env = "SERVICEHUB_OIDC_GROUPS_CLAIM", default_value = "groups")]
    pub oidc_groups_claim: String,
    /// Scopes asked for besides `openid`.
    #[arg(long, env = "SERVICEHUB_OIDC_SCOPES", value_delimiter = ',', default_value = "email,profile")]
    pub oidc_scopes: Vec<String>,
    /// Mail domains of Microsoft engineers, who may open Customer Lockbox requests (comma
    /// separated). Anyone else needs a Microsoft role (CSAM, Incident Manager) for the customer.
    #[arg(
        long = "lockbox-requester-domain",
        env = "SERVICEHUB_LOCKBOX_REQUESTER_DOMAINS",
        value_delimiter = ',',
        default_value = "microsoft.com"
    )]
    pub lockbox_requester_domains: Vec<String>,
}

/// What the console needs to start.
#[derive(Clone, Debug)]
pub struct ConsoleSetup {
    /// The console's settings.
    pub config: web::Config,
    /// The provider, to discover at start.
    pub oidc: Option<oidc::Config>,
}

impl ConsoleArgs {
    /// Resolve the flags; `email_default` is the command's default for email-link sign-in.
    /// Errors name the flag.
    pub fn into_setup(self, email_default: bool) -> Result<ConsoleSetup, String> {
        let Self {
            console_base_url,
            console_email_signin,
            consumer_domains,
            session_idle,
            session_lifetime,
            console_rate_limit,
            console_email_rate_limit,
            console_rate_window,
            oidc_issuer,
            oidc_client_id,
            oidc_client_secret,
            oidc_name,
            oidc_email_claims,
            oidc_personal_claim,
            oidc_groups_claim,
            oidc_scopes,
            lockbox_requester_domains,
        } = self;
        if !matches!(console_base_url.scheme(), "http" | "https") || console_base_url.host().is_none() {
            return Err(format!("--console-base-url {console_base_url}: must be an http or https URL with a host"));
        }
        if session_idle > session_lifetime {
            return Err("--session-idle must not be longer than --session-lifetime".into());
        }
        let oidc = match (oidc_issuer, oidc_client_id) {
            (None, None) => None,
            (Some(issuer), Some(client_id)) => {
                let client_secret = oidc_client_secret.filter(|s| !s.is_empty()).ok_or(
                    "SERVICEHUB_OIDC_CLIENT_SECRET (the client secret, from the environment or a Secret) is required \
                     with --oidc-issuer",
                )?;
                let account_type = match oidc_personal_claim {
                    None => AccountTypeRule::EntraTenant,
                    Some(rule) => {
                        let (name, personal) = rule.split_once('=').ok_or_else(|| {
                            format!("--oidc-personal-claim {rule:?}: must be CLAIM=VALUE, e.g. account_kind=personal")
                        })?;
                        AccountTypeRule::Claim { name: name.trim().to_owned(), personal: personal.trim().to_owned() }
                    }
                };
                let redirect =
                    console_base_url.join("/signin/oidc/callback").map_err(|e| format!("--console-base-url: {e}"))?;
                Some(oidc::Config {
                    issuer,
                    client_id,
                    client_secret,
                    redirect,
                    scopes: oidc_scopes.into_iter().filter(|s| !s.trim().is_empty() && s != "openid").collect(),
                    rules: ClaimRules {
                        email_claims: oidc_email_claims,
                        account_type,
                        groups_claim: oidc_groups_claim,
                    },
                })
            }
            (Some(_), None) => return Err("--oidc-client-id is required with --oidc-issuer".into()),
            (None, Some(_)) => return Err("--oidc-issuer is required with --oidc-client-id".into()),
        };
        let consumer_domains = if consumer_domains.is_empty() {
            DEFAULT_CONSUMER_DOMAINS.iter().map(|d| (*d).to_owned()).collect()
        } else {
            consumer_domains.into_iter().map(|d| d.trim().to_ascii_lowercase()).filter(|d| !d.is_empty()).collect()
        };
        let config = web::Config {
            base_url: console_base_url,
            email_link: console_email_signin.unwrap_or(email_default),
            consumer_domains,
            lifetimes: Lifetimes { idle: session_idle, absolute: session_lifetime },
            limits: RateLimits {
                per_address: console_rate_limit,
                per_email: console_email_rate_limit,
                window: console_rate_window,
            },
            oidc_name,
            requesters: crate::lockbox::Requesters::from_domains(&lockbox_requester_domains),
            // The delivery settings replace it where the command has them (serve, run).
            invitation_reissues: 2,
        };
        if !config.email_link && oidc.is_none() {
            return Err(web::StartError::NoSignIn.to_string());
        }
        Ok(ConsoleSetup { config, oidc })
    }
}

/// Start the console on `listener` over `store` until `shutdown`. The OpenID provider is
/// discovered first, retried with backoff while it does not answer; until then the port is
/// bound but not served (the readiness probe is on the operator's port, not this one).
pub async fn start(
    setup: ConsoleSetup,
    listener: tokio::net::TcpListener,
    store: Arc<dyn crate::store::Store>,
    clock: web::Clock,
    metrics: Arc<crate::controller::metrics::Metrics>,
    wake: Option<Arc<tokio::sync::Notify>>,
    shutdown: tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    let provider = match setup.oidc {
        None => None,
        Some(cfg) => {
            let mut delay = Duration::from_secs(1);
            loop {
                match oidc::Provider::discover(cfg.clone()).await {
                    Ok(p) => break Some(p),
                    Err(e) => {
                        tracing::warn!(error = %e, retry_in = ?delay, "OpenID provider not reachable; retrying");
                        tokio::select! {
                            _ = shutdown.cancelled() => return Ok(()),
                            _ = tokio::time::sleep(delay) => {}
                        }
                        delay = (delay * 2).min(Duration::from_secs(30));
                    }
                }
            }
        }
    };
    let console = Arc::new(web::Console::new(store, setup.config, provider, clock, metrics, wake)?);
    tracing::info!(addr = %listener.local_addr()?, base = %console.config.base_url, "serving the console");
    web::serve(listener, console, shutdown).await;
    Ok(())
}

/// Arguments of `servicehub serve`.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// The store.
    #[command(flatten)]
    pub store: StoreArgs,
    /// Address the console listens on.
    #[arg(long, env = "SERVICEHUB_SERVE_ADDR", default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,
    /// The console.
    #[command(flatten)]
    pub console: ConsoleArgs,
    /// Delivery of sign-in links, invitations and notifications.
    #[command(flatten)]
    pub notify: super::notify::NotifyArgs,
}

/// `servicehub serve`: the console over the local store, with the outbox delivered (so an
/// emailed sign-in link lands in `servicehub-outbox/` with the default file transport).
pub async fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let ServeArgs { store, http_addr, console, notify } = args;
    let setup = console.into_setup(true).map_err(super::Usage)?;
    let signin_link = setup.config.base_url.join("/signin/email")?;
    let reissues = notify.invitation_reissues;
    let mut setup = setup;
    setup.config.invitation_reissues = reissues;
    let notify = notify.into_config().map_err(super::Usage)?;
    let clock = match std::env::var(super::TEST_CLOCK_ENV) {
        Ok(v) if !v.is_empty() => web::Clock::offset(super::write_clock()?),
        _ => web::Clock::system(),
    };
    let db = open_store(&store).await?;
    let listener = tokio::net::TcpListener::bind(http_addr).await.map_err(|e| {
        anyhow::anyhow!("cannot listen on {http_addr} (choose another with --http-addr or SERVICEHUB_SERVE_ADDR): {e}")
    })?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let wake = Arc::new(tokio::sync::Notify::new());
    let notifier = match notify {
        Some(cfg) => {
            let cfg = crate::notify::Config { signin_link_base: signin_link, ..cfg };
            Some(crate::notify::Notifier::new(db.clone(), cfg).map_err(anyhow::Error::msg)?)
        }
        None => {
            eprintln!("warning: --notify-transport none: sign-in links and invitations stay queued in the store");
            None
        }
    };
    // Delivery runs in this task (a drain in flight at a signal is dropped: its attempt was
    // claimed first, so the message is retried, under the same id, at the next start).
    let delivery = {
        let (clock, wake, stop) = (clock.clone(), wake.clone(), shutdown.clone());
        async move {
            match notifier {
                Some(n) => deliver(n, clock, wake, stop).await,
                None => std::future::pending().await,
            }
        }
    };
    let metrics = Arc::new(crate::controller::metrics::Metrics::default());
    eprintln!("serving the console at {} (store {}); Ctrl-C stops", setup.config.base_url, db.url());
    let server = tokio::spawn(start(setup, listener, db, clock, metrics, Some(wake), shutdown.clone()));
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminated() => {}
        _ = delivery => {}
    }
    shutdown.cancel();
    match tokio::time::timeout(Duration::from_secs(5), server).await {
        Ok(Ok(Err(e))) => Err(e),
        _ => Ok(ExitCode::SUCCESS),
    }
}

/// SIGTERM (as `kill` sends); never on other platforms.
async fn terminated() {
    #[cfg(unix)]
    if let Ok(mut t) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        t.recv().await;
        return;
    }
    std::future::pending::<()>().await
}

/// Deliver the outbox until `stop`: at each deadline, at least every 5 s, and at once when a
/// sign-in link is queued.
async fn deliver(
    notifier: crate::notify::Notifier,
    clock: web::Clock,
    wake: Arc<tokio::sync::Notify>,
    stop: tokio_util::sync::CancellationToken,
) {
    loop {
        let now = clock.now();
        let next = match notifier.drain(now).await {
            Ok(report) => {
                if report.sent + report.failed > 0 {
                    tracing::info!(sent = report.sent, failed = report.failed, "outbox delivered");
                }
                notifier.store().outbox_next_due().await.ok().flatten()
            }
            Err(e) => {
                tracing::warn!(error = %e, "outbox delivery failed");
                None
            }
        };
        let wait = crate::controller::worker::until(next, now, crate::controller::delivery::POLL);
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Arguments of `servicehub session`.
#[derive(clap::Args, Debug)]
pub struct SessionArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: SessionCommand,
    /// The store.
    #[command(flatten)]
    pub store: StoreArgs,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Table, global = true)]
    pub output: OutputFormat,
}

/// Session commands.
#[derive(clap::Subcommand, Debug)]
pub enum SessionCommand {
    /// List live console sessions (of one person with `--user`).
    List {
        /// Only this person's sessions.
        #[arg(long)]
        user: Option<String>,
    },
    /// End every live session of a person: they must sign in again.
    Revoke {
        /// The person.
        #[arg(long, required = true)]
        user: String,
        /// Who revokes, for the audit log (the CLI cannot prove it).
        #[arg(long = "as")]
        actor: Option<String>,
    },
}

/// `servicehub session list|revoke`.
pub async fn session(args: SessionArgs) -> anyhow::Result<ExitCode> {
    let SessionArgs { command, store, output } = args;
    let now = jiff::Timestamp::now().as_second();
    match command {
        SessionCommand::List { user } => {
            let db = open_existing_store(&store).await?;
            let user = user.map(|u| u.trim().to_ascii_lowercase());
            let sessions = db.sessions(user.as_deref(), now).await?;
            let mut out = std::io::stdout().lock();
            if !super::output::list(&mut out, output, &sessions)? {
                let rows: Vec<Vec<String>> = sessions
                    .iter()
                    .map(|s| {
                        vec![
                            s.email.clone(),
                            s.account_type.clone(),
                            s.method.clone(),
                            s.address.clone(),
                            crate::domain::time::rfc3339(s.created_at),
                            crate::domain::time::rfc3339(s.seen_at),
                            crate::domain::time::rfc3339(s.expires_at),
                        ]
                    })
                    .collect();
                let head = ["USER", "ACCOUNT", "METHOD", "ADDRESS", "SIGNED IN", "LAST SEEN", "ENDS BY"];
                write!(out, "{}", super::table::render(&head, &rows))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        SessionCommand::Revoke { user, actor } => {
            let db = open_existing_store(&store).await?;
            let user = user.trim().to_ascii_lowercase();
            let by = super::cli_actor(actor.as_deref());
            let n = db.sessions_end(None, Some(&user), now, &by, "session.revoke").await?;
            println!("{n} session(s) of {user} revoked");
            Ok(ExitCode::SUCCESS)
        }
    }
}
