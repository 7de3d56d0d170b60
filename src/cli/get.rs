//! `servicehub get` and `servicehub can-i`: what the store holds, readable in a terminal.

use super::{OutputFormat, StoreArgs, open_existing_store, output, table};
use crate::api::Permission;
use crate::domain::matrix;
use crate::domain::rules::Source;
use crate::domain::time::rfc3339;
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
    /// Lockbox policies with their open requests (also `lockboxpolicy`, `lbp`).
    #[value(alias = "lockboxpolicy", alias = "lbp")]
    Lockboxpolicies,
    /// The users each customer knows, with their account type (also `user`).
    #[value(alias = "user")]
    Users,
    /// Invitations and their states (also `invitation`).
    #[value(alias = "invitation")]
    Invitations,
    /// Every grant with its source (also `grant`).
    #[value(alias = "grant")]
    Grants,
    /// The audit log.
    Audit,
    /// Who can see what: `--user EMAIL` for every scope that person reaches, with each
    /// permission's sources and export flag; `--workspace NS/NAME --permission P` for who
    /// holds P there, directly or through a role.
    Access,
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
    /// Output format: a table cut to fit a terminal, `wide` for every cell whole, or a
    /// document (`json`, `jsonl` for one object per line, `yaml`).
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
    /// For `audit`: only entries of this kind (e.g. `Membership`, `Invitation`, `lockbox`).
    #[arg(long)]
    pub kind: Option<String>,
    /// For `access`: the person (email) whose access to list.
    #[arg(long, conflicts_with_all = ["workspace", "permission"])]
    pub user: Option<String>,
    /// For `access`: the workspace, as NAMESPACE/NAME, to list the holders of `--permission` in.
    #[arg(long, requires = "permission")]
    pub workspace: Option<String>,
    /// For `access`: the permission whose holders to list in `--workspace`.
    #[arg(long, requires = "workspace")]
    pub permission: Option<String>,
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
    /// Output format: a sentence (`table`), or a document for scripts (`json`, `jsonl`, `yaml`).
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
    /// The store.
    #[command(flatten)]
    pub store: StoreArgs,
}

/// Widest cells of the cut tables: together with the gaps, about 120 columns.
const SUBJECT: usize = 32;
const NAME: usize = 28;
const WHEN: usize = 20;

/// Run `get`.
pub async fn get(args: GetArgs) -> anyhow::Result<ExitCode> {
    let GetArgs { resource, namespace, output, kind, user, workspace, permission, store } = args;
    let asks_access = user.is_some() || workspace.is_some();
    if asks_access != matches!(resource, Resource::Access) {
        let msg = match asks_access {
            true => "--user, --workspace and --permission go with `get access`",
            false => "`get access` needs --user EMAIL, or --workspace NAMESPACE/NAME with --permission P",
        };
        return Err(super::Usage(msg.to_owned()).into());
    }
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
    let time = |t: Option<i64>| t.map(rfc3339).unwrap_or_else(|| "-".into());
    let wide = output == OutputFormat::Wide;
    // Each arm prints its document and returns, or gives the table: header, rows and the
    // widest each column may be when cut to fit (0: not cut).
    let (header, rows, max): (Vec<&str>, Vec<Vec<String>>, Vec<usize>) = match resource {
        Resource::Customers => {
            let items = db.customers(ns).await?;
            if output::list(&mut out, output, &items)? {
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
            let header = vec!["NAMESPACE", "NAME", "AGREEMENT", "PHASE", "WORKSPACES", "USERS", "PENDING INVITATIONS"];
            (header, rows, vec![NAME, NAME])
        }
        Resource::Workspaces => {
            let items = db.workspaces(ns).await?;
            if output::list(&mut out, output, &items)? {
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
            (vec!["NAMESPACE", "NAME", "CUSTOMER", "DEFAULT", "PERSONAL ACCOUNTS", "MEMBERS"], rows, vec![NAME; 3])
        }
        Resource::Memberships => {
            let items = db.memberships(ns).await?;
            if output::list(&mut out, output, &items)? {
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
            (vec!["NAMESPACE", "FROM", "WORKSPACE", "SUBJECT", "ROLES"], rows, vec![NAME, NAME, NAME, SUBJECT])
        }
        Resource::Lockboxpolicies => {
            let items = db.policies(ns).await?;
            if output::list(&mut out, output, &items)? {
                return Ok(ExitCode::SUCCESS);
            }
            let list = |json: &str, key: Option<&str>| {
                let v: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
                let v = key.map_or(&v, |k| &v[k]);
                let items: Vec<String> =
                    v.as_array().into_iter().flatten().filter_map(|x| x.as_str().map(str::to_owned)).collect();
                if items.is_empty() { "-".to_owned() } else { items.join(",") }
            };
            let rows = items
                .iter()
                .map(|p| {
                    let r = &p.record;
                    let mut approvers = list(&r.approvers, Some("emails"));
                    let roles = list(&r.approvers, Some("roles"));
                    if roles != "-" {
                        approvers = if approvers == "-" { roles } else { format!("{approvers},{roles}") };
                    }
                    vec![
                        r.namespace.clone(),
                        r.name.clone(),
                        p.customer.clone(),
                        r.enabled.to_string(),
                        approvers,
                        crate::domain::lockbox::human(r.pending_ttl_seconds),
                        crate::domain::lockbox::human(r.max_access_seconds),
                        list(&r.workloads, None),
                        p.open_requests.to_string(),
                    ]
                })
                .collect();
            let header = vec![
                "NAMESPACE",
                "NAME",
                "CUSTOMER",
                "ENABLED",
                "APPROVERS",
                "PENDING TTL",
                "MAX ACCESS",
                "WORKLOADS",
                "OPEN",
            ];
            (header, rows, vec![NAME, NAME, NAME, 0, SUBJECT, 0, 0, NAME])
        }
        Resource::Users => {
            let items = db.users(ns).await?;
            if output::list(&mut out, output, &items)? {
                return Ok(ExitCode::SUCCESS);
            }
            let rows = items
                .iter()
                .map(|u| {
                    let r = &u.record;
                    vec![
                        u.namespace.clone(),
                        u.customer.clone(),
                        r.email.clone(),
                        r.display_name.clone(),
                        r.account_type.clone(),
                        u.memberships.to_string(),
                        u.accepted.to_string(),
                    ]
                })
                .collect();
            let header =
                vec!["NAMESPACE", "CUSTOMER", "EMAIL", "DISPLAY NAME", "ACCOUNT TYPE", "MEMBERSHIPS", "ACCEPTED"];
            (header, rows, vec![NAME, NAME, SUBJECT, NAME])
        }
        Resource::Invitations => {
            let items = db.invitations(ns).await?;
            if output::list(&mut out, output, &items)? {
                return Ok(ExitCode::SUCCESS);
            }
            let rows = items
                .iter()
                .map(|i| {
                    let r = &i.record;
                    let mut row = vec![
                        i.namespace.clone(),
                        i.customer.clone(),
                        i.workspace.clone().unwrap_or_else(|| "(customer)".into()),
                        r.email.clone(),
                        r.state.clone(),
                        time(r.expires_at),
                    ];
                    if wide {
                        row.extend([
                            r.issue.to_string(),
                            r.attempts.to_string(),
                            time(r.sent_at),
                            r.accepted_by.clone().unwrap_or_default(),
                            r.last_error.clone().unwrap_or_default(),
                        ]);
                    }
                    row
                })
                .collect();
            let mut header = vec!["NAMESPACE", "CUSTOMER", "WORKSPACE", "EMAIL", "STATE", "EXPIRES"];
            if wide {
                header.extend(["ISSUE", "ATTEMPTS", "SENT", "ACCEPTED BY", "LAST ERROR"]);
            }
            (header, rows, vec![16, 20, NAME, SUBJECT])
        }
        Resource::Grants => {
            let items = db.grants(ns).await?;
            if output::list(&mut out, output, &items)? {
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
                    let source = match g.grant.source {
                        Source::Role(r) => r.to_string(),
                        Source::Individual => "(individual)".into(),
                    };
                    // The matrix's footnote 1 beside the permission (JSON: `exportAllowed`).
                    let permission = match g.export_allowed {
                        true => g.grant.permission.to_string(),
                        false => format!("{} (no export)", g.grant.permission),
                    };
                    let mut row = vec![g.namespace.clone(), ws, g.subject.clone(), permission, source];
                    if wide {
                        row.push(g.membership.clone());
                    }
                    row
                })
                .collect();
            let mut header = vec!["NAMESPACE", "WORKSPACE", "SUBJECT", "PERMISSION", "ROLE"];
            if wide {
                header.push("FROM");
            }
            (header, rows, vec![12, 18, 28, 34, 22])
        }
        Resource::Access => {
            let db = db.as_ref();
            let table = match (&user, &workspace, &permission) {
                (Some(u), _, _) => access_of(db, ns, u, output, &mut out).await?,
                (None, Some(w), Some(p)) => holders(db, w, p, output, &mut out).await?,
                _ => unreachable!("checked above"),
            };
            let Some(table) = table else { return Ok(ExitCode::SUCCESS) };
            table
        }
        Resource::Audit => {
            let filter = AuditFilter { kind, namespace: namespace.clone(), ..Default::default() };
            let entries = db.audit(&filter).await?;
            let names = Names::read(db.as_ref(), &entries).await?;
            let items: Vec<AuditLine> =
                entries.into_iter().map(|entry| AuditLine { object_name: names.of(&entry), entry }).collect();
            if output::list(&mut out, output, &items)? {
                return Ok(ExitCode::SUCCESS);
            }
            let rows = items
                .iter()
                .map(|l| {
                    let e = &l.entry;
                    // A correction of a change made behind the operator's back says so.
                    let action = if e.drift { format!("{} (drift)", e.action) } else { e.action.clone() };
                    let mut row = vec![
                        e.id.to_string(),
                        time(Some(e.at)),
                        e.actor.clone(),
                        action,
                        e.kind.clone(),
                        l.object_name.clone(),
                    ];
                    // How they acted, and what that proved (`-o wide`): the CLI's `--as` is
                    // not authenticated; the console's sign-ins are.
                    if wide {
                        row.push(e.channel.describe().to_owned());
                        row.push(e.subject.clone());
                    }
                    row
                })
                .collect();
            let mut header = vec!["ID", "AT", "ACTOR", "ACTION", "KIND", "OBJECT"];
            if wide {
                header.extend(["CHANNEL", "SUBJECT"]);
            }
            (header, rows, vec![0, WHEN, 18, 24, 13, 36])
        }
    };
    let (mut header, mut rows, mut max) = (header, rows, if wide { Vec::new() } else { max });
    // As `kubectl get -n`: the namespace asked for is not repeated on every row.
    if ns.is_some() && header.first() == Some(&"NAMESPACE") {
        header.remove(0);
        rows.iter_mut().for_each(|r| drop(r.remove(0)));
        if !max.is_empty() {
            max.remove(0);
        }
    }
    write!(out, "{}", table::render_fitted(&header, &rows, &max))?;
    Ok(ExitCode::SUCCESS)
}

/// An audit entry with the name of what it touched, for people and scripts alike.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct AuditLine {
    #[serde(flatten)]
    entry: crate::store::AuditEntry,
    /// `NAMESPACE/NAME` of the object (for rows an object implies, the object's name and
    /// what it implies: `contoso/contoso serviceAdministrator`); a Lockbox request's id.
    object_name: String,
}

/// Object names by the ids audit entries carry (uids, `default:<uid>`, `<uid>/...`): from the
/// store for what exists, and from the entries' own before and after states for what was
/// deleted since.
struct Names(std::collections::HashMap<String, String>);

impl Names {
    async fn read(db: &dyn crate::store::Store, entries: &[crate::store::AuditEntry]) -> anyhow::Result<Names> {
        let mut names = std::collections::HashMap::new();
        let named = |ns: &str, name: &str| format!("{ns}/{name}");
        for c in db.customers(None).await? {
            names.insert(c.record.uid.clone(), named(&c.record.namespace, &c.record.name));
        }
        for w in db.workspaces(None).await? {
            names.insert(w.record.id.clone(), named(&w.record.namespace, &w.record.name));
        }
        for m in db.memberships(None).await? {
            if m.record.origin == "Membership" {
                names.insert(m.record.id.clone(), named(&m.record.namespace, &m.record.name));
            }
        }
        for p in db.policies(None).await? {
            names.insert(p.record.uid.clone(), named(&p.record.namespace, &p.record.name));
        }
        for e in entries {
            for state in [&e.after, &e.before].into_iter().flatten() {
                let Ok(v) = serde_json::from_str::<serde_json::Value>(state) else { continue };
                let id = v.get("uid").or_else(|| v.get("id")).and_then(|x| x.as_str());
                let name = match (v.get("namespace"), v.get("name"), v.get("object")) {
                    (Some(ns), Some(n), _) => ns.as_str().zip(n.as_str()).map(|(ns, n)| named(ns, n)),
                    (_, _, Some(o)) => o.as_str().map(str::to_owned),
                    _ => None,
                };
                if let (Some(id), Some(name)) = (id, name)
                    && !id.contains('/')
                {
                    names.entry(id.to_owned()).or_insert(name);
                }
            }
        }
        Ok(Names(names))
    }

    fn of(&self, e: &crate::store::AuditEntry) -> String {
        if e.kind == "lockbox" {
            return format!("request {}", e.object);
        }
        if let Some(n) = self.0.get(&e.object) {
            return n.clone();
        }
        match e.object.split_once('/') {
            Some((id, rest)) if self.0.contains_key(id) => format!("{} {rest}", self.0[id]),
            _ => e.object.clone(),
        }
    }
}

pub(super) fn split(s: &str, what: &str) -> anyhow::Result<(String, String)> {
    s.split_once('/')
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .ok_or_else(|| anyhow::anyhow!("--{what} must be NAMESPACE/NAME, got {s:?}"))
}

/// Run `can-i`: exit 0 and `yes` with the sources, or exit 1 and `no` with what would give it.
pub async fn can_i(args: CanIArgs) -> anyhow::Result<ExitCode> {
    let CanIArgs { user, workspace, customer, permission, output, store } = args;
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
    let here: Vec<_> = views.iter().filter(|v| v.workspace_id == ws_id).collect();
    let sources: Vec<String> =
        here.iter().flat_map(|v| v.grants.iter().filter(|g| g.permission == p).map(|g| g.source.label())).collect();
    let allowed = !sources.is_empty();
    let export_allowed = allowed && !here.iter().any(|v| v.no_export.contains(&p));
    let why = if allowed {
        let export = if export_allowed { "" } else { "; may view, not export (Microsoft role, matrix footnote 1)" };
        format!("{user} holds {p} in {place} through {}{export}", sources.join(", "))
    } else if wrong_scope {
        format!(
            "{user} does not hold {p} in {place}; {p} is a {}-level permission; ask with --{}",
            row.scope.as_str(),
            row.scope.as_str()
        )
    } else {
        let roles: Vec<&str> = crate::api::Role::ALL
            .into_iter()
            .filter(|r| row.cells[r.column()].access == matrix::Access::Inherited)
            .map(|r| r.as_str())
            .collect();
        let grantable = row.cells[crate::api::Role::User.column()].access == matrix::Access::Grantable;
        format!(
            "{user} does not hold {p} in {place}; it comes with role {}{}",
            if roles.is_empty() { "(none)".to_owned() } else { roles.join(" or ") },
            if grantable { ", or an individual grant" } else { "; it cannot be granted individually" }
        )
    };
    let mut out = std::io::stdout().lock();
    let answer = CanI {
        allowed,
        user: subject,
        permission: p.to_string(),
        scope: row.scope.as_str(),
        workspace: workspace.clone(),
        customer: customer.filter(|_| workspace.is_none()),
        sources,
        export_allowed,
        reason: why.clone(),
    };
    if !output::one(&mut out, output, &answer)? {
        writeln!(out, "{}: {why}", if allowed { "yes" } else { "no" })?;
    }
    Ok(if allowed { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// The answer of `can-i` for scripts.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct CanI {
    /// Whether the user holds the permission there.
    allowed: bool,
    /// The user (normalized email).
    user: String,
    /// The permission.
    permission: String,
    /// `workspace` or `customer`: where the permission applies.
    scope: &'static str,
    /// The workspace asked about (`NAMESPACE/NAME`).
    #[serde(skip_serializing_if = "Option::is_none")]
    workspace: Option<String>,
    /// The customer asked about (`NAMESPACE/NAME`).
    #[serde(skip_serializing_if = "Option::is_none")]
    customer: Option<String>,
    /// Where it comes from: `role:<Role>` or `individual`, one per source.
    sources: Vec<String>,
    /// Whether the user may export this data too; `false` when not held, and for data a
    /// Microsoft role may see and not export (the matrix's footnote 1).
    export_allowed: bool,
    /// The sentence a person reads.
    reason: String,
}

/// A table to print: header, rows and the widest each column may be when cut to fit.
type Table = (Vec<&'static str>, Vec<Vec<String>>, Vec<usize>);

/// Write `items` as the document `output` asks for, or, when a table would have no rows,
/// the sentence `nothing` gives instead; `true` when written (no table follows).
fn written_instead_of_table<T: serde::Serialize>(
    out: &mut impl Write,
    output: OutputFormat,
    items: &[T],
    nothing: impl FnOnce() -> String,
) -> anyhow::Result<bool> {
    if output::list(out, output, items)? {
        return Ok(true);
    }
    if items.is_empty() {
        writeln!(out, "{}", nothing())?;
        return Ok(true);
    }
    Ok(false)
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_owned()
}

/// `get access --user EMAIL`: every scope of every customer the person reaches (the seeds'
/// "All workspaces" view), each permission with its sources and export flag.
async fn access_of(
    db: &dyn crate::store::Store,
    ns: Option<&str>,
    user: &str,
    output: OutputFormat,
    out: &mut impl Write,
) -> anyhow::Result<Option<Table>> {
    let subject = user.trim().to_ascii_lowercase();
    let customers = db.customers(ns).await?;
    let items = crate::access::lines(db, &customers, std::slice::from_ref(&subject)).await?;
    let nothing =
        || format!("{subject} holds nothing in {}", ns.map_or("any namespace".into(), |n| format!("namespace {n}")));
    if written_instead_of_table(out, output, &items, nothing)? {
        return Ok(None);
    }
    let rows = items
        .iter()
        .map(|a| {
            vec![
                a.namespace.clone(),
                a.customer.clone(),
                a.workspace.clone().unwrap_or_else(|| "(customer)".into()),
                a.permission.to_string(),
                a.sources.join(", "),
                yes_no(a.export_allowed),
            ]
        })
        .collect();
    let header = vec!["NAMESPACE", "CUSTOMER", "WORKSPACE", "PERMISSION", "SOURCES", "EXPORT"];
    Ok(Some((header, rows, vec![12, 16, 18, 34, 30, 6])))
}

/// `get access --workspace NS/NAME --permission P`: who holds P there, directly or through a
/// role, including customer-level members whose permission reaches every workspace.
async fn holders(
    db: &dyn crate::store::Store,
    workspace: &str,
    permission: &str,
    output: OutputFormat,
    out: &mut impl Write,
) -> anyhow::Result<Option<Table>> {
    let (ns, name) = split(workspace, "workspace")?;
    let items = match crate::access::holders(db, &ns, &name, permission).await {
        Ok(items) => items,
        Err(e @ crate::access::HoldersError::UnknownPermission(_)) => anyhow::bail!("--permission: {e}"),
        Err(e @ crate::access::HoldersError::UnknownWorkspace(_)) => anyhow::bail!("--workspace: {e}"),
        Err(crate::access::HoldersError::Store(e)) => return Err(e.into()),
    };
    let p = permission;
    if written_instead_of_table(out, output, &items, || format!("nobody holds {p} in workspace {workspace}"))? {
        return Ok(None);
    }
    let rows = items
        .iter()
        .map(|g| {
            vec![
                g.subject.clone(),
                g.grant.source.label(),
                if g.workspace.is_some() { "workspace" } else { "customer (every workspace)" }.to_owned(),
                g.membership.clone(),
                yes_no(g.export_allowed),
            ]
        })
        .collect();
    let header = vec!["SUBJECT", "SOURCE", "THROUGH", "FROM", "EXPORT"];
    Ok(Some((header, rows, vec![34, 34, 26, 30, 6])))
}
