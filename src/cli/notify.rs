//! Delivery flags (shared by `run`, `apply` and `notify`), `servicehub notify` and
//! `servicehub invitation accept`.

use super::{OutputFormat, StoreArgs, open_store};
use crate::notify::transport::{SmtpTls, TransportConfig};
use crate::notify::{self, Notifier};
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// The transport kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TransportKind {
    /// One RFC 5322 `.eml` file per message in `--notify-dir`.
    File,
    /// An SMTP relay (`--smtp-host`).
    Smtp,
    /// A signed JSON POST to `--webhook-url`.
    Webhook,
    /// Deliver nothing: messages stay queued in the store.
    None,
}

/// How messages (invitations, Lockbox notifications) are delivered.
#[derive(clap::Args, Debug, Clone)]
#[command(next_help_heading = "Delivery")]
pub struct NotifyArgs {
    /// Transport for invitations and notifications.
    #[arg(long, env = "SERVICEHUB_NOTIFY_TRANSPORT", value_enum, default_value_t = TransportKind::File)]
    pub notify_transport: TransportKind,
    /// Directory of the file transport (created if missing).
    #[arg(long, env = "SERVICEHUB_NOTIFY_DIR", default_value = "servicehub-outbox")]
    pub notify_dir: PathBuf,
    /// Sender address of every message.
    #[arg(long, env = "SERVICEHUB_MAIL_FROM", default_value = "Services Hub <servicehub@localhost>")]
    pub mail_from: String,
    /// The acceptance page linked from invitations; the token is added as `?token=`.
    #[arg(long, env = "SERVICEHUB_INVITATION_LINK_BASE", default_value = "http://localhost:8080/invitations/accept")]
    pub invitation_link_base: url::Url,
    /// How long an invitation can be accepted after it is first sent (e.g. `14d`, `36h`).
    #[arg(long, env = "SERVICEHUB_INVITATION_VALIDITY", default_value = "14d", value_parser = super::run::parse_duration)]
    pub invitation_validity: Duration,
    /// How many times an expired, unaccepted invitation is issued again with a new token.
    #[arg(long, env = "SERVICEHUB_INVITATION_REISSUES", default_value_t = 2)]
    pub invitation_reissues: u32,
    /// Delivery attempts before an invitation is `Failed`.
    #[arg(long, env = "SERVICEHUB_NOTIFY_MAX_ATTEMPTS", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..))]
    pub notify_max_attempts: u32,
    /// Delay before the first retry; it doubles per attempt (±20% jitter), up to `--notify-retry-cap`.
    #[arg(long, env = "SERVICEHUB_NOTIFY_RETRY_BASE", default_value = "30s", value_parser = super::run::parse_duration)]
    pub notify_retry_base: Duration,
    /// Longest delay between two attempts.
    #[arg(long, env = "SERVICEHUB_NOTIFY_RETRY_CAP", default_value = "1h", value_parser = super::run::parse_duration)]
    pub notify_retry_cap: Duration,
    /// Messages in flight at once (SMTP connections, webhook requests).
    #[arg(long, env = "SERVICEHUB_NOTIFY_CONCURRENCY", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub notify_concurrency: u16,
    /// SMTP relay host.
    #[arg(long, env = "SERVICEHUB_SMTP_HOST")]
    pub smtp_host: Option<String>,
    /// SMTP port (default: 587 for starttls, 465 for tls, 25 for none).
    #[arg(long, env = "SERVICEHUB_SMTP_PORT")]
    pub smtp_port: Option<u16>,
    /// SMTP connection security; `none` only for a relay on loopback or inside the pod network.
    #[arg(long, env = "SERVICEHUB_SMTP_TLS", value_enum, default_value_t = SmtpTls::Starttls)]
    pub smtp_tls: SmtpTls,
    /// SMTP user name (from the environment or a Secret; never logged).
    #[arg(long, env = "SERVICEHUB_SMTP_USERNAME", hide_env_values = true)]
    pub smtp_username: Option<String>,
    /// SMTP password: environment only (a flag would show in the process list).
    #[arg(skip = std::env::var("SERVICEHUB_SMTP_PASSWORD").ok())]
    pub smtp_password: Option<String>,
    /// Per-command SMTP timeout and whole-request webhook timeout.
    #[arg(long, env = "SERVICEHUB_NOTIFY_TIMEOUT", default_value = "10s", value_parser = super::run::parse_duration)]
    pub notify_timeout: Duration,
    /// Webhook endpoint.
    #[arg(long, env = "SERVICEHUB_WEBHOOK_URL", hide_env_values = true)]
    pub webhook_url: Option<url::Url>,
    /// Webhook HMAC-SHA256 key: environment only (`SERVICEHUB_WEBHOOK_SECRET`).
    #[arg(skip = std::env::var("SERVICEHUB_WEBHOOK_SECRET").ok())]
    pub webhook_secret: Option<String>,
}

/// The page completing an emailed sign-in: on the console the invitation links point at.
pub fn signin_link(invitation_link_base: &url::Url) -> url::Url {
    let mut u = invitation_link_base.clone();
    u.set_path("/signin/email");
    u.set_query(None);
    u
}

impl NotifyArgs {
    /// The delivery settings, or `None` for `--notify-transport none`. Errors name the flag.
    pub fn into_config(self) -> Result<Option<notify::Config>, String> {
        let transport = match self.notify_transport {
            TransportKind::None => return Ok(None),
            TransportKind::File => TransportConfig::File { dir: self.notify_dir },
            TransportKind::Smtp => TransportConfig::Smtp {
                host: self.smtp_host.ok_or("--smtp-host (SERVICEHUB_SMTP_HOST) is required with the smtp transport")?,
                port: self.smtp_port,
                tls: self.smtp_tls,
                credentials: match (self.smtp_username, self.smtp_password) {
                    (Some(u), Some(p)) => Some((u, p)),
                    (None, None) => None,
                    _ => {
                        return Err(
                            "SMTP credentials need both SERVICEHUB_SMTP_USERNAME and SERVICEHUB_SMTP_PASSWORD".into()
                        );
                    }
                },
                timeout: self.notify_timeout,
            },
            TransportKind::Webhook => TransportConfig::Webhook {
                url: self
                    .webhook_url
                    .ok_or("--webhook-url (SERVICEHUB_WEBHOOK_URL) is required with the webhook transport")?,
                secret: self.webhook_secret.filter(|s| !s.is_empty()).ok_or(
                    "SERVICEHUB_WEBHOOK_SECRET (the HMAC-SHA256 signing key) is required with the webhook transport",
                )?,
                timeout: self.notify_timeout,
            },
        };
        let from = self.mail_from.parse().map_err(|e| format!("--mail-from {:?}: {e}", self.mail_from))?;
        if self.notify_retry_cap < self.notify_retry_base {
            return Err("--notify-retry-cap must not be shorter than --notify-retry-base".into());
        }
        Ok(Some(notify::Config {
            transport,
            from,
            signin_link_base: signin_link(&self.invitation_link_base),
            link_base: self.invitation_link_base,
            validity: self.invitation_validity,
            max_attempts: self.notify_max_attempts,
            retry_base: self.notify_retry_base,
            retry_cap: self.notify_retry_cap,
            reissues: self.invitation_reissues,
            concurrency: usize::from(self.notify_concurrency),
            // `run` replaces it with the operator.
            actor: super::cli_actor(None),
        }))
    }

    /// A notifier over `store`, or `None` for `--notify-transport none`.
    pub fn notifier(self, store: std::sync::Arc<dyn crate::store::Store>) -> anyhow::Result<Option<Notifier>> {
        let Some(config) = self.into_config().map_err(anyhow::Error::msg)? else { return Ok(None) };
        Ok(Some(Notifier::new(store, config).map_err(anyhow::Error::msg)?))
    }
}

/// Arguments of `servicehub notify`.
#[derive(clap::Args, Debug)]
pub struct NotifyCommand {
    /// Drain what is due once and exit (otherwise keep delivering until interrupted).
    #[arg(long)]
    pub once: bool,
    /// Refused: deliveries are stamped by this machine's clock (kept to say so).
    #[arg(long, hide = true)]
    pub now: Option<jiff::Timestamp>,
    /// Output format of the summary.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
    /// Delivery.
    #[command(flatten)]
    pub notify: NotifyArgs,
    /// The store.
    #[command(flatten)]
    pub store: StoreArgs,
}

/// Run `servicehub notify`.
pub async fn notify_command(args: NotifyCommand) -> anyhow::Result<ExitCode> {
    let NotifyCommand { once, now, output, notify, store } = args;
    // Delivering writes (attempts, expiries, re-issues): the machine's clock, every pass.
    super::clock(now, false, "--now")?;
    let db = open_store(&store).await?;
    let Some(notifier) = notify.notifier(db.clone())? else {
        anyhow::bail!("--notify-transport none delivers nothing; choose file, smtp or webhook");
    };
    loop {
        let at = super::write_clock()?.as_second();
        let report = notifier.drain(at).await?;
        print_report(&report, output)?;
        if once {
            return Ok(if report.failed > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS });
        }
        let next = db.outbox_next_due().await?;
        let wait = crate::controller::worker::until(next, at, crate::controller::delivery::POLL);
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Print a drain's summary: a sentence, or one document per pass (`-o jsonl` keeps a
/// long-running `notify` a stream of JSON lines).
pub(crate) fn print_report(r: &notify::Report, format: OutputFormat) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if !super::output::one(&mut out, format, r)? {
        writeln!(
            out,
            "delivered {} message(s); {} to retry, {} failed, {} cancelled; {} invitation(s) expired, {} issued again",
            r.sent, r.retried, r.failed, r.cancelled, r.expired, r.reissued
        )?;
    }
    Ok(())
}

/// Arguments of `servicehub invitation`.
#[derive(clap::Args, Debug)]
pub struct InvitationArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: InvitationCommand,
}

/// `servicehub invitation` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum InvitationCommand {
    /// Accept an invitation with the token from its message.
    Accept(AcceptArgs),
    /// Send a person's failed or expired invitations again, each with a new token (within the
    /// re-issue limit and the agreement's dates), then deliver them.
    Resend(Box<ResendArgs>),
}

/// Arguments of `servicehub invitation resend`.
#[derive(clap::Args, Debug)]
pub struct ResendArgs {
    /// The namespace of the customer.
    #[arg(short = 'n', long)]
    pub namespace: String,
    /// The invited address.
    #[arg(long)]
    pub email: String,
    /// Only the invitations of this customer (by name).
    #[arg(long)]
    pub customer: Option<String>,
    /// Only the invitation to this workspace (by name).
    #[arg(long)]
    pub workspace: Option<String>,
    /// Who is acting, for the audit log (recorded, not proven). Defaults to `cli:$USER`.
    #[arg(long = "as", env = "SERVICEHUB_ACTOR")]
    pub actor: Option<String>,
    /// Deliver what was queued at once (`--deliver=false` leaves it for `servicehub notify`).
    #[arg(long, env = "SERVICEHUB_DELIVER", default_value_t = true, action = clap::ArgAction::Set)]
    pub deliver: bool,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
    /// Delivery (and the re-issue limit, `--invitation-reissues`).
    #[command(flatten)]
    pub notify: NotifyArgs,
    /// The store.
    #[command(flatten)]
    pub store: StoreArgs,
}

/// Arguments of `servicehub invitation accept`.
#[derive(clap::Args)]
pub struct AcceptArgs {
    /// The token from the invitation message, or `-` to read it from standard input (keeps it
    /// out of the shell history and the process list).
    // One token in 64 begins with `-`: it must be taken as the value, not as a flag.
    #[arg(long, env = "SERVICEHUB_INVITATION_TOKEN", hide_env_values = true, allow_hyphen_values = true)]
    pub token: String,
    /// The account you sign in with.
    #[arg(long)]
    pub account: String,
    /// `WorkOrSchool` or `Personal` (a Microsoft account).
    #[arg(long, value_parser = ["WorkOrSchool", "Personal"])]
    pub account_type: String,
    /// Refused: an acceptance is stamped by this machine's clock (kept to say so).
    #[arg(long, hide = true)]
    pub now: Option<jiff::Timestamp>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
    /// The store.
    #[command(flatten)]
    pub store: StoreArgs,
}

impl std::fmt::Debug for AcceptArgs {
    /// Never prints the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcceptArgs").field("account", &self.account).field("account_type", &self.account_type).finish()
    }
}

/// Run `servicehub invitation ...`.
pub async fn invitation(args: InvitationArgs) -> anyhow::Result<ExitCode> {
    let a = match args.command {
        InvitationCommand::Accept(a) => a,
        InvitationCommand::Resend(r) => return resend(*r).await,
    };
    let now = super::clock(a.now, false, "--now")?.as_second();
    let token = if a.token == "-" {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        line.trim().to_owned()
    } else {
        a.token
    };
    let db = open_store(&a.store).await?;
    let req = notify::accept::Request { token, account: a.account, account_type: a.account_type };
    // An administrator's tool: the account is taken as given, and the audit says so.
    let by = super::cli_actor(None);
    match notify::accept::accept(db.as_ref(), &req, by, true, now).await {
        Ok(accepted) => {
            let mut out = std::io::stdout().lock();
            if !super::output::one(&mut out, a.output, &accepted)? {
                let scope =
                    accepted.workspace.as_ref().map_or("customer level".to_owned(), |w| format!("workspace {w}"));
                writeln!(
                    out,
                    "accepted: {} is now active in {scope} of customer {}/{} (as {})",
                    accepted.email, accepted.namespace, accepted.customer, accepted.account
                )?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(notify::accept::Error::Store(e)) => Err(e.into()),
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `servicehub invitation resend`: every invitation of the person with what was done. Exit 1
/// when none could be sent again.
async fn resend(a: ResendArgs) -> anyhow::Result<ExitCode> {
    let now = super::write_clock()?.as_second();
    let db = super::open_existing_store(&a.store).await?;
    let by = super::cli_actor(a.actor.as_deref());
    let of = crate::store::ResendOf {
        namespace: &a.namespace,
        customer: a.customer.as_deref(),
        email: &a.email,
        workspace: a.workspace.as_deref(),
    };
    let done = db.invitations_resend(&of, i64::from(a.notify.invitation_reissues), now, &by).await?;
    let mut out = std::io::stdout().lock();
    if done.is_empty() {
        let scope = a.workspace.as_ref().map(|w| format!(" in workspace {w}")).unwrap_or_default();
        eprintln!("no invitation of {} in namespace {}{scope}", a.email, a.namespace);
        return Ok(ExitCode::FAILURE);
    }
    let sent = done.iter().filter(|r| r.refused.is_none()).count();
    let delivery = if a.deliver && sent > 0 { a.notify.into_config().map_err(super::Usage)? } else { None };
    let report = match delivery {
        Some(config) => {
            let notifier = notify::Notifier::new(db.clone(), config).map_err(anyhow::Error::msg)?;
            Some(notifier.drain(now).await?)
        }
        None => None,
    };
    if !super::output::list(&mut out, a.output, &done)? {
        let rows: Vec<Vec<String>> = done
            .iter()
            .map(|r| {
                vec![
                    r.customer.clone(),
                    r.workspace.clone().unwrap_or_else(|| "(customer level)".into()),
                    r.email.clone(),
                    r.state.clone(),
                    r.issue.to_string(),
                    r.refused.clone().map_or_else(|| "sent again with a new token".into(), |w| format!("left: {w}")),
                ]
            })
            .collect();
        write!(
            out,
            "{}",
            super::table::render(&["CUSTOMER", "WORKSPACE", "EMAIL", "STATE", "ISSUE", "RESULT"], &rows)
        )?;
        if let Some(r) = &report {
            print_report(r, a.output)?;
        }
    }
    Ok(if sent > 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
