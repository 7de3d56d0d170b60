//! Store benchmark: write 100,000 permission grants in reconcile-sized transactions (50 grants
//! each) and read back effective permissions for 10,000 users. Prints rows/s per backend.
//!
//!     cargo bench --bench store
//!     SERVICEHUB_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test cargo bench --bench store
//!
//! Targets on a 2-core machine: SQLite >= 50,000 grant rows/s, PostgreSQL >= 20,000.

mod support;

use servicehub_operator::api::Permission;
use servicehub_operator::domain::rules::Source;
use servicehub_operator::store::sql::SqlStore;
use servicehub_operator::store::*;
use std::time::Instant;

const USERS: usize = 10_000;
const GRANTS_PER_USER: usize = 10;
const PER_TX: usize = 50;

const PERMISSIONS: [Permission; GRANTS_PER_USER] = [
    Permission::SupportContact,
    Permission::ViewAllSupportCases,
    Permission::LearningManager,
    Permission::Learning,
    Permission::CustomerActivity,
    Permission::Programs,
    Permission::InviteUsers,
    Permission::ManageUsers,
    Permission::Health,
    Permission::SharedFiles,
];

fn step(change: Change) -> Step {
    Step { change, summary: String::new(), drift: false, before: None }
}

fn batch(guard: Option<Guard>, steps: Vec<Step>) -> Batch {
    Batch {
        actor: servicehub_operator::domain::actor::Actor::cli(None, "bench", "host"),
        at: 1_700_000_000,
        guard,
        steps,
    }
}

async fn run(name: &str, store: SqlStore) {
    store.migrate().await.expect("migrate");
    let cust = CustomerRecord {
        uid: "c1".into(),
        namespace: "bench".into(),
        name: "bench".into(),
        display_name: "Bench".into(),
        agreement_kind: "Unified".into(),
        agreement_id: "U".into(),
        start_date: "2025-01-01".into(),
        end_date: None,
        administration_model: "Direct".into(),
        admin_group_id: None,
        settings: "{}".into(),
        newsletters: "[]".into(),
        phase: "Active".into(),
        deletion_policy: "Delete".into(),
        spec_hash: String::new(),
        applied_spec: String::new(),
    };
    let ws = WorkspaceRecord {
        id: "ws".into(),
        customer_uid: "c1".into(),
        namespace: "bench".into(),
        name: "ws".into(),
        origin: "Workspace".into(),
        display_name: "ws".into(),
        description: None,
        is_default: true,
        allow_personal: None,
        personal_allowed: false,
        support_benefits: "[]".into(),
        deletion_policy: "Delete".into(),
        spec_hash: String::new(),
        applied_spec: String::new(),
    };
    store
        .apply(&batch(None, vec![step(Change::PutCustomer(cust)), step(Change::PutWorkspace(ws))]))
        .await
        .expect("seed");
    // Setup (not timed): the users and their memberships.
    for chunk in (0..USERS).collect::<Vec<_>>().chunks(500) {
        let mut steps = Vec::new();
        for i in chunk {
            let email = format!("user{i}@bench.example");
            steps.push(step(Change::PutUser(UserRecord {
                customer_uid: "c1".into(),
                email: email.clone(),
                display_name: email.clone(),
                account_type: "WorkOrSchool".into(),
            })));
            steps.push(step(Change::PutMembership(MembershipRecord {
                id: format!("m{i}"),
                customer_uid: "c1".into(),
                workspace_id: Some("ws".into()),
                origin: "Membership".into(),
                namespace: "bench".into(),
                name: format!("m{i}"),
                subject_kind: "User".into(),
                subject_key: email,
                deletion_policy: "Delete".into(),
                spec_hash: String::new(),
                applied_spec: String::new(),
                roles: Default::default(),
                grants: Default::default(),
            })));
        }
        store.apply(&batch(None, steps)).await.expect("setup");
    }

    // Timed: 100,000 grants, 50 per transaction, each transaction guarded like a reconcile.
    let grants: Vec<(usize, Permission)> = (0..USERS).flat_map(|u| PERMISSIONS.iter().map(move |p| (u, *p))).collect();
    // Versions come from the planner's snapshot in real runs; keep them here the same way.
    let mut versions: std::collections::HashMap<String, i64> = std::collections::HashMap::new();
    let start = Instant::now();
    for chunk in grants.chunks(PER_TX) {
        let owner = format!("m{}", chunk[0].0);
        let version = versions.entry(owner.clone()).or_insert(1);
        let steps = chunk
            .iter()
            .map(|(u, p)| {
                step(Change::AddGrant {
                    membership_id: format!("m{u}"),
                    grant: Grant { permission: *p, source: Source::Individual },
                })
            })
            .collect();
        let guard = Guard { table: GuardTable::Membership, id: owner, expected: Some(*version) };
        store.apply(&batch(Some(guard), steps)).await.expect("grants");
        *version += 1;
    }
    let write = start.elapsed();
    let rows = grants.len() as f64;

    // Timed: effective permissions of every user, one query each ("what can this user see").
    let start = Instant::now();
    let mut seen = 0usize;
    for i in 0..USERS {
        let views = store.visible_to("c1", &format!("user{i}@bench.example")).await.expect("read");
        seen += views.iter().map(|v| v.grants.len()).sum::<usize>();
    }
    let read = start.elapsed();
    assert_eq!(seen, grants.len(), "every grant read back");
    println!(
        "{name:>8}: wrote {} grants in {:.2}s = {:>8.0} grant rows/s ({} per transaction); \
         read effective permissions of {USERS} users in {:.2}s = {:>7.0} users/s",
        grants.len(),
        write.as_secs_f64(),
        rows / write.as_secs_f64(),
        PER_TX,
        read.as_secs_f64(),
        USERS as f64 / read.as_secs_f64(),
    );
    store.close().await;
}

#[tokio::main]
async fn main() {
    support::each_store(|label, url| async move {
        run(label, SqlStore::connect(url.parse().expect("url")).await.expect("store")).await;
    })
    .await;
}
