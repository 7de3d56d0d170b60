//! `servicehub apply` and `servicehub plan`: validate, plan, apply, report.

use super::{OutputFormat, StoreArgs, open_store, print_problems, table};
use crate::engine::{self, Options, Report};
use crate::plan::Context;
use crate::validate::{self, References};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `servicehub apply` (and `plan`).
#[derive(clap::Args, Debug)]
pub struct ApplyArgs {
    /// Files or directories (walked recursively) of YAML to apply.
    #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
    pub paths: Vec<PathBuf>,
    /// Print the plan and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Output format: the plan and a summary table for people, or one document for scripts
    /// (`json`, `yaml`, `jsonl` on one line) with every object, every problem and the delivery.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
    /// Print only the summary: the objects that changed or are not Ready, and the totals
    /// (the per-object plan is left out; `-o json` has all of it).
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// With `plan` (or `--dry-run`), for CI pipelines: exit 2 when there are changes, 0 when
    /// the store matches the files, 1 on errors (as `terraform plan -detailed-exitcode`).
    #[arg(long)]
    pub exit_code: bool,
    /// Preview as of this time (RFC 3339) instead of now, with `--dry-run` or `plan` only:
    /// see an agreement's start or end coming. What is written is stamped by this machine's clock.
    #[arg(long)]
    pub now: Option<jiff::Timestamp>,
    /// Who is acting, for the audit log. Defaults to `cli:$USER`.
    #[arg(long = "as", env = "SERVICEHUB_ACTOR")]
    pub actor: Option<String>,
    /// After applying, deliver the invitations and notifications it queued (`--deliver=false`
    /// leaves them in the outbox for `servicehub notify`).
    #[arg(long, env = "SERVICEHUB_DELIVER", default_value_t = true, action = clap::ArgAction::Set)]
    pub deliver: bool,
    /// Delivery.
    #[command(flatten)]
    pub notify: super::notify::NotifyArgs,
    /// The store.
    #[command(flatten)]
    pub store: StoreArgs,
}

/// Arguments of `servicehub delete`.
#[derive(clap::Args, Debug)]
pub struct DeleteArgs {
    /// What `apply` takes.
    #[command(flatten)]
    pub apply: ApplyArgs,
    /// Delete without asking, also what the named objects take with them (their
    /// workspaces' memberships, a customer's workspaces): for scripts. At a terminal the
    /// command asks first; elsewhere it refuses such a delete without `--yes`.
    #[arg(long, short = 'y')]
    pub yes: bool,
}

/// What `apply`, `plan` and `delete` work with once the files are read and the store open.
struct Prepared {
    report: validate::Report,
    db: std::sync::Arc<dyn crate::store::Store>,
    opts: Options,
    output: OutputFormat,
    /// The scratch store a preview reads when the named one does not exist yet, removed
    /// when the command is done with it.
    _scratch: Option<ScratchStore>,
}

/// What `apply`, `plan` and `delete` share: validate the files (printing problems), open
/// the store, build the planning context.
async fn prepare(args: ApplyArgs, force_dry_run: bool) -> anyhow::Result<Prepared> {
    let ApplyArgs { paths, dry_run, output, now, actor, store, deliver: _, notify: _, exit_code: _, quiet: _ } = args;
    let dry_run = dry_run || force_dry_run;
    let now = super::clock(now, dry_run, "--now")?;
    let report = validate::validate_paths(&paths, References::MayBeInStore);
    let unreadable: Vec<&validate::Problem> = report.problems.iter().filter(|p| p.is_unreadable()).collect();
    if !unreadable.is_empty() {
        // Nothing else happens: no plan against a partial set, no delivery of what waits.
        if output.is_table() {
            print_problems(&report.problems)?;
        } else {
            let doc = Document { report: &Report::default(), problems: &report.problems, delivery: None };
            super::output::one(&mut std::io::stdout().lock(), output, &doc)?;
        }
        let lines: Vec<String> = unreadable.iter().map(|p| p.to_string()).collect();
        anyhow::bail!("{}; nothing was done", lines.join("; "));
    }
    if output.is_table() {
        print_problems(&report.problems)?;
    }
    let (db, scratch) = if dry_run { preview_store(&store).await? } else { (open_store(&store).await?, None) };
    let actor = super::cli_actor(actor.as_deref());
    let ctx = Context { now, actor };
    Ok(Prepared { report, db, opts: Options { dry_run, ctx, summaries: true }, output, _scratch: scratch })
}

/// The store a preview reads: the named one if it exists; for a SQLite file that does not
/// exist yet, an empty scratch store (so a plan before the first apply shows everything
/// being added, and creates nothing where the user pointed).
async fn preview_store(
    args: &StoreArgs,
) -> anyhow::Result<(std::sync::Arc<dyn crate::store::Store>, Option<ScratchStore>)> {
    let url: crate::store::StoreUrl = args.url.parse()?;
    match url.sqlite_file() {
        Some(file) if !file.exists() => {
            eprintln!("note: store {url} does not exist yet: planning against an empty store (nothing is created)");
            let scratch = ScratchStore::new();
            Ok((crate::store::open(&scratch.url()).await?, Some(scratch)))
        }
        _ => Ok((super::open_existing_store(args).await?, None)),
    }
}

/// A SQLite file in the temporary directory, removed with its WAL and SHM files on drop.
struct ScratchStore(std::path::PathBuf);

impl ScratchStore {
    fn new() -> ScratchStore {
        ScratchStore(std::env::temp_dir().join(format!("servicehub-preview-{}.db", uuid::Uuid::new_v4().simple())))
    }

    fn url(&self) -> String {
        format!("sqlite://{}", self.0.display())
    }
}

impl Drop for ScratchStore {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", self.0.display()));
        }
    }
}

/// What `apply`, `plan` and `delete` print for scripts: one document.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Document<'a> {
    /// Every object the files name, with its changes and status.
    #[serde(flatten)]
    report: &'a Report,
    /// Every problem found in the files: objects refused by validation are here with the
    /// field and the rule, and are not in `objects`.
    problems: &'a [validate::Problem],
    /// What was delivered after applying.
    #[serde(skip_serializing_if = "Option::is_none")]
    delivery: Option<crate::notify::Report>,
}

/// Run `apply` (or `plan` when `force_dry_run`).
pub async fn run(args: ApplyArgs, force_dry_run: bool) -> anyhow::Result<ExitCode> {
    let detailed = args.exit_code;
    if detailed && !(args.dry_run || force_dry_run) {
        return Err(super::Usage("--exit-code goes with plan or --dry-run".into()).into());
    }
    let delivery = (args.deliver && !args.dry_run && !force_dry_run).then(|| args.notify.clone());
    // A misconfigured transport is reported before anything is applied.
    let delivery = delivery.map(|n| n.into_config()).transpose().map_err(anyhow::Error::msg)?.flatten();
    let quiet = args.quiet;
    let Prepared { report, db, mut opts, output, _scratch } = prepare(args, force_dry_run).await?;
    // A quiet table prints counts only: the report need not hold what each change says.
    opts.summaries = !(quiet && output.is_table());
    let (dry_run, invalid) = (opts.dry_run, report.has_errors());
    let progress = Progress::start(report.objects.len(), dry_run, output.is_table());
    let result = engine::run_with_progress(db.as_ref(), &report.objects, &opts, &progress.counters).await;
    drop(progress);
    let result = result?;
    if output.is_table() {
        print_human(&mut std::io::stdout().lock(), &result, &report.problems, dry_run, quiet)?;
    }
    let mut failed = false;
    let mut delivery_report = None;
    if let Some(config) = delivery {
        let dir = match &config.transport {
            crate::notify::transport::TransportConfig::File { dir } => Some(dir.clone()),
            _ => None,
        };
        let notifier = crate::notify::Notifier::new(db.clone(), config).map_err(anyhow::Error::msg)?;
        let delivered = notifier.drain(opts.ctx.now.as_second()).await?;
        failed = delivered.failed > 0;
        if output.is_table() {
            super::notify::print_report(&delivered, output)?;
            if let Some(dir) = dir.filter(|_| delivered.sent > 0) {
                println!("Messages were written as .eml files to {}/", dir.display());
            }
        }
        delivery_report = Some(delivered);
    }
    if !output.is_table() {
        let doc = Document { report: &result, problems: &report.problems, delivery: delivery_report };
        super::output::one(&mut std::io::stdout().lock(), output, &doc)?;
    }
    let changes = result.objects.iter().any(|o| !o.changes.is_empty());
    Ok(if invalid || failed || result.has_failures() {
        ExitCode::FAILURE
    } else if detailed && changes {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

/// Run `delete`.
pub async fn delete(args: DeleteArgs) -> anyhow::Result<ExitCode> {
    let DeleteArgs { apply, yes } = args;
    let Prepared { report, db, mut opts, output, _scratch } = prepare(apply, false).await?;
    let dry_run = opts.dry_run;
    if !dry_run && !yes {
        // Look first: a delete that takes more than the named objects with it is shown,
        // and confirmed at a terminal.
        opts.dry_run = true;
        let preview = engine::delete(db.as_ref(), &report.objects, &opts).await?;
        opts.dry_run = false;
        let more: usize = preview.objects.iter().map(|o| o.also_removes.len()).sum();
        if more > 0 {
            let mut err = std::io::stderr().lock();
            for o in preview.objects.iter().filter(|o| !o.also_removes.is_empty()) {
                writeln!(err, "{} {}/{}:", o.kind, o.namespace, o.name)?;
                print_consequences(&mut err, o)?;
            }
            use std::io::IsTerminal;
            if !std::io::stdin().is_terminal() {
                anyhow::bail!(
                    "this delete also removes {more} row(s) not named in the files (listed above); run it again with --yes to go ahead, or --dry-run to look"
                );
            }
            write!(err, "Delete these {more} row(s) as well? [y/N] ")?;
            err.flush()?;
            let mut answer = String::new();
            std::io::stdin().read_line(&mut answer)?;
            if !matches!(answer.trim(), "y" | "Y" | "yes") {
                writeln!(err, "Nothing was deleted.")?;
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    let result = engine::delete(db.as_ref(), &report.objects, &opts).await?;
    let mut out = std::io::stdout().lock();
    let doc = Document { report: &result, problems: &report.problems, delivery: None };
    if !super::output::one(&mut out, output, &doc)? {
        for o in &result.objects {
            let state = match (&o.error, o.changes.is_empty()) {
                (Some(e), _) => format!("refused: {e}"),
                (None, true) => "not in the store".to_owned(),
                (None, false) => o.changes.iter().map(|c| c.summary.as_str()).collect::<Vec<_>>().join("; "),
            };
            writeln!(out, "{} {}/{}: {state}", o.kind, o.namespace, o.name)?;
            print_consequences(&mut out, o)?;
        }
        if dry_run {
            writeln!(out, "\nDry run: nothing was written.")?;
        } else {
            writeln!(out, "\n{} row(s) written.", result.rows_written)?;
        }
    }
    Ok(if report.has_errors() || result.has_failures() { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

/// What a deletion takes with it, or leaves unmanaged, one line each.
fn print_consequences(out: &mut impl Write, o: &engine::ObjectReport) -> std::io::Result<()> {
    for row in &o.also_removes {
        writeln!(out, "  removes {row}")?;
    }
    for row in &o.keeps_unmanaged {
        writeln!(out, "  keeps (unmanaged) {row}")?;
    }
    Ok(())
}

/// The plan per object (unless `quiet`), then a summary table: every object (with `quiet`,
/// only those that changed or are not Ready), the objects validation refused, and the totals.
fn print_human(
    out: &mut impl Write,
    r: &Report,
    problems: &[validate::Problem],
    dry_run: bool,
    quiet: bool,
) -> std::io::Result<()> {
    let planned = if dry_run { " planned" } else { "" };
    let total: usize = r.objects.iter().map(|o| o.changes.len()).sum();
    if !quiet {
        for o in &r.objects {
            if o.changes.is_empty() {
                continue;
            }
            let n = o.changes.len();
            let plural = if n == 1 { "" } else { "s" };
            writeln!(out, "{} {}/{} ({n} change{plural}{planned}):", o.kind, o.namespace, o.name)?;
            for c in &o.changes {
                writeln!(out, "  {} {}", sign(&c.summary), c.summary)?;
            }
        }
        for o in &r.objects {
            let (listed, count) = o.status.differences();
            if count == 0 {
                continue;
            }
            writeln!(
                out,
                "{} {}/{} (managementPolicy Observe: {count} difference(s), not corrected):",
                o.kind, o.namespace, o.name
            )?;
            for d in listed {
                writeln!(out, "  ! {d}")?;
            }
            if count > listed.len() as i64 {
                writeln!(out, "  ! ... and {} more", count - listed.len() as i64)?;
            }
        }
        let observed = r.objects.iter().any(|o| o.status.differences().1 > 0);
        match (total, observed) {
            (0, false) => writeln!(out, "No changes: the store matches the files.")?,
            (0, true) => writeln!(out, "No changes: what differs is under managementPolicy Observe (listed above).")?,
            _ => {}
        }
        writeln!(out)?;
    }
    let mut rows: Vec<Vec<String>> = Vec::new();
    let (mut ready, mut changed) = (0, 0);
    for o in &r.objects {
        let count = |prefix: &str| o.changes.iter().filter(|c| c.action.starts_with(prefix)).count().to_string();
        let cond = |t: &str| {
            crate::api::conditions::get(o.status.conditions(), t).map(|c| (c.status.clone(), c.message.clone()))
        };
        let (state, message) = match (&o.error, cond("Ready")) {
            _ if o.paused => {
                ("Paused".to_owned(), format!("{}: \"true\": skipped, nothing written", crate::api::PAUSED_ANNOTATION))
            }
            (Some(e), _) => ("Error".to_owned(), e.clone()),
            (None, Some((s, m))) => (s, m),
            (None, None) => ("Unknown".to_owned(), String::new()),
        };
        ready += usize::from(state == "True");
        changed += usize::from(!o.changes.is_empty());
        if quiet && state == "True" && o.changes.is_empty() {
            continue;
        }
        rows.push(vec![
            format!("{}/{}", o.kind, o.name),
            o.namespace.clone(),
            count("grant.add"),
            count("grant.remove"),
            count("invitation.issue"),
            o.changes.iter().filter(|c| c.drift).count().to_string(),
            state,
            message,
        ]);
    }
    // Objects validation refused are not planned: they show here with the rule they broke.
    let mut refused: Vec<&validate::Problem> =
        problems.iter().filter(|p| p.severity == validate::Severity::Error && !p.object.is_empty()).collect();
    refused.dedup_by(|a, b| a.object == b.object && a.file == b.file);
    for p in &refused {
        let message = if p.field.is_empty() { p.message.clone() } else { format!("{}: {}", p.field, p.message) };
        rows.push(vec![
            p.object.clone(),
            "-".into(),
            "-".into(),
            "-".into(),
            "-".into(),
            "-".into(),
            "Refused".into(),
            message,
        ]);
    }
    if !rows.is_empty() {
        let header = ["OBJECT", "NAMESPACE", "GRANTED", "REVOKED", "INVITED", "DRIFT", "READY", "MESSAGE"];
        write!(out, "{}", table::render(&header, &rows))?;
        writeln!(out)?;
    }
    let refused = if refused.is_empty() { String::new() } else { format!(", {} refused", refused.len()) };
    let paused = r.objects.iter().filter(|o| o.paused).count();
    let refused = if paused == 0 { refused } else { format!("{refused}, {paused} paused") };
    let n = r.objects.len();
    write!(out, "{n} object(s): {changed} with changes ({total} change(s){planned}), {ready} Ready{refused}. ")?;
    if dry_run {
        writeln!(out, "Dry run: nothing was written.")?;
    } else {
        writeln!(out, "{} row(s) written.", r.rows_written)?;
    }
    Ok(())
}

/// A progress line on standard error while a large run plans and writes, at a terminal only
/// (a redirected or piped run stays clean), redrawn in place and cleared at the end.
struct Progress {
    counters: std::sync::Arc<engine::Progress>,
    shown: Option<(tokio::task::JoinHandle<()>, usize, &'static str)>,
}

/// Runs of fewer objects finish before a progress line would be read.
const PROGRESS_FROM: usize = 500;

impl Progress {
    fn start(total: usize, dry_run: bool, show: bool) -> Progress {
        use std::io::IsTerminal;
        let counters = std::sync::Arc::new(engine::Progress::default());
        if !show || total < PROGRESS_FROM || !std::io::stderr().is_terminal() {
            return Progress { counters, shown: None };
        }
        let verb = if dry_run { "with changes" } else { "written" };
        Progress::draw(&counters, total, verb);
        let c = counters.clone();
        let ticker = tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                Progress::draw(&c, total, verb);
            }
        });
        Progress { counters, shown: Some((ticker, total, verb)) }
    }

    fn draw(c: &engine::Progress, total: usize, verb: &str) {
        let (planned, written) = c.get();
        eprint!("\r\x1b[K{planned}/{total} object(s) planned, {written} {verb}");
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some((ticker, total, verb)) = self.shown.take() {
            ticker.abort();
            // The last state, then a clean line for what follows.
            Progress::draw(&self.counters, total, verb);
            eprint!("\r\x1b[K");
        }
    }
}

/// `+` for what is added, `-` for what is taken away, `~` for what is updated in place.
fn sign(summary: &str) -> &'static str {
    match summary.split_whitespace().next().unwrap_or_default() {
        "remove" | "revoke" | "delete" | "stop" => "-",
        "update" => "~",
        _ => "+",
    }
}
