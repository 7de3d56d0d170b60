//! Command-line interface: `clap` derive, one subcommand per front door.

mod apply;
pub mod console;
mod explain;
mod get;
mod import;
mod lockbox;
mod notify;
mod output;
mod run;
mod table;

pub use output::OutputFormat;

use crate::api;
use crate::store::{self, Store};
use crate::validate::{self, References, Severity};
use clap::{Parser, Subcommand, ValueEnum};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// servicehub: declarative provisioning of Services Hub customers, workspaces, memberships
/// and Customer Lockbox policies.
#[derive(Parser, Debug)]
#[command(name = "servicehub", version, about, long_about = None)]
pub struct Cli {
    /// Log level filter (tracing `EnvFilter` syntax, e.g. `info` or `servicehub_operator=debug`).
    /// Defaults to `info` for `run`, and to `warn` for the commands that print results for
    /// people (logs stay out of the way unless asked for).
    #[arg(long, env = "SERVICEHUB_LOG", global = true)]
    pub log: Option<String>,
    /// Log format: `text` for a terminal, `json` for a cluster's log pipeline; `auto` picks
    /// text when standard error is a terminal, else JSON.
    #[arg(long, env = "SERVICEHUB_LOG_FORMAT", value_enum, default_value_t = LogFormat::Auto, global = true)]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Log output format.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    /// Text at a terminal, JSON otherwise (in a pod).
    Auto,
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl Cli {
    /// The log filter: as given, else `info` for the controller and `warn` for commands.
    pub fn log_filter(&self) -> &str {
        match (&self.log, &self.command) {
            (Some(l), _) => l,
            (None, Command::Run(_) | Command::Serve(_)) => "info",
            (None, _) => "warn",
        }
    }
}

impl LogFormat {
    /// Whether text logs are coloured: at a terminal only, and never with `NO_COLOR` set
    /// (<https://no-color.org>).
    pub fn colour() -> bool {
        use std::io::IsTerminal;
        std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
    }

    /// Whether logs are written as JSON.
    pub fn is_json(self) -> bool {
        use std::io::IsTerminal;
        match self {
            LogFormat::Auto => !std::io::stderr().is_terminal(),
            LogFormat::Text => false,
            LogFormat::Json => true,
        }
    }
}

/// Subcommands.
// Parsed once per process: the size of `run`'s flags does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the Kubernetes controller: reconcile the four kinds in the cluster against the store.
    Run(run::RunArgs),
    /// Serve the web console over the local store, without a cluster (sign in, accept invitations).
    Serve(console::ServeArgs),
    /// Console sessions: list them, revoke a person's.
    Session(console::SessionArgs),
    /// Customer Lockbox requests: request, approve, deny, revoke, complete, list, show, sweep.
    Lockbox(lockbox::LockboxArgs),
    /// Print the four CustomResourceDefinitions as multi-document YAML.
    Crd(CrdArgs),
    /// Describe a kind or a field (`membership.spec.roles`), offline, as `kubectl explain` does.
    Explain(explain::ExplainArgs),
    /// Check YAML files against the schema, the CEL rules and the domain rules.
    Validate(ValidateArgs),
    /// Apply the store's embedded schema migrations (also done on every start).
    Migrate(MigrateArgs),
    /// Validate, plan and apply YAML to the store, without a cluster.
    Apply(apply::ApplyArgs),
    /// Print what `apply` would change, writing nothing (same as `apply --dry-run`).
    Plan(apply::ApplyArgs),
    /// Remove what the objects in the files provisioned (or release it, for `deletionPolicy: Orphan`).
    #[command(mut_arg("paths", |a| a.help("Files or directories (walked recursively) of YAML naming the objects to remove")))]
    #[command(mut_arg("dry_run", |a| a.help("Print everything that would be removed and write nothing")))]
    Delete(apply::DeleteArgs),
    /// List what the store holds.
    Get(get::GetArgs),
    /// Write the YAML that describes what the store holds for a customer (start GitOps from it).
    Import(import::ImportArgs),
    /// Whether a user holds a permission in a workspace or at customer level, and why.
    CanI(get::CanIArgs),
    /// Deliver the outbox (invitations, Lockbox notifications) now: `--once`, or until interrupted.
    Notify(notify::NotifyCommand),
    /// Invitations: accept one with the token from its message.
    Invitation(notify::InvitationArgs),
    /// Print a shell completion script: `servicehub completion bash > /etc/bash_completion.d/servicehub`,
    /// or `source <(servicehub completion zsh)`.
    Completion(CompletionArgs),
}

/// Arguments of `servicehub completion`.
#[derive(clap::Args, Debug)]
pub struct CompletionArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Where the store is: one URL everywhere the binary takes a store.
#[derive(clap::Args, Debug, Clone)]
pub struct StoreArgs {
    /// Store URL: `sqlite://PATH` (created if missing) or `postgres://USER[:PASSWORD]@HOST/DB`.
    #[arg(long = "store", env = "SERVICEHUB_STORE", default_value = store::DEFAULT_STORE_URL, hide_env_values = true, global = true)]
    pub url: String,
}

/// Arguments of `servicehub migrate`.
#[derive(clap::Args, Debug)]
pub struct MigrateArgs {
    /// The store.
    #[command(flatten)]
    pub store: StoreArgs,
}

/// Arguments of `servicehub crd`.
#[derive(clap::Args, Debug)]
pub struct CrdArgs {
    /// Write one file per CRD into this directory instead of printing them.
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
}

/// Arguments of `servicehub validate`.
#[derive(clap::Args, Debug)]
pub struct ValidateArgs {
    /// Files or directories (walked recursively) of YAML to check.
    #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
    pub paths: Vec<PathBuf>,
}

impl Cli {
    /// Run the chosen subcommand.
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let Self { log: _, log_format: _, command } = self;
        match command {
            Command::Run(args) => run::run(args).await,
            Command::Serve(args) => console::serve(args).await,
            Command::Session(args) => console::session(args).await,
            Command::Lockbox(args) => lockbox::run(args).await,
            Command::Crd(args) => crd(args),
            Command::Explain(args) => explain::explain(args),
            Command::Validate(args) => validate(args),
            Command::Migrate(args) => migrate(args).await,
            Command::Apply(args) => apply::run(args, false).await,
            Command::Plan(args) => apply::run(args, true).await,
            Command::Delete(args) => apply::delete(args).await,
            Command::Get(args) => get::get(args).await,
            Command::CanI(args) => get::can_i(args).await,
            Command::Import(args) => import::run(args).await,
            Command::Notify(args) => notify::notify_command(args).await,
            Command::Invitation(args) => notify::invitation(args).await,
            Command::Completion(CompletionArgs { shell }) => {
                use clap::CommandFactory;
                let mut script = Vec::new();
                clap_complete::generate(shell, &mut Cli::command(), "servicehub", &mut script);
                match std::io::stdout().write_all(&script) {
                    // `servicehub completion bash | head` is not an error.
                    Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
                    _ => Ok(ExitCode::SUCCESS),
                }
            }
        }
    }
}

fn crd(args: CrdArgs) -> anyhow::Result<ExitCode> {
    let CrdArgs { out_dir } = args;
    match out_dir {
        None => {
            std::io::stdout().write_all(api::crds_yaml()?.as_bytes())?;
        }
        Some(dir) => {
            std::fs::create_dir_all(&dir)?;
            for crd in api::crds() {
                let path = dir.join(api::crd_file_name(&crd));
                std::fs::write(&path, serde_yaml::to_string(&crd)?)?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn migrate(args: MigrateArgs) -> anyhow::Result<ExitCode> {
    let MigrateArgs { store: StoreArgs { url } } = args;
    let url: store::StoreUrl = url.parse()?;
    let shown = url.to_string();
    let db = store::sql::SqlStore::connect(url).await?;
    let report = db.migrate().await?;
    if report.from == report.to {
        println!("store {shown}: schema version {} is current", report.to);
    } else {
        println!("store {shown}: schema migrated from version {} to {}", report.from, report.to);
    }
    Ok(ExitCode::SUCCESS)
}

/// Open (and migrate) the store named by the arguments, creating a SQLite file if missing:
/// for commands that write.
pub(crate) async fn open_store(args: &StoreArgs) -> anyhow::Result<std::sync::Arc<dyn Store>> {
    Ok(store::open(&args.url).await?)
}

/// Open the store for a command that only reads: a SQLite file that does not exist is an
/// error naming it (a typo must not create an empty store and print an empty table).
pub(crate) async fn open_existing_store(args: &StoreArgs) -> anyhow::Result<std::sync::Arc<dyn Store>> {
    let url: store::StoreUrl = args.url.parse()?;
    if let Some(file) = url.sqlite_file().filter(|f| !f.exists()) {
        anyhow::bail!(
            "no store at {} ({url}): check --store, or create it with `servicehub apply -f PATH`",
            file.display()
        );
    }
    Ok(store::open(url.expose()).await?)
}

/// A command line that is wrong as a whole: exit code 2, as for clap's own usage errors.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Usage(pub String);

/// The environment variable through which tests, and only tests, set the clock of a run.
/// Its name says what it is; the binary warns on every run that honours it.
pub const TEST_CLOCK_ENV: &str = "SERVICEHUB_UNSAFE_TEST_CLOCK";

/// The clock of everything a command writes: this machine's. (`SERVICEHUB_UNSAFE_TEST_CLOCK`
/// replaces it for tests of expiry and deadlines, with a warning.)
pub(crate) fn write_clock() -> anyhow::Result<jiff::Timestamp> {
    match std::env::var(TEST_CLOCK_ENV) {
        Ok(v) if !v.is_empty() => {
            let t: jiff::Timestamp =
                v.parse().map_err(|e| anyhow::anyhow!("{TEST_CLOCK_ENV}={v:?} is not an RFC 3339 time: {e}"))?;
            static WARNED: std::sync::Once = std::sync::Once::new();
            WARNED
                .call_once(|| eprintln!("warning: {TEST_CLOCK_ENV} is set: this run's clock is {t} (for tests only)"));
            Ok(t)
        }
        _ => Ok(jiff::Timestamp::now()),
    }
}

/// The time a command acts at: `preview` (from `flag`) when the command only previews,
/// else the machine's clock; a chosen time for a command that writes is refused.
pub(crate) fn clock(preview: Option<jiff::Timestamp>, previewing: bool, flag: &str) -> anyhow::Result<jiff::Timestamp> {
    match preview {
        Some(t) if previewing => Ok(t),
        Some(_) => Err(Usage(format!(
            "{flag} only previews: use it with --dry-run (or `servicehub plan`); what is written is stamped by \
             this machine's clock"
        ))
        .into()),
        None => write_clock(),
    }
}

/// Print validation problems, one per line.
pub(crate) fn print_problems(problems: &[validate::Problem]) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    for p in problems {
        writeln!(out, "{p}")?;
    }
    Ok(())
}

fn validate(args: ValidateArgs) -> anyhow::Result<ExitCode> {
    let ValidateArgs { paths } = args;
    let report = validate::validate_paths(&paths, References::InSet);
    print_problems(&report.problems)?;
    let errors = report.problems.iter().filter(|p| p.severity == Severity::Error).count();
    let warnings = report.problems.len() - errors;
    eprintln!(
        "{} object(s) checked: {} valid, {errors} error(s), {warnings} warning(s); {} other object(s) ignored",
        report.checked,
        report.objects.len(),
        report.ignored
    );
    Ok(if errors > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// Who a CLI run acts as in the audit log: the `--as`/`--actor` name if given (the CLI cannot
/// prove it; it is shown as not authenticated), with the OS user and host beside it.
pub(crate) fn cli_actor(claimed: Option<&str>) -> crate::domain::actor::Actor {
    crate::domain::actor::Actor::cli(claimed, &crate::telemetry::os_user(), &crate::telemetry::host())
}
