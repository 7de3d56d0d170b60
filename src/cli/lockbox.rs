//! `servicehub lockbox request|approve|deny|revoke|complete|list|show|sweep`.

use super::{OutputFormat, StoreArgs, open_existing_store, open_store, output, table};
use crate::domain::lockbox::{Action, NewRequest, Request, State, rfc3339};
use crate::lockbox::{self, Error};
use crate::store::{LockboxFilter, StoreError};
use std::io::Write;
use std::process::ExitCode;

/// Arguments shared by every lockbox command.
#[derive(clap::Args, Debug)]
pub struct Common {
    /// Show `list` and `show` as of this time (RFC 3339). Refused for requests and
    /// decisions: they are stamped by this machine's clock.
    #[arg(long, global = true)]
    pub now: Option<jiff::Timestamp>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Table, global = true)]
    pub output: OutputFormat,
    /// The store.
    #[command(flatten)]
    pub store: StoreArgs,
}

/// Arguments of `servicehub lockbox`.
#[derive(clap::Args, Debug)]
pub struct LockboxArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: LockboxCommand,
    /// Shared flags.
    #[command(flatten)]
    pub common: Common,
}

/// A decision on a request.
#[derive(clap::Args, Debug)]
pub struct Decision {
    /// The request id.
    pub id: i64,
    /// Who acts (an approver; for `complete`, the requester).
    #[arg(long = "as")]
    pub actor: String,
    /// Why (recorded in the history and the audit log).
    #[arg(long)]
    pub reason: Option<String>,
}

/// Lockbox subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum LockboxCommand {
    /// Ask for access to a customer's content (as a support engineer).
    Request {
        /// The customer, as NAMESPACE/NAME.
        #[arg(long)]
        customer: String,
        /// `ExchangeOnline`, `SharePointOnline` or `OneDriveForBusiness`.
        #[arg(long)]
        workload: String,
        /// The support case.
        #[arg(long = "case")]
        case_id: String,
        /// Why access is needed.
        #[arg(long)]
        reason: String,
        /// How long access is needed (e.g. `4h`), at most the policy's maxAccessDuration.
        #[arg(long)]
        duration: crate::api::GoDuration,
        /// The requesting engineer's email.
        #[arg(long = "as")]
        actor: String,
        /// Mail domains of Microsoft engineers, who may open requests (repeatable). Anyone
        /// else needs a Microsoft role (CSAM, Incident Manager) for the customer.
        #[arg(
            long = "requester-domain",
            env = "SERVICEHUB_LOCKBOX_REQUESTER_DOMAINS",
            value_delimiter = ',',
            default_value = "microsoft.com"
        )]
        requester_domains: Vec<String>,
    },
    /// Grant a pending request (an approver).
    Approve(Decision),
    /// Refuse a pending request (an approver).
    Deny(Decision),
    /// End granted access early (an approver).
    Revoke(Decision),
    /// Close a request: the issue is fixed (the requester).
    Complete(Decision),
    /// The full history, newest first.
    List {
        /// Only customers of this namespace.
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        /// Only this customer (name).
        #[arg(long)]
        customer: Option<String>,
        /// Only requests in this state.
        #[arg(long)]
        state: Option<String>,
        /// Only requests opened at or after this time (RFC 3339).
        #[arg(long)]
        since: Option<jiff::Timestamp>,
    },
    /// One request.
    Show {
        /// The request id.
        id: i64,
    },
    /// Apply every expiry due by now (or `--at`): pending requests nobody decided, access
    /// whose time ran out.
    Sweep {
        /// Preview: print what would expire, write nothing.
        #[arg(long)]
        dry_run: bool,
        /// With `--dry-run`: what would expire by this time (RFC 3339). A real sweep
        /// expires what is due by this machine's clock.
        #[arg(long)]
        at: Option<jiff::Timestamp>,
    },
}

fn when(t: Option<i64>) -> String {
    t.map(rfc3339).unwrap_or_else(|| "-".into())
}

fn rows(requests: &[Request]) -> String {
    let rows: Vec<Vec<String>> = requests
        .iter()
        .map(|r| {
            vec![
                r.id.to_string(),
                r.state.to_string(),
                r.requester.clone(),
                r.workload.clone(),
                r.case_id.clone(),
                rfc3339(r.created_at),
                when(r.due_at().or(r.closed_at)),
            ]
        })
        .collect();
    table::render(&["ID", "STATE", "REQUESTER", "WORKLOAD", "CASE", "CREATED", "DEADLINE/CLOSED"], &rows)
}

/// Everything about one request: who asked for what and why, who may decide, the deadlines
/// (with the time left at `now`), and each transition with its actor and time.
fn detail(r: &Request, history: &[crate::store::AuditEntry], now: i64) -> String {
    let left = |t: Option<i64>| match t {
        Some(t) if t > now => format!("{} ({} left)", rfc3339(t), span(t - now)),
        Some(t) => rfc3339(t),
        None => "-".into(),
    };
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<16}{v}\n"));
    line("Request:", format!("{} ({})", r.id, r.state));
    line("Requester:", r.requester.clone());
    line("Workload:", r.workload.clone());
    line("Case:", r.case_id.clone());
    line("Reason:", r.reason.clone());
    line("Duration:", span(r.requested_seconds));
    line("Approvers:", if r.approvers.is_empty() { "-".into() } else { r.approvers.join(", ") });
    line("Opened:", rfc3339(r.created_at));
    line("Decide by:", left(r.pending_deadline));
    let decided = match (&r.decided_at, &r.decided_by) {
        (Some(t), Some(by)) => {
            let why = r.decision_reason.as_deref().map(|w| format!(": {w}")).unwrap_or_default();
            format!("{} by {by}{why}", rfc3339(*t))
        }
        _ => "-".into(),
    };
    line("Decided:", decided);
    line("Access until:", left(r.access_deadline));
    line("Closed:", when(r.closed_at));
    out.push_str("\nHistory:\n");
    let rows: Vec<Vec<String>> = history
        .iter()
        .map(|e| {
            let state = e.action.strip_prefix("lockbox.").unwrap_or(&e.action).to_owned();
            // The CLI takes the actor's word (`--as`); the console authenticates people.
            vec![rfc3339(e.at), state, e.actor.clone(), e.channel.describe().to_owned()]
        })
        .collect();
    out.push_str(&table::render(&["TIME", "STATE", "ACTOR", "CHANNEL"], &rows));
    out
}

/// A duration in whole hours and minutes (`2h`, `1h30m`, `45m`).
fn span(seconds: i64) -> String {
    let (h, m) = (seconds / 3600, (seconds % 3600) / 60);
    match (h, m) {
        (0, m) => format!("{m}m"),
        (h, 0) => format!("{h}h"),
        (h, m) => format!("{h}h{m}m"),
    }
}

/// Print requests: a list (`list`), or one request (a decision, `show`) as one document.
fn print(format: OutputFormat, requests: &[Request], single: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let written = match requests {
        [one] if single => output::one(&mut out, format, one)?,
        _ => output::list(&mut out, format, requests)?,
    };
    if !written {
        write!(out, "{}", rows(requests))?;
    }
    Ok(())
}

/// Run a lockbox command. Refusals print the rule and exit 1; a lost race exits 1 naming it.
pub async fn run(args: LockboxArgs) -> anyhow::Result<ExitCode> {
    let LockboxArgs { command, common: Common { now, output, store } } = args;
    // Only reading commands take a chosen time; the rest write with the machine's clock.
    let reads = matches!(command, LockboxCommand::List { .. } | LockboxCommand::Show { .. });
    let previewing = reads || matches!(command, LockboxCommand::Sweep { dry_run: true, .. });
    let now = super::clock(now, previewing, "--now")?.as_second();
    if let LockboxCommand::Sweep { dry_run, at } = &command {
        super::clock(*at, *dry_run, "--at")?;
    }
    let db = if reads { open_existing_store(&store).await? } else { open_store(&store).await? };
    let db = db.as_ref();
    let decided = |r: Result<Request, Error>| -> anyhow::Result<ExitCode> {
        match r {
            Ok(r) => {
                print(output, &[r], true)?;
                Ok(ExitCode::SUCCESS)
            }
            Err(Error::Store(e @ StoreError::Conflict(_))) => {
                eprintln!("refused: someone else acted on this request first ({e})");
                Ok(ExitCode::FAILURE)
            }
            Err(Error::Store(e)) => Err(e.into()),
            Err(e) => {
                eprintln!("refused: {e}");
                Ok(ExitCode::FAILURE)
            }
        }
    };
    let decision = |d: Decision, action: Action| async move {
        lockbox::act(db, d.id, action, &super::cli_actor(Some(&d.actor)), d.reason, now).await
    };
    match command {
        LockboxCommand::Request { customer, workload, case_id, reason, duration, actor, requester_domains } => {
            let Some((ns, name)) = customer.split_once('/') else {
                eprintln!("refused: --customer: give the customer as NAMESPACE/NAME, not {customer:?}");
                return Ok(ExitCode::FAILURE);
            };
            let by = super::cli_actor(Some(&actor));
            let new = NewRequest { requester: actor, workload, case_id, reason, duration: duration.seconds() };
            let requesters = lockbox::Requesters::from_domains(&requester_domains);
            decided(lockbox::request(db, ns, name, new, lockbox::Requester::person(&by), &requesters, now).await)
        }
        LockboxCommand::Approve(d) => decided(decision(d, Action::Approve).await),
        LockboxCommand::Deny(d) => decided(decision(d, Action::Deny).await),
        LockboxCommand::Revoke(d) => decided(decision(d, Action::Revoke).await),
        LockboxCommand::Complete(d) => decided(decision(d, Action::Complete).await),
        LockboxCommand::List { namespace, customer, state, since } => {
            let state = match state.as_deref().map(|s| (s, State::parse(s))) {
                None => None,
                Some((_, Some(st))) => Some(st),
                Some((s, None)) => {
                    let all: Vec<&str> = State::ALL.iter().map(|s| s.as_str()).collect();
                    eprintln!("refused: --state: unknown state {s:?}; one of {}", all.join(", "));
                    return Ok(ExitCode::FAILURE);
                }
            };
            let since = since.map(|t| t.as_second());
            let filter = LockboxFilter { namespace, customer, state, since, ..Default::default() };
            print(output, &db.lockbox_list(&filter).await?, false)?;
            Ok(ExitCode::SUCCESS)
        }
        LockboxCommand::Show { id } => match db.lockbox_get(id).await? {
            Some(r) if output.is_table() => {
                let filter = crate::store::AuditFilter {
                    kind: Some("lockbox".into()),
                    object: Some(r.id.to_string()),
                    ..Default::default()
                };
                let history = db.audit(&filter).await?;
                write!(std::io::stdout().lock(), "{}", detail(&r, &history, now))?;
                Ok(ExitCode::SUCCESS)
            }
            Some(r) => {
                print(output, &[r], true)?;
                Ok(ExitCode::SUCCESS)
            }
            None => {
                eprintln!("{}", Error::NotFound(id));
                Ok(ExitCode::FAILURE)
            }
        },
        LockboxCommand::Sweep { dry_run, at } => {
            let at = at.map_or(now, |t| t.as_second());
            let swept = lockbox::sweep(db, at, None, dry_run).await?;
            let mut out = std::io::stdout().lock();
            if !output::list(&mut out, output, &swept)? {
                let rows: Vec<Vec<String>> = swept
                    .iter()
                    .map(|s| {
                        vec![
                            s.before.id.to_string(),
                            s.before.state.to_string(),
                            s.after.state.to_string(),
                            when(s.after.closed_at),
                        ]
                    })
                    .collect();
                write!(out, "{}", table::render(&["ID", "FROM", "TO", "AT"], &rows))?;
                let verb = if dry_run { "would expire" } else { "expired" };
                writeln!(out, "{} request(s) {verb} as of {}.", swept.len(), rfc3339(at))?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
