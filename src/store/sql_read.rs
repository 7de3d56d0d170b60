//! Read queries of the SQL store: the per-customer snapshot and the views behind `get`,
//! `can-i` and the "All workspaces" view.

use super::records::*;
use super::snapshot::{Snapshot, Versioned};
use super::sql::{Map, Sql, get, grant, in_list, map_err, role};
use super::{AuditFilter, Focus, Result};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool, AssertSqlSafe};
use std::collections::BTreeMap;

const CUSTOMER_COLS: &str = "uid, namespace, name, display_name, agreement_kind, agreement_id, start_date, end_date, \
    administration_model, admin_group_id, settings, newsletters, phase, deletion_policy, spec_hash, applied_spec, row_version";
const WORKSPACE_COLS: &str = "w.id, w.customer_uid, w.namespace, w.name, w.origin, w.display_name, w.description, \
    CASE WHEN w.is_default THEN 1 ELSE 0 END AS is_default, \
    CASE WHEN w.allow_personal IS NULL THEN NULL WHEN w.allow_personal THEN 1 ELSE 0 END AS allow_personal, \
    CASE WHEN w.personal_allowed THEN 1 ELSE 0 END AS personal_allowed, \
    w.support_benefits, w.deletion_policy, w.spec_hash, w.applied_spec, w.row_version";
const MEMBERSHIP_COLS: &str = "m.id, m.customer_uid, m.workspace_id, m.origin, m.namespace, m.name, m.subject_kind, \
    m.subject_key, m.deletion_policy, m.spec_hash, m.applied_spec, m.row_version";
const INVITATION_COLS: &str = "i.customer_uid, i.membership_id, i.scope_key, i.subject_key, i.email, i.issue, \
    i.state, i.attempts, i.created_at, i.sent_at, i.expires_at, i.accepted_at, \
    i.accepted_by, i.last_error";

/// A focus's invitations and users in one statement, as its two halves (each followed by
/// the customer's bound uid and an `IN` list): the invitations' columns with the users' two
/// after them, then each user in the same columns, its `customer_uid` and `email` where an
/// invitation has them and NULL elsewhere; `kind` tells the rows apart. The users' half is
/// derived from `INVITATION_COLS`, so the two cannot drift apart.
static PEOPLE: std::sync::LazyLock<(String, String)> = std::sync::LazyLock::new(|| {
    let padded: Vec<&str> = INVITATION_COLS
        .split(',')
        .map(|c| match c.trim() {
            "i.customer_uid" => "u.customer_uid",
            "i.email" => "u.email",
            _ => "NULL",
        })
        .collect();
    (
        format!(
            "SELECT 'invitation' AS kind, {INVITATION_COLS}, NULL AS display_name, NULL AS account_type \
             FROM invitations i WHERE i.customer_uid = "
        ),
        format!(
            " UNION ALL SELECT 'user', {}, u.display_name, u.account_type FROM users u WHERE u.customer_uid = ",
            padded.join(", ")
        ),
    )
});

const POLICY_COLS: &str = "p.uid, p.customer_uid, p.namespace, p.name, CASE WHEN p.enabled THEN 1 ELSE 0 END AS enabled, \
    p.approvers, p.pending_ttl_seconds, p.max_access_seconds, p.workloads, p.recipients, p.spec_hash, p.applied_spec, p.row_version";

fn policy(r: &AnyRow) -> Result<PolicyRecord> {
    Ok(PolicyRecord {
        uid: get(r, "uid")?,
        customer_uid: get(r, "customer_uid")?,
        namespace: get(r, "namespace")?,
        name: get(r, "name")?,
        enabled: get::<i64>(r, "enabled")? != 0,
        approvers: get(r, "approvers")?,
        pending_ttl_seconds: get(r, "pending_ttl_seconds")?,
        max_access_seconds: get(r, "max_access_seconds")?,
        workloads: get(r, "workloads")?,
        recipients: get(r, "recipients")?,
        spec_hash: get(r, "spec_hash")?,
        applied_spec: get(r, "applied_spec")?,
    })
}

fn user(r: &AnyRow) -> Result<UserRecord> {
    Ok(UserRecord {
        customer_uid: get(r, "customer_uid")?,
        email: get(r, "email")?,
        display_name: get(r, "display_name")?,
        account_type: get(r, "account_type")?,
    })
}

fn customer(r: &AnyRow) -> Result<CustomerRecord> {
    Ok(CustomerRecord {
        uid: get(r, "uid")?,
        namespace: get(r, "namespace")?,
        name: get(r, "name")?,
        display_name: get(r, "display_name")?,
        agreement_kind: get(r, "agreement_kind")?,
        agreement_id: get(r, "agreement_id")?,
        start_date: get(r, "start_date")?,
        end_date: get(r, "end_date")?,
        administration_model: get(r, "administration_model")?,
        admin_group_id: get(r, "admin_group_id")?,
        settings: get(r, "settings")?,
        newsletters: get(r, "newsletters")?,
        phase: get(r, "phase")?,
        deletion_policy: get(r, "deletion_policy")?,
        spec_hash: get(r, "spec_hash")?,
        applied_spec: get(r, "applied_spec")?,
    })
}

fn workspace(r: &AnyRow) -> Result<WorkspaceRecord> {
    Ok(WorkspaceRecord {
        id: get(r, "id")?,
        customer_uid: get(r, "customer_uid")?,
        namespace: get(r, "namespace")?,
        name: get(r, "name")?,
        origin: get(r, "origin")?,
        display_name: get(r, "display_name")?,
        description: get(r, "description")?,
        is_default: get::<i64>(r, "is_default")? != 0,
        allow_personal: get::<Option<i64>>(r, "allow_personal")?.map(|v| v != 0),
        personal_allowed: get::<i64>(r, "personal_allowed")? != 0,
        support_benefits: get(r, "support_benefits")?,
        deletion_policy: get(r, "deletion_policy")?,
        spec_hash: get(r, "spec_hash")?,
        applied_spec: get(r, "applied_spec")?,
    })
}

fn membership(r: &AnyRow) -> Result<MembershipRecord> {
    Ok(MembershipRecord {
        id: get(r, "id")?,
        customer_uid: get(r, "customer_uid")?,
        workspace_id: get(r, "workspace_id")?,
        origin: get(r, "origin")?,
        namespace: get(r, "namespace")?,
        name: get(r, "name")?,
        subject_kind: get(r, "subject_kind")?,
        subject_key: get(r, "subject_key")?,
        deletion_policy: get(r, "deletion_policy")?,
        spec_hash: get(r, "spec_hash")?,
        applied_spec: get(r, "applied_spec")?,
        roles: Default::default(),
        grants: Default::default(),
    })
}

fn invitation(r: &AnyRow) -> Result<InvitationRecord> {
    Ok(InvitationRecord {
        customer_uid: get(r, "customer_uid")?,
        membership_id: get(r, "membership_id")?,
        scope_key: get(r, "scope_key")?,
        subject_key: get(r, "subject_key")?,
        email: get(r, "email")?,
        issue: get(r, "issue")?,
        state: get(r, "state")?,
        attempts: get(r, "attempts")?,
        created_at: get(r, "created_at")?,
        sent_at: get(r, "sent_at")?,
        expires_at: get(r, "expires_at")?,
        accepted_at: get(r, "accepted_at")?,
        accepted_by: get(r, "accepted_by")?,
        last_error: get(r, "last_error")?,
    })
}

/// Bound values per statement in `IN (...)` lists: far below SQLite's and PostgreSQL's
/// parameter limits, and short enough for the planners to use the index per value.
const IN_CHUNK: usize = 500;

/// The memberships a focus reads (always a superset of what its planner looks at), each
/// selected through an index: by id, by (customer, workspace), or by customer.
async fn focused_memberships(conn: &mut AnyConnection, snap: &Snapshot, c: &str, focus: &Focus) -> Result<Vec<AnyRow>> {
    let base = format!("SELECT {MEMBERSHIP_COLS} FROM memberships m WHERE m.customer_uid = $1 AND m.managed");
    let q = |extra: &str| format!("{base}{extra}");
    let rows = match focus {
        Focus::All => sqlx::query(AssertSqlSafe(base.clone())).bind(c).fetch_all(&mut *conn).await,
        Focus::Customer => {
            sqlx::query(AssertSqlSafe(q(" AND m.origin = 'Customer'"))).bind(c).fetch_all(&mut *conn).await
        }
        Focus::Workspace { id, .. } => {
            sqlx::query(AssertSqlSafe(q(" AND m.workspace_id = $2"))).bind(c).bind(id).fetch_all(&mut *conn).await
        }
        Focus::NoMemberships => Ok(Vec::new()),
        Focus::Membership { id, workspace, .. } => {
            // Itself and, in the same statement, the Workspace Administrators of its
            // workspace, old and new: the last-administrator rule reads them, and only when
            // the stored membership is a Workspace Administrator itself (the rule is about it
            // losing the role). The condition on $2's role is the same for every row, so the
            // database tests it once (SQLite codes it outside the loop, PostgreSQL as a
            // one-time filter) and, for any other membership, reads none. Each branch goes
            // through an index: by id, and by (customer, workspace) for the workspace it names (in
            // the snapshot already) and the one its stored row is in.
            let sql = q(&format!(
                " AND m.id = $2 UNION ALL {base} AND m.id <> $2 \
                 AND EXISTS (SELECT 1 FROM role_assignments s WHERE s.membership_id = $2 AND s.role = 'WorkspaceAdministrator') \
                 AND m.workspace_id IN ($3, (SELECT o.workspace_id FROM memberships o WHERE o.id = $2 \
                 AND o.customer_uid = $1 AND o.managed)) \
                 AND EXISTS (SELECT 1 FROM role_assignments r WHERE r.membership_id = m.id AND r.role = 'WorkspaceAdministrator')"
            ));
            let named = workspace.as_ref().and_then(|n| snap.workspace_named(n)).map(|w| w.record.id.clone());
            sqlx::query(AssertSqlSafe(sql)).bind(c).bind(id).bind(named).fetch_all(&mut *conn).await
        }
    };
    rows.map_err(map_err)
}

/// The snapshot a focus reads, on one connection: a reconcile's 4-5 statements take the pool
/// once, not once each (on PostgreSQL each acquire is a round trip of its own).
pub(super) async fn load(pool: &AnyPool, namespace: &str, name: &str, focus: &Focus) -> Result<Snapshot> {
    let mut conn = pool.acquire().await.map_err(map_err)?;
    load_on(&mut conn, namespace, name, focus).await
}

async fn load_on(conn: &mut AnyConnection, namespace: &str, name: &str, focus: &Focus) -> Result<Snapshot> {
    let sql = format!("SELECT {CUSTOMER_COLS} FROM customers WHERE namespace = $1 AND name = $2 AND managed");
    let Some(row) = sqlx::query(AssertSqlSafe(sql.clone()))
        .bind(namespace)
        .bind(name)
        .fetch_optional(&mut *conn)
        .await
        .map_err(map_err)?
    else {
        return Ok(Snapshot::default());
    };
    let c = customer(&row)?;
    let uid = c.uid.clone();
    let mut snap = Snapshot { customer: Some(Versioned::new(get(&row, "row_version")?, c)), ..Default::default() };

    // A Membership's planner looks at the workspace it names and the one its stored row is
    // in (a moved membership), never at the others: a customer's 1,000 workspaces are not
    // read for each of its memberships.
    let all = format!("SELECT {WORKSPACE_COLS} FROM workspaces w WHERE w.customer_uid = $1 AND w.managed");
    let workspaces = match focus {
        Focus::Membership { id, workspace, .. } => {
            // Each branch through an index: by (namespace, name), and by id. (One `OR` of
            // the two scanned the customer's whole name index, 1,000 entries per read at
            // 1,000 Workspaces, on SQLite.)
            let sql = format!(
                "{all} AND w.namespace = $4 AND w.name = $2 UNION ALL {all} AND w.id = \
                 (SELECT m.workspace_id FROM memberships m WHERE m.id = $3 AND m.customer_uid = $1)"
            );
            let named = workspace.as_deref().unwrap_or_default();
            sqlx::query(AssertSqlSafe(sql)).bind(&uid).bind(named).bind(id).bind(namespace).fetch_all(&mut *conn).await
        }
        _ => sqlx::query(AssertSqlSafe(all)).bind(&uid).fetch_all(&mut *conn).await,
    };
    for r in workspaces.map_err(map_err)? {
        let w = workspace(&r)?;
        snap.workspaces.insert(w.id.clone(), Versioned::new(get(&r, "row_version")?, w));
    }
    for r in focused_memberships(conn, &snap, &uid, focus).await? {
        let m = membership(&r)?;
        snap.memberships.insert(m.id.clone(), Versioned::new(get(&r, "row_version")?, m));
    }
    let everything = matches!(focus, Focus::All);
    let add_role = |snap: &mut Snapshot, id: String, role_name: &str| -> Result<()> {
        if let Some(m) = snap.memberships.get_mut(&id) {
            std::sync::Arc::make_mut(&mut m.record).roles.insert(role(role_name)?);
        }
        Ok(())
    };
    let add_grant = |snap: &mut Snapshot, id: String, permission: &str, source: &str| -> Result<()> {
        if let Some(m) = snap.memberships.get_mut(&id) {
            std::sync::Arc::make_mut(&mut m.record).grants.insert(grant(permission, source)?);
        }
        Ok(())
    };
    if everything {
        // Row by row as they arrive: a large customer's grants are not all held as rows first.
        let roles = "SELECT r.membership_id, r.role FROM role_assignments r JOIN memberships m ON m.id = r.membership_id \
                     WHERE m.customer_uid = $1 AND m.managed";
        let grants = "SELECT g.membership_id, g.permission, g.source FROM grants g \
                      JOIN memberships m ON m.id = g.membership_id WHERE m.customer_uid = $1 AND m.managed";
        each_row(sqlx::query(roles).bind(&uid), conn, |r| {
            add_role(&mut snap, get(&r, "membership_id")?, &get::<String>(&r, "role")?)
        })
        .await?;
        each_row(sqlx::query(grants).bind(&uid), conn, |r| {
            add_grant(
                &mut snap,
                get(&r, "membership_id")?,
                &get::<String>(&r, "permission")?,
                &get::<String>(&r, "source")?,
            )
        })
        .await?;
    } else {
        // Roles and grants in one statement (a round trip fewer per read): a role's row has
        // no source, a grant's always has one.
        let ids: Vec<String> = snap.memberships.keys().cloned().collect();
        for chunk in ids.chunks(IN_CHUNK) {
            let mut qb = Sql::new(
                "SELECT membership_id, role AS value, NULL AS source FROM role_assignments WHERE membership_id",
            );
            in_list(&mut qb, chunk);
            qb.push(" UNION ALL SELECT membership_id, permission, source FROM grants WHERE membership_id");
            in_list(&mut qb, chunk);
            for r in qb.build().fetch_all(&mut *conn).await.map_err(map_err)? {
                let (id, value) = (get(&r, "membership_id")?, get::<String>(&r, "value")?);
                match get::<Option<String>>(&r, "source")? {
                    None => add_role(&mut snap, id, &value)?,
                    Some(source) => add_grant(&mut snap, id, &value, &source)?,
                }
            }
        }
    }
    // Users and invitations: all of them for a Customer (its status counts them), else those
    // of the subjects the focus names and of the memberships it loaded.
    let all_people = matches!(focus, Focus::All | Focus::Customer);
    let mut subjects: Vec<String> = focus.subjects().to_vec();
    subjects.extend(snap.memberships.values().map(|m| m.record.subject_key.clone()));
    subjects.sort();
    subjects.dedup();
    let add_user = |snap: &mut Snapshot, r: &AnyRow| -> Result<()> {
        let u = user(r)?;
        snap.users.insert(u.email.clone(), u.into());
        Ok(())
    };
    let add_invitation = |snap: &mut Snapshot, r: &AnyRow| -> Result<()> {
        let i = invitation(r)?;
        snap.invitations.insert((i.scope_key.clone(), i.subject_key.clone()), i.into());
        Ok(())
    };
    if all_people {
        let users = "SELECT customer_uid, email, display_name, account_type FROM users WHERE customer_uid = $1";
        each_row(sqlx::query(users).bind(&uid), conn, |r| add_user(&mut snap, &r)).await?;
        let sql = format!("SELECT {INVITATION_COLS} FROM invitations i WHERE i.customer_uid = $1");
        each_row(sqlx::query(AssertSqlSafe(sql)).bind(&uid), conn, |r| add_invitation(&mut snap, &r)).await?;
    } else {
        // Both in one statement per chunk (a round trip fewer per read; see `PEOPLE`).
        for chunk in subjects.chunks(IN_CHUNK) {
            let (invitations, users) = &*PEOPLE;
            let mut qb = Sql::new(invitations.as_str());
            qb.bind(uid.as_str()).push(" AND i.subject_key");
            in_list(&mut qb, chunk);
            qb.push(users).bind(uid.as_str()).push(" AND u.email");
            in_list(&mut qb, chunk);
            for r in qb.build().fetch_all(&mut *conn).await.map_err(map_err)? {
                match get::<String>(&r, "kind")?.as_str() {
                    "user" => add_user(&mut snap, &r)?,
                    _ => add_invitation(&mut snap, &r)?,
                }
            }
        }
    }
    // Policies: read by a LockboxPolicy's plan and a Customer's deletion (both `NoMemberships`)
    // and by bulk runs, never by a Customer's, Workspace's or Membership's plan: one query
    // fewer in each of the two reads a Membership costs the controller.
    if matches!(focus, Focus::All | Focus::NoMemberships) {
        let sql = format!("SELECT {POLICY_COLS} FROM lockbox_policies p WHERE p.customer_uid = $1 AND p.managed");
        for r in sqlx::query(AssertSqlSafe(sql)).bind(&uid).fetch_all(&mut *conn).await.map_err(map_err)? {
            let p = policy(&r)?;
            snap.policies.insert(p.uid.clone(), Versioned::new(get(&r, "row_version")?, p));
        }
    }
    Ok(snap)
}

/// Run `query` and hand each row to `f` as it arrives.
async fn each_row<'q>(
    query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    conn: &mut AnyConnection,
    mut f: impl FnMut(AnyRow) -> Result<()>,
) -> Result<()> {
    use futures::TryStreamExt;
    let mut rows = query.fetch(conn);
    while let Some(r) = rows.try_next().await.map_err(map_err)? {
        f(r)?;
    }
    Ok(())
}

/// `WHERE`/`AND` clause on a namespace column, binding the namespace when given.
fn namespace_filter(qb: &mut Sql, column: &str, namespace: Option<&str>, first: bool) {
    if let Some(ns) = namespace {
        qb.push(if first { " WHERE " } else { " AND " }).push(column).push(" = ").bind(ns);
    }
}

pub(super) async fn customers(pool: &AnyPool, namespace: Option<&str>) -> Result<Vec<CustomerRow>> {
    let mut qb = Sql::new(format!(
        "SELECT {CUSTOMER_COLS}, \
         (SELECT COUNT(*) FROM workspaces w WHERE w.customer_uid = c.uid AND w.managed) AS n_workspaces, \
         (SELECT COUNT(*) FROM users u WHERE u.customer_uid = c.uid) AS n_users, \
         (SELECT COUNT(*) FROM invitations i WHERE i.customer_uid = c.uid AND i.state IN ('Pending', 'Sent')) AS n_pending \
         FROM customers c WHERE c.managed"
    ));
    namespace_filter(&mut qb, "c.namespace", namespace, false);
    qb.push(" ORDER BY c.namespace, c.name");
    let rows = qb.build().fetch_all(pool).await.map_err(map_err)?;
    rows.iter()
        .map(|r| {
            Ok(CustomerRow {
                record: customer(r)?,
                workspaces: get(r, "n_workspaces")?,
                users: get(r, "n_users")?,
                pending_invitations: get(r, "n_pending")?,
            })
        })
        .collect()
}

pub(super) async fn workspaces(pool: &AnyPool, namespace: Option<&str>) -> Result<Vec<WorkspaceRow>> {
    let mut qb = Sql::new(format!(
        "SELECT {WORKSPACE_COLS}, c.name AS customer, \
         (SELECT COUNT(DISTINCT m.subject_key) FROM memberships m WHERE m.workspace_id = w.id) AS n_members \
         FROM workspaces w JOIN customers c ON c.uid = w.customer_uid WHERE w.managed"
    ));
    namespace_filter(&mut qb, "w.namespace", namespace, false);
    qb.push(" ORDER BY w.namespace, w.name");
    let rows = qb.build().fetch_all(pool).await.map_err(map_err)?;
    rows.iter()
        .map(|r| {
            Ok(WorkspaceRow { record: workspace(r)?, customer: get(r, "customer")?, members: get(r, "n_members")? })
        })
        .collect()
}

pub(super) async fn memberships(pool: &AnyPool, namespace: Option<&str>) -> Result<Vec<MembershipRow>> {
    let mut qb = Sql::new(format!(
        "SELECT {MEMBERSHIP_COLS}, c.name AS customer, w.name AS workspace FROM memberships m \
         JOIN customers c ON c.uid = m.customer_uid LEFT JOIN workspaces w ON w.id = m.workspace_id WHERE m.managed"
    ));
    namespace_filter(&mut qb, "m.namespace", namespace, false);
    qb.push(" ORDER BY m.namespace, m.name, m.id");
    let rows = qb.build().fetch_all(pool).await.map_err(map_err)?;
    let mut out: Vec<MembershipRow> = rows
        .iter()
        .map(|r| {
            Ok(MembershipRow { record: membership(r)?, customer: get(r, "customer")?, workspace: get(r, "workspace")? })
        })
        .collect::<Result<_>>()?;
    let index: BTreeMap<String, usize> = out.iter().enumerate().map(|(i, m)| (m.record.id.clone(), i)).collect();
    let mut qb = Sql::new(
        "SELECT r.membership_id, r.role FROM role_assignments r JOIN memberships m ON m.id = r.membership_id \
         WHERE m.managed",
    );
    namespace_filter(&mut qb, "m.namespace", namespace, false);
    for r in qb.build().fetch_all(pool).await.map_err(map_err)? {
        if let Some(i) = index.get(&get::<String>(&r, "membership_id")?) {
            out[*i].record.roles.insert(role(&get::<String>(&r, "role")?)?);
        }
    }
    Ok(out)
}

/// Which invitations a read returns: a namespace's (all when `None`), or one subject's in
/// one customer.
pub(super) enum Invitations<'a> {
    Namespace(Option<&'a str>),
    Subject { customer_uid: &'a str, subject_key: &'a str },
}

/// Which grants a read returns: a namespace's (all when `None`), or those of one permission
/// that hold in one workspace.
pub(super) enum Grants<'a> {
    Namespace(Option<&'a str>),
    Holders { customer_uid: &'a str, workspace_id: &'a str, permission: &'a str },
}

pub(super) async fn invitations(pool: &AnyPool, rows: Invitations<'_>) -> Result<Vec<InvitationRow>> {
    let mut qb = Sql::new(format!(
        "SELECT {INVITATION_COLS}, c.namespace AS namespace, c.name AS customer, w.name AS workspace \
         FROM invitations i JOIN customers c ON c.uid = i.customer_uid LEFT JOIN workspaces w ON w.id = i.scope_key"
    ));
    match rows {
        Invitations::Namespace(namespace) => namespace_filter(&mut qb, "c.namespace", namespace, true),
        Invitations::Subject { customer_uid, subject_key } => {
            qb.push(" WHERE i.customer_uid = ").bind(customer_uid).push(" AND i.subject_key = ").bind(subject_key);
        }
    }
    qb.push(" ORDER BY c.namespace, c.name, i.scope_key, i.subject_key");
    let rows = qb.build().fetch_all(pool).await.map_err(map_err)?;
    rows.iter()
        .map(|r| {
            Ok(InvitationRow {
                record: invitation(r)?,
                namespace: get(r, "namespace")?,
                customer: get(r, "customer")?,
                workspace: get(r, "workspace")?,
            })
        })
        .collect()
}

pub(super) async fn grants(pool: &AnyPool, rows: Grants<'_>) -> Result<Vec<GrantRow>> {
    let mut qb = Sql::new(format!(
        "SELECT c.namespace AS namespace, c.name AS customer, w.name AS workspace, g.scope, m.subject_key, \
             g.permission, g.source, m.origin, m.name AS object, {} AS microsoft FROM grants g \
             JOIN memberships m ON m.id = g.membership_id JOIN customers c ON c.uid = m.customer_uid \
             LEFT JOIN workspaces w ON w.id = m.workspace_id",
        microsoft_membership("m")
    ));
    match rows {
        Grants::Namespace(namespace) => namespace_filter(&mut qb, "c.namespace", namespace, true),
        // In the workspace, and customer-level grants of workspace scope (they reach every
        // workspace): through the memberships_customer index.
        Grants::Holders { customer_uid, workspace_id, permission } => {
            qb.push(" WHERE m.customer_uid = ").bind(customer_uid).push(" AND g.permission = ").bind(permission);
            qb.push(" AND (m.workspace_id = ").bind(workspace_id);
            qb.push(" OR (m.workspace_id IS NULL AND g.scope = 'workspace'))");
        }
    }
    qb.push(" ORDER BY c.namespace, c.name, w.name, m.subject_key, g.permission, g.source");
    let rows = qb.build().fetch_all(pool).await.map_err(map_err)?;
    rows.iter()
        .map(|r| {
            let grant = grant(&get::<String>(r, "permission")?, &get::<String>(r, "source")?)?;
            Ok(GrantRow {
                namespace: get(r, "namespace")?,
                customer: get(r, "customer")?,
                workspace: get(r, "workspace")?,
                scope: get(r, "scope")?,
                subject: get(r, "subject_key")?,
                grant,
                membership: format!("{}/{}", get::<String>(r, "origin")?, get::<String>(r, "object")?),
                export_allowed: !(get::<i64>(r, "microsoft")? != 0
                    && crate::domain::matrix::export_restricted(grant.permission)),
            })
        })
        .collect()
}

pub(super) async fn users(pool: &AnyPool, namespace: Option<&str>) -> Result<Vec<UserRow>> {
    let mut qb = Sql::new(
        "SELECT u.customer_uid, u.email, u.display_name, u.account_type, c.namespace, c.name AS customer, \
         (SELECT COUNT(*) FROM memberships m WHERE m.customer_uid = u.customer_uid AND m.subject_key = u.email \
          AND m.managed) AS n_memberships, \
         (SELECT COUNT(*) FROM invitations i WHERE i.customer_uid = u.customer_uid AND i.subject_key = u.email \
          AND i.state = 'Accepted') AS n_accepted \
         FROM users u JOIN customers c ON c.uid = u.customer_uid",
    );
    namespace_filter(&mut qb, "c.namespace", namespace, true);
    qb.push(" ORDER BY c.namespace, c.name, u.email");
    let rows = qb.build().fetch_all(pool).await.map_err(map_err)?;
    rows.iter()
        .map(|r| {
            Ok(UserRow {
                record: user(r)?,
                namespace: get(r, "namespace")?,
                customer: get(r, "customer")?,
                memberships: get(r, "n_memberships")?,
                accepted: get(r, "n_accepted")?,
            })
        })
        .collect()
}

pub(super) async fn policies(pool: &AnyPool, namespace: Option<&str>) -> Result<Vec<PolicyRow>> {
    let mut qb = Sql::new(format!(
        "SELECT {POLICY_COLS}, c.name AS customer, \
         (SELECT COUNT(*) FROM lockbox_requests r WHERE r.customer_uid = p.customer_uid \
          AND r.state IN ('Pending', 'Approved')) AS n_open \
         FROM lockbox_policies p JOIN customers c ON c.uid = p.customer_uid WHERE p.managed"
    ));
    namespace_filter(&mut qb, "p.namespace", namespace, false);
    qb.push(" ORDER BY p.namespace, p.name");
    let rows = qb.build().fetch_all(pool).await.map_err(map_err)?;
    rows.iter()
        .map(|r| Ok(PolicyRow { record: policy(r)?, customer: get(r, "customer")?, open_requests: get(r, "n_open")? }))
        .collect()
}

pub(super) async fn audit(pool: &AnyPool, filter: &AuditFilter) -> Result<Vec<AuditEntry>> {
    let mut qb = Sql::new(
        "SELECT id, at, actor, channel, subject, action, kind, object, CASE WHEN drift THEN 1 ELSE 0 END AS drift, before, after \
         FROM audit WHERE 1 = 1",
    );
    if let Some(kind) = &filter.kind {
        qb.push(" AND LOWER(kind) LIKE ").bind(format!("{}%", kind.to_ascii_lowercase()));
    }
    if let Some(since) = filter.since {
        qb.push(" AND at >= ").bind(since);
    }
    if let Some(object) = &filter.object {
        qb.push(" AND object = ").bind(object.as_str());
    }
    qb.push(" ORDER BY id");
    // The namespace and customer filters are applied below, so the limit is too.
    if let (Some(limit), None, None) = (filter.limit, &filter.namespace, &filter.customer_uid) {
        qb.push(" LIMIT ").bind(limit);
    }
    let rows = qb.build().fetch_all(pool).await.map_err(map_err)?;
    let of_namespace = match (&filter.namespace, &filter.customer_uid) {
        (_, Some(uid)) => Some(scope_ids(pool, Scope::Customer(uid)).await?),
        (Some(ns), None) => Some(scope_ids(pool, Scope::Namespace(ns)).await?),
        (None, None) => None,
    };
    let entries = rows
        .iter()
        .map(|r| {
            Ok(AuditEntry {
                id: get(r, "id")?,
                at: get(r, "at")?,
                actor: get(r, "actor")?,
                channel: crate::domain::actor::Channel::parse(&get::<String>(r, "channel")?),
                subject: get(r, "subject")?,
                action: get(r, "action")?,
                kind: get(r, "kind")?,
                object: get(r, "object")?,
                drift: get::<i64>(r, "drift")? != 0,
                before: get(r, "before")?,
                after: get(r, "after")?,
            })
        })
        .collect::<Result<Vec<AuditEntry>>>()?;
    let Some(ids) = of_namespace else { return Ok(entries) };
    let limit = filter.limit.map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(0));
    Ok(entries.into_iter().filter(|e| ids.holds(e)).take(limit).collect())
}

/// What belongs to a namespace's customers (or one customer), for the audit's filters: the
/// ids of its customers, workspaces, memberships and Lockbox policies, its Lockbox request
/// ids, and its people's addresses (their console sessions). Audit objects name these ids
/// in several shapes (`<uid>`, `<scope>/<email>`, `invitation/<membership>/<scope>/<issue>`,
/// `<uid>/administrator/<email>`), so an entry belongs when one of its object's
/// `/`-separated parts is one of them. Objects deleted since are not found this way (a
/// namespace recorded with each entry would find them).
struct NamespaceIds {
    ids: std::collections::HashSet<String>,
    requests: std::collections::HashSet<String>,
    people: std::collections::HashSet<String>,
}

impl NamespaceIds {
    fn holds(&self, e: &AuditEntry) -> bool {
        match e.kind.as_str() {
            "lockbox" => self.requests.contains(&e.object),
            "Session" => self.people.contains(&e.object),
            _ => self.ids.contains(&e.object) || e.object.split('/').any(|part| self.ids.contains(part)),
        }
    }
}

/// Whose entries: a namespace's customers, or one customer (by uid).
enum Scope<'a> {
    Namespace(&'a str),
    Customer(&'a str),
}

async fn scope_ids(pool: &AnyPool, scope: Scope<'_>) -> Result<NamespaceIds> {
    let (key, column, customers) = match scope {
        Scope::Namespace(ns) => (ns, "namespace", "SELECT uid FROM customers WHERE namespace = $1"),
        Scope::Customer(uid) => (uid, "customer_uid", "SELECT uid FROM customers WHERE uid = $1"),
    };
    let mut ids = std::collections::HashSet::new();
    let queries = [
        customers.replace("SELECT uid", "SELECT uid AS id"),
        format!("SELECT id FROM workspaces WHERE {column} = $1"),
        format!("SELECT id FROM memberships WHERE {column} = $1"),
        format!("SELECT uid AS id FROM lockbox_policies WHERE {column} = $1"),
    ];
    for sql in queries {
        for r in sqlx::query(AssertSqlSafe(sql)).bind(key).fetch_all(pool).await.map_err(map_err)? {
            ids.insert(get::<String>(&r, "id")?);
        }
    }
    let sql = format!("SELECT CAST(r.id AS TEXT) AS id FROM lockbox_requests r WHERE r.customer_uid IN ({customers})");
    let rows = sqlx::query(AssertSqlSafe(sql)).bind(key).fetch_all(pool).await.map_err(map_err)?;
    let requests = rows.iter().map(|r| get::<String>(r, "id")).collect::<Result<_>>()?;
    let sql = format!(
        "SELECT email AS id FROM users WHERE customer_uid IN ({customers}) UNION          SELECT subject_key AS id FROM memberships WHERE customer_uid IN ({customers})"
    );
    let rows = sqlx::query(AssertSqlSafe(sql)).bind(key).fetch_all(pool).await.map_err(map_err)?;
    let people = rows.iter().map(|r| get::<String>(r, "id")).collect::<Result<_>>()?;
    Ok(NamespaceIds { ids, requests, people })
}

pub(super) async fn workspace_members(pool: &AnyPool, workspace_id: &str) -> Result<Vec<MemberView>> {
    // A workspace's members: its own memberships, plus customer-level memberships whose
    // workspace-scope grants reach every workspace (CSAM, Incident Manager).
    let sql = "SELECT m.subject_key, g.permission, g.source FROM grants g JOIN memberships m ON m.id = g.membership_id \
               WHERE m.workspace_id = $1 OR (m.workspace_id IS NULL AND g.scope = 'workspace' \
               AND m.customer_uid = (SELECT customer_uid FROM workspaces WHERE id = $1)) \
               ORDER BY m.subject_key, g.permission, g.source";
    let rows = sqlx::query(sql).bind(workspace_id).fetch_all(pool).await.map_err(map_err)?;
    let mut members: Map<Vec<Grant>> = BTreeMap::new();
    for r in rows {
        let g = grant(&get::<String>(&r, "permission")?, &get::<String>(&r, "source")?)?;
        members.entry(get(&r, "subject_key")?).or_default().push(g);
    }
    Ok(members
        .into_iter()
        .map(|(subject, mut grants)| {
            grants.dedup();
            MemberView { subject, grants }
        })
        .collect())
}

/// SQL: 1 when the membership `alias` holds a Microsoft role (CSAM, Incident Manager), else 0.
/// The matrix's footnote 1: such a member sees some data and cannot export it.
fn microsoft_membership(alias: &str) -> String {
    let roles: Vec<String> =
        crate::api::Role::ALL.into_iter().filter(|r| r.is_microsoft()).map(|r| format!("'{}'", r.as_str())).collect();
    format!(
        "CASE WHEN EXISTS (SELECT 1 FROM role_assignments ra WHERE ra.membership_id = {alias}.id \
         AND ra.role IN ({})) THEN 1 ELSE 0 END",
        roles.join(", ")
    )
}

pub(super) async fn visible_to(pool: &AnyPool, customer_uid: &str, subject_key: &str) -> Result<Vec<ScopeView>> {
    let sql = format!(
        "SELECT m.workspace_id, g.permission, g.source, g.scope, {} AS microsoft FROM grants g \
         JOIN memberships m ON m.id = g.membership_id WHERE m.customer_uid = $1 AND m.subject_key = $2",
        microsoft_membership("m")
    );
    let rows =
        sqlx::query(AssertSqlSafe(sql)).bind(customer_uid).bind(subject_key).fetch_all(pool).await.map_err(map_err)?;
    let ws_rows = sqlx::query("SELECT id, name FROM workspaces WHERE customer_uid = $1 AND managed ORDER BY name")
        .bind(customer_uid)
        .fetch_all(pool)
        .await
        .map_err(map_err)?;
    let names: Vec<(String, String)> =
        ws_rows.iter().map(|r| Ok((get(r, "id")?, get(r, "name")?))).collect::<Result<_>>()?;
    // Per scope: each grant, and whether the membership holding it has a Microsoft role.
    let mut by_scope: BTreeMap<Option<String>, Vec<(Grant, bool)>> = BTreeMap::new();
    for r in rows {
        let g = grant(&get::<String>(&r, "permission")?, &get::<String>(&r, "source")?)?;
        let microsoft = get::<i64>(&r, "microsoft")? != 0;
        let ws: Option<String> = get(&r, "workspace_id")?;
        let scope: String = get(&r, "scope")?;
        match (ws, scope.as_str()) {
            // Customer-level memberships carrying workspace permissions reach every workspace.
            (None, "workspace") => {
                for (id, _) in &names {
                    by_scope.entry(Some(id.clone())).or_default().push((g, microsoft));
                }
            }
            (ws, _) => by_scope.entry(ws).or_default().push((g, microsoft)),
        }
    }
    Ok(by_scope
        .into_iter()
        .map(|(workspace_id, held)| {
            let mut grants: Vec<Grant> = held.iter().map(|(g, _)| *g).collect();
            grants.sort();
            grants.dedup();
            // Exportable when any membership holding it there may export it.
            let mut no_export: Vec<crate::api::Permission> = grants
                .iter()
                .map(|g| g.permission)
                .filter(|p| {
                    crate::domain::matrix::export_restricted(*p)
                        && held.iter().filter(|(g, _)| g.permission == *p).all(|(_, microsoft)| *microsoft)
                })
                .collect();
            no_export.dedup();
            let workspace =
                workspace_id.as_ref().and_then(|id| names.iter().find(|(i, _)| i == id).map(|(_, n)| n.clone()));
            ScopeView { workspace_id, workspace, grants, no_export }
        })
        .collect())
}

pub(super) async fn roles_of(
    pool: &AnyPool,
    customer_uid: &str,
    subject_keys: &[String],
) -> Result<Vec<crate::api::Role>> {
    if subject_keys.is_empty() {
        return Ok(Vec::new());
    }
    let mut qb = Sql::new(
        "SELECT DISTINCT r.role FROM memberships m JOIN role_assignments r ON r.membership_id = m.id \
         WHERE m.managed AND m.customer_uid = ",
    );
    qb.bind(customer_uid).push(" AND m.subject_key IN (");
    for (i, k) in subject_keys.iter().enumerate() {
        if i > 0 {
            qb.push(", ");
        }
        qb.bind(k.as_str());
    }
    qb.push(") ORDER BY r.role");
    let rows = qb.build().fetch_all(pool).await.map_err(map_err)?;
    rows.iter().map(|r| role(&get::<String>(r, "role")?)).collect()
}
