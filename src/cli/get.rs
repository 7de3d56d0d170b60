//! `servicehub get` and `servicehub can-i`: what the store holds, readable in a terminal.

use super::{OutputFormat, StoreArgs, open_existing_store, table};
use crate::api::Permission;
use crate::domain::matrix;
use crate::store::AuditFilter;
use std::io::Write;
use std::process::ExitCode;

/// What to list.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Resource {
    /// Customers with counts (also `customer`, `cust`).
    #[value(alias = "customer", alias = "cust")]
    Customers,
    /// Workspaces with member counts (also `workspace`, `ws`).
    #[value(alias = "workspace", alias = "ws")]
    Workspaces,
    /// Memberships with roles (also `membership`, `mbr`).
    #[value(alias = "membership", alias = "mbr")]
    Memberships,
    /// Invitations and their states (also `invitation`).
    #[value(alias = "invitation")]
    Invitations,
    /// Every grant with its source (also `grant`).
    #[value(alias = "grant")]
    Grants,
    /// The audit log (JSON lines with `-o json`).
    Audit,
}

/// The kinds of audit entries, as `--kind` accepts them (any letter case): the four kinds,
/// and the entries of users, invitations and Lockbox requests.
fn audit_kinds() -> impl Iterator<Item = &'static str> {
    crate::api::KINDS.into_iter().chain(["User", "Invitation", "lockbox"])
}

/// Arguments of `servicehub get`.
#[derive(clap::Args, Debug)]
pub struct GetArgs {
    /// What to list: plural, singular or short name, in any letter case.
    #[arg(value_enum, ignore_case = true)]
    pub resource: Resource,
    /// Only this namespace.
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
    /// For `audit`: only entries of this kind (e.g. `Membership`, `Invitation`, `lockbox`).
    #[arg(long)]
    pub kind: Option<String>,
    /// The store.
    #[command(flatten)]
    pub store: StoreArgs,
}

/// Arguments of `servicehub can-i`.
#[derive(clap::Args, Debug)]
pub struct CanIArgs {
    /// The user's email address.
    #[arg(long)]
    pub user: String,
    /// A workspace, as NAMESPACE/NAME.
    #[arg(long, conflicts_with = "customer", required_unless_present = "customer")]
    pub workspace: Option<String>,
    /// A customer, as NAMESPACE/NAME, for customer-level permissions.
    #[arg(long)]
    pub customer: Option<String>,
    /// The permission, e.g. `ManageUsers`.
    pub permission: String,
    /// The store.
    #[command(flatten)]
    pub store: StoreArgs,
}

fn dump<T: serde::Serialize>(out: &mut impl Write, format: OutputFormat, items: &[T]) -> anyhow::Result<bool> {
    match format {
        OutputFormat::Json => writeln!(out, "{}", serde_json::to_string_pretty(items)?)?,
        OutputFormat::Yaml => write!(out, "{}", serde_yaml::to_string(items)?)?,
        OutputFormat::Table => return Ok(false),
    }
    Ok(true)
}

/// Run `get`.
pub async fn get(args: GetArgs) -> anyhow::Result<ExitCode> {
    let GetArgs { resource, namespace, output, kind, store } = args;
    // An unknown kind would match nothing and print an empty table with exit 0.
    let kind = match kind {
        None => None,
        Some(k) => match audit_kinds().find(|a| a.eq_ignore_ascii_case(&k)) {
            Some(a) => Some(a.to_owned()),
            None => {
                let all: Vec<&str> = audit_kinds().collect();
                return Err(super::Usage(format!("--kind: unknown kind {k:?}; one of {}", all.join(", "))).into());
            }
        },
    };
    let db = open_existing_store(&store).await?;
    let ns = namespace.as_deref();
    let mut out = std::io::stdout().lock();
    let time = |t: Option<i64>| t.and_then(crate::plan::rfc3339).unwrap_or_else(|| "-".into());
    let (header, rows): (Vec<&str>, Vec<Vec<String>>) = match resource {
        Resource::Customers => {
            let items = db.customers(ns).await?;
            if dump(&mut out, output, &items)? {
                return Ok(ExitCode::SUCCESS);
            }
            let rows = items
                .iter()
                .map(|c| {
                    let r = &c.record;
                    vec![
                        r.namespace.clone(),
                        r.name.clone(),
                        r.agreement_kind.clone(),
                        r.phase.clone(),
                        c.workspaces.to_string(),
                        c.users.to_string(),
                        c.pending_invitations.to_string(),
                    ]
                })
                .collect();
            (vec!["NAMESPACE", "NAME", "AGREEMENT", "PHASE", "WORKSPACES", "USERS", "PENDING INVITATIONS"], rows)
        }
        Resource::Workspaces => {
            let items = db.workspaces(ns).await?;
            if dump(&mut out, output, &items)? {
                return Ok(ExitCode::SUCCESS);
            }
            let rows = items
                .iter()
                .map(|w| {
                    let r = &w.record;
                    vec![
                        r.namespace.clone(),
                        r.name.clone(),
                        w.customer.clone(),
                        r.is_default.to_string(),
                        r.personal_allowed.to_string(),
                        w.members.to_string(),
                    ]
                })
                .collect();
            (vec!["NAMESPACE", "NAME", "CUSTOMER", "DEFAULT", "PERSONAL ACCOUNTS", "MEMBERS"], rows)
        }
        Resource::Memberships => {
            let items = db.memberships(ns).await?;
            if dump(&mut out, output, &items)? {
                return Ok(ExitCode::SUCCESS);
            }
            let rows = items
                .iter()
                .map(|m| {
                    let r = &m.record;
                    vec![
                        r.namespace.clone(),
                        format!("{}/{}", r.origin, r.name),
                        m.workspace.clone().unwrap_or_else(|| "(customer)".into()),
                        r.subject_key.clone(),
                        r.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(","),
                    ]
                })
                .collect();
            (vec!["NAMESPACE", "FROM", "WORKSPACE", "SUBJECT", "ROLES"], rows)
        }
        Resource::Invitations => {
            let items = db.invitations(ns).await?;
            if dump(&mut out, output, &items)? {
                return Ok(ExitCode::SUCCESS);
            }
            let rows = items
                .iter()
                .map(|i| {
                    let r = &i.record;
                    vec![
                        i.namespace.clone(),
                        i.customer.clone(),
                        i.workspace.clone().unwrap_or_else(|| "(customer)".into()),
                        r.email.clone(),
                        r.state.clone(),
                        r.issue.to_string(),
                        r.attempts.to_string(),
                        time(r.sent_at),
                        time(r.expires_at),
                        r.accepted_by.clone().unwrap_or_default(),
                        r.last_error.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            let header = vec![
                "NAMESPACE",
                "CUSTOMER",
                "WORKSPACE",
                "EMAIL",
                "STATE",
                "ISSUE",
                "ATTEMPTS",
                "SENT",
                "EXPIRES",
                "ACCEPTED BY",
                "LAST ERROR",
            ];
            (header, rows)
        }
        Resource::Grants => {
            let items = db.grants(ns).await?;
            if dump(&mut out, output, &items)? {
                return Ok(ExitCode::SUCCESS);
            }
            let rows = items
                .iter()
                .map(|g| {
                    let ws = match (&g.workspace, g.scope.as_str()) {
                        (Some(w), _) => w.clone(),
                        (None, "workspace") => "(every workspace)".into(),
                        (None, _) => "(customer)".into(),
                    };
                    vec![
                        g.namespace.clone(),
                        ws,
                        g.subject.clone(),
                        g.grant.permission.to_string(),
                        g.grant.source.label(),
                        g.membership.clone(),
                    ]
                })
                .collect();
            (vec!["NAMESPACE", "WORKSPACE", "SUBJECT", "PERMISSION", "SOURCE", "FROM"], rows)
        }
        Resource::Audit => {
            let filter = AuditFilter { kind, namespace, ..Default::default() };
            let items = db.audit(&filter).await?;
            if let OutputFormat::Json = output {
                // JSON lines: one entry per line, for log pipelines and `jq`.
                for e in &items {
                    writeln!(out, "{}", serde_json::to_string(e)?)?;
                }
                return Ok(ExitCode::SUCCESS);
            }
            if dump(&mut out, output, &items)? {
                return Ok(ExitCode::SUCCESS);
            }
            let rows = items
                .iter()
                .map(|e| {
                    vec![
                        e.id.to_string(),
                        time(Some(e.at)),
                        e.actor.clone(),
                        e.action.clone(),
                        e.object.clone(),
                        if e.drift { "drift".into() } else { String::new() },
                    ]
                })
                .collect();
            (vec!["ID", "AT", "ACTOR", "ACTION", "OBJECT", "NOTE"], rows)
        }
    };
    write!(out, "{}", table::render(&header, &rows))?;
    Ok(ExitCode::SUCCESS)
}

fn split(s: &str, what: &str) -> anyhow::Result<(String, String)> {
    s.split_once('/')
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .ok_or_else(|| anyhow::anyhow!("--{what} must be NAMESPACE/NAME, got {s:?}"))
}

/// Run `can-i`: exit 0 and `yes` with the sources, or exit 1 and `no` with what would give it.
pub async fn can_i(args: CanIArgs) -> anyhow::Result<ExitCode> {
    let CanIArgs { user, workspace, customer, permission, store } = args;
    let Some(p) = Permission::parse(&permission) else {
        anyhow::bail!("unknown permission {permission:?}; see `kubectl explain membership.spec.permissions`");
    };
    let db = open_existing_store(&store).await?;
    let subject = user.trim().to_ascii_lowercase();
    let (customer_uid, ws_id, place) = match (&workspace, &customer) {
        (Some(w), _) => {
            let (ns, name) = split(w, "workspace")?;
            let found = db.workspaces(Some(&ns)).await?.into_iter().find(|x| x.record.name == name);
            let Some(found) = found else { anyhow::bail!("workspace {w} is not in the store") };
            (found.record.customer_uid.clone(), Some(found.record.id.clone()), format!("workspace {w}"))
        }
        (None, Some(c)) => {
            let (ns, name) = split(c, "customer")?;
            let found = db.customers(Some(&ns)).await?.into_iter().find(|x| x.record.name == name);
            let Some(found) = found else { anyhow::bail!("customer {c} is not in the store") };
            (found.record.uid.clone(), None, format!("customer {c}"))
        }
        (None, None) => anyhow::bail!("give --workspace NAMESPACE/NAME or --customer NAMESPACE/NAME"),
    };
    let row = matrix::row_of(p);
    let wrong_scope = (row.scope == matrix::Scope::Customer) != ws_id.is_none();
    let views = db.visible_to(&customer_uid, &subject).await?;
    let sources: Vec<String> = views
        .iter()
        .filter(|v| v.workspace_id == ws_id)
        .flat_map(|v| v.grants.iter().filter(|g| g.permission == p).map(|g| g.source.label()))
        .collect();
    let mut out = std::io::stdout().lock();
    if !sources.is_empty() {
        writeln!(out, "yes: {user} holds {p} in {place} through {}", sources.join(", "))?;
        return Ok(ExitCode::SUCCESS);
    }
    let why = if wrong_scope {
        format!("{p} is a {}-level permission; ask with --{}", row.scope.as_str(), row.scope.as_str())
    } else {
        let roles: Vec<&str> = crate::api::Role::ALL
            .into_iter()
            .filter(|r| row.cells[r.column()].access == matrix::Access::Inherited)
            .map(|r| r.as_str())
            .collect();
        let grantable = row.cells[crate::api::Role::User.column()].access == matrix::Access::Grantable;
        format!(
            "it comes with role {}{}",
            if roles.is_empty() { "(none)".to_owned() } else { roles.join(" or ") },
            if grantable { ", or an individual grant" } else { "; it cannot be granted individually" }
        )
    };
    writeln!(out, "no: {user} does not hold {p} in {place}; {why}")?;
    Ok(ExitCode::FAILURE)
}
