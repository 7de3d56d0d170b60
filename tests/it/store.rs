//! The store suite: one set of tests, run against SQLite always and PostgreSQL when
//! `SERVICEHUB_TEST_DATABASE_URL` is set.

use crate::support::{TestStore, postgres_unmigrated, sqlite_unmigrated, stores};
use servicehub_operator::api::{Permission, Role};
use servicehub_operator::domain::rules::Source;
use servicehub_operator::store::*;

pub fn customer(uid: &str, name: &str) -> CustomerRecord {
    CustomerRecord {
        uid: uid.into(),
        namespace: "contoso".into(),
        name: name.into(),
        display_name: "Contoso".into(),
        agreement_kind: "Unified".into(),
        agreement_id: "U-1".into(),
        start_date: "2025-01-01".into(),
        end_date: None,
        administration_model: "Direct".into(),
        admin_group_id: None,
        settings: "{}".into(),
        newsletters: "[]".into(),
        phase: "Active".into(),
        deletion_policy: "Delete".into(),
        spec_hash: "h1".into(),
        applied_spec: String::new(),
    }
}

pub fn workspace(id: &str, customer_uid: &str, name: &str, default: bool) -> WorkspaceRecord {
    WorkspaceRecord {
        id: id.into(),
        customer_uid: customer_uid.into(),
        namespace: "contoso".into(),
        name: name.into(),
        origin: "Workspace".into(),
        display_name: name.into(),
        description: None,
        is_default: default,
        allow_personal: None,
        personal_allowed: false,
        support_benefits: "[]".into(),
        deletion_policy: "Delete".into(),
        spec_hash: "w".into(),
        applied_spec: String::new(),
    }
}

pub fn membership(id: &str, customer_uid: &str, ws: Option<&str>, email: &str) -> MembershipRecord {
    MembershipRecord {
        id: id.into(),
        customer_uid: customer_uid.into(),
        workspace_id: ws.map(Into::into),
        origin: "Membership".into(),
        namespace: "contoso".into(),
        name: id.into(),
        subject_kind: "User".into(),
        subject_key: email.into(),
        deletion_policy: "Delete".into(),
        spec_hash: "m".into(),
        applied_spec: String::new(),
        roles: Default::default(),
        grants: Default::default(),
    }
}

pub fn user(customer_uid: &str, email: &str) -> UserRecord {
    UserRecord {
        customer_uid: customer_uid.into(),
        email: email.into(),
        display_name: email.into(),
        account_type: "WorkOrSchool".into(),
    }
}

pub fn step(change: Change) -> Step {
    Step { summary: format!("{:?}", change.audit_action()), change, drift: false, before: None }
}

pub fn batch(guard: Option<Guard>, changes: Vec<Change>) -> Batch {
    Batch {
        actor: servicehub_operator::domain::actor::Actor::cli(None, "test", "host"),
        at: 1_700_000_000,
        guard,
        steps: changes.into_iter().map(step).collect(),
    }
}

fn g(p: Permission, s: Source) -> Grant {
    Grant { permission: p, source: s }
}

/// A first invitation of `email` to `scope`, not yet sent.
fn pending(customer_uid: &str, membership_id: &str, scope: &str, email: &str) -> InvitationRecord {
    InvitationRecord {
        customer_uid: customer_uid.into(),
        membership_id: membership_id.into(),
        scope_key: scope.into(),
        subject_key: email.into(),
        email: email.into(),
        issue: 1,
        state: "Pending".into(),
        attempts: 0,
        created_at: 1_700_000_000,
        sent_at: None,
        expires_at: None,
        accepted_at: None,
        accepted_by: None,
        last_error: None,
    }
}

/// A customer with one workspace and one member holding a role, two grants and an invitation.
fn seed(uid: &str) -> Batch {
    let ws = format!("{uid}-ws");
    let m = format!("{uid}-m");
    batch(
        Some(Guard { table: GuardTable::Customer, id: uid.into(), expected: None }),
        vec![
            Change::PutCustomer(customer(uid, "contoso")),
            Change::PutWorkspace(workspace(&ws, uid, "emea", true)),
            Change::PutUser(user(uid, "lee@contoso.com")),
            Change::PutMembership(membership(&m, uid, Some(&ws), "lee@contoso.com")),
            Change::AddRole { membership_id: m.clone(), role: Role::WorkspaceAdministrator },
            Change::AddGrant {
                membership_id: m.clone(),
                grant: g(Permission::Learning, Source::Role(Role::WorkspaceAdministrator)),
            },
            Change::AddGrant { membership_id: m.clone(), grant: g(Permission::SupportContact, Source::Individual) },
            Change::IssueInvitation { invitation: pending(uid, &m, &ws, "lee@contoso.com"), payload: "{}".into() },
        ],
    )
}

#[tokio::test]
async fn migrations_apply_once_and_report_the_version() {
    for s in stores().await {
        let v = s.store.schema_version().await.expect("version");
        assert_eq!(v, s.store.supported_version(), "{}", s.name);
        let again = s.store.migrate().await.expect("migrate twice");
        assert_eq!((again.from, again.to), (v, v), "{}: a second migrate is a no-op", s.name);
    }
}

#[tokio::test]
async fn a_store_newer_than_the_binary_is_refused_and_left_untouched() {
    for s in stores().await {
        let checksum = if s.name == "sqlite" { "x'00'" } else { "'\\x00'::bytea" };
        s.store
            .execute_raw(&format!(
                "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
                 VALUES (9999, 'from the future', TRUE, {checksum}, 1)"
            ))
            .await
            .expect("fake a newer migration");
        let before = s.store.schema_dump().await.expect("dump");
        let err = s.store.migrate().await.expect_err("refused");
        assert!(matches!(err, StoreError::SchemaTooNew { found: 9999, .. }), "{}: {err}", s.name);
        assert!(err.to_string().contains("upgrade servicehub"), "{err}");
        assert_eq!(s.store.schema_dump().await.expect("dump"), before, "{}: schema untouched", s.name);
    }
}

#[tokio::test]
async fn an_upgraded_store_ends_with_the_same_schema_as_a_fresh_one() {
    let mut pairs: Vec<(TestStore, TestStore)> = vec![(sqlite_unmigrated().await, sqlite_unmigrated().await)];
    if let (Some(a), Some(b)) = (postgres_unmigrated().await, postgres_unmigrated().await) {
        pairs.push((a, b));
    }
    for (old, fresh) in pairs {
        old.store.migrate_to(1).await.expect("initial schema only");
        assert_eq!(old.store.schema_version().await.expect("v"), 1);
        // Data as the old schema holds it: rows through today's code, the invitation and its
        // queued delivery as version 1 wrote them (no delivery columns yet).
        let mut rows = seed("c1");
        rows.steps.retain(|s| !matches!(s.change, Change::IssueInvitation { .. }));
        // Today's code writes the audit's channel and subject (migration 6): the columns exist
        // only while it writes, so the old schema is what the upgrade starts from.
        // So does each row's applied spec (migration 7).
        let added = [
            ("audit", "channel"),
            ("audit", "subject"),
            ("customers", "applied_spec"),
            ("workspaces", "applied_spec"),
            ("memberships", "applied_spec"),
        ];
        for (table, column) in added {
            old.store.execute_raw(&format!("ALTER TABLE {table} ADD COLUMN {column} TEXT")).await.expect("add");
        }
        old.store.apply(&rows).await.expect("data under the old schema");
        for (table, column) in added {
            old.store.execute_raw(&format!("ALTER TABLE {table} DROP COLUMN {column}")).await.expect("drop");
        }
        old.store
            .execute_raw(
                "INSERT INTO invitations (customer_uid, membership_id, scope_key, subject_key, email, issue, state, \
                 attempts, created_at) VALUES ('c1', 'c1-m', 'c1-ws', 'lee@contoso.com', 'lee@contoso.com', 1, \
                 'Pending', 0, 1700000000)",
            )
            .await
            .expect("old invitation");
        old.store
            .execute_raw(
                "INSERT INTO outbox (kind, idempotency_key, payload, state, attempts, next_attempt_at, created_at) \
                 VALUES ('invitation', 'invitation/c1-m/c1-ws/1', '{}', 'Pending', 0, 1700000000, 1700000000)",
            )
            .await
            .expect("old outbox entry");
        let report = old.store.migrate().await.expect("upgrade");
        assert_eq!((report.from, report.to), (1, fresh.store.supported_version()));
        fresh.store.migrate().await.expect("fresh");
        assert_eq!(
            old.store.schema_dump().await.expect("a"),
            fresh.store.schema_dump().await.expect("b"),
            "{}",
            old.name
        );
        let snap = old.store.load_customer("contoso", "contoso").await.expect("load");
        assert_eq!(snap.memberships.len(), 1, "data survives the upgrade");
        // The queued delivery still finds its invitation.
        let due = old.store.outbox_due(1_700_000_000, 10).await.expect("due");
        let inv = old.store.count("SELECT id FROM invitations").await.expect("id");
        assert_eq!(due.iter().map(|e| e.invitation_id).collect::<Vec<_>>(), vec![Some(inv)], "{}", old.name);
    }
}

#[tokio::test]
async fn a_batch_round_trips_and_the_snapshot_mirror_matches_the_database() {
    for s in stores().await {
        let b = seed("c1");
        let out = s.store.apply(&b).await.expect("apply");
        assert_eq!(out.invitations, 1);
        let loaded = s.store.load_customer("contoso", "contoso").await.expect("load");
        let mut mirrored = Snapshot::default();
        mirrored.apply(&b);
        assert_eq!(loaded, mirrored, "{}: Snapshot::apply mirrors the store", s.name);
        let m = &loaded.memberships["c1-m"].record;
        assert_eq!(m.roles.iter().copied().collect::<Vec<_>>(), vec![Role::WorkspaceAdministrator]);
        assert_eq!(m.grants.len(), 2);
        assert_eq!(loaded.invitations.len(), 1);
        let outbox = s.store.count("SELECT COUNT(*) FROM outbox WHERE kind = 'invitation'").await.expect("outbox");
        assert_eq!(outbox, 1, "{}: the outbox entry is written with the invitation", s.name);
        let audit = s.store.audit(&AuditFilter::default()).await.expect("audit");
        assert_eq!(audit.len(), b.steps.len(), "{}: one audit entry per change", s.name);
    }
}

/// A new membership of customer c1 in `c1-ws`, as its own object: the row is the guard.
fn new_member(id: &str, email: &str, display: &str) -> Batch {
    let invitation = pending("c1", id, "c1-ws", email);
    batch(
        Some(Guard { table: GuardTable::Membership, id: id.into(), expected: None }),
        vec![
            Change::PutUser(UserRecord { display_name: display.into(), ..user("c1", email) }),
            Change::PutMembership(membership(id, "c1", Some("c1-ws"), email)),
            Change::AddRole { membership_id: id.into(), role: Role::User },
            Change::AddGrant { membership_id: id.into(), grant: g(Permission::Learning, Source::Individual) },
            Change::IssueInvitation { invitation, payload: format!("{{\"to\":\"{email}\"}}") },
        ],
    )
}

/// Everything a chunk leaves in the store, but for generated ids.
async fn contents(s: &TestStore) -> (Snapshot, Vec<String>, usize) {
    let snap = s.store.load_customer("contoso", "contoso").await.expect("load");
    let outbox = s
        .store
        .strings("SELECT idempotency_key || ' ' || payload FROM outbox ORDER BY idempotency_key")
        .await
        .expect("outbox");
    let audit = s.store.audit(&AuditFilter::default()).await.expect("audit").len();
    (snap, outbox, audit)
}

#[tokio::test]
async fn a_chunk_written_at_once_leaves_what_its_batches_one_by_one_leave() {
    // apply_all writes the users, memberships and invitations of a chunk as multi-row
    // statements. Compared with the same batches applied one at a time: a run of new members,
    // then a chunk that puts one person twice (the later put must win) and adds a member
    // already invited.
    let fresh: Vec<Batch> =
        (0..30).map(|n| new_member(&format!("m{n}"), &format!("p{n}@contoso.com"), "First")).collect();
    let repeated = vec![
        new_member("m-again", "p3@contoso.com", "Second"),
        new_member("m-once-more", "p3@contoso.com", "Third"),
        new_member("m-lee", "lee@contoso.com", "Lee"),
    ];
    for (at_once, one_by_one) in stores().await.into_iter().zip(stores().await) {
        for s in [&at_once, &one_by_one] {
            s.store.apply(&seed("c1")).await.expect("seed");
        }
        for chunk in [&fresh, &repeated] {
            let before = one_by_one.store.rows_written();
            for b in chunk {
                one_by_one.store.apply(b).await.expect("one batch");
            }
            let rows = one_by_one.store.rows_written() - before;
            let before = at_once.store.rows_written();
            let results = at_once.store.apply_all(chunk).await.expect("chunk");
            assert!(results.iter().all(Result::is_ok), "{}: {results:?}", at_once.name);
            assert_eq!(at_once.store.rows_written() - before, rows, "{}: rows counted alike", at_once.name);
            let (snap, outbox, audit) = contents(&at_once).await;
            let (their_snap, their_outbox, their_audit) = contents(&one_by_one).await;
            assert_eq!(snap, their_snap, "{}", at_once.name);
            assert_eq!(outbox, their_outbox, "{}", at_once.name);
            assert_eq!(audit, their_audit, "{}", at_once.name);
        }
        let (snap, outbox, _) = contents(&at_once).await;
        assert_eq!(snap.users["p3@contoso.com"].display_name, "Third", "{}: the later put wins", at_once.name);
        assert_eq!(snap.memberships.len(), 34, "{}", at_once.name);
        assert_eq!(snap.memberships["m7"].record.roles.len(), 1, "{}", at_once.name);
        assert_eq!(outbox.len(), 31, "{}: a live invitation is not queued again: {outbox:?}", at_once.name);
    }
}

#[tokio::test]
async fn a_chunk_with_a_member_created_meanwhile_applies_the_others_and_reports_that_one() {
    for s in stores().await {
        s.store.apply(&seed("c1")).await.expect("seed");
        // Another writer created m1 after this chunk was planned.
        s.store.apply(&new_member("m1", "p1@contoso.com", "Other")).await.expect("other writer");
        let audit = s.store.audit(&AuditFilter::default()).await.expect("audit").len();
        let chunk = [
            new_member("m0", "p0@contoso.com", "Zero"),
            new_member("m1", "p1@contoso.com", "Mine"),
            new_member("m2", "p2@contoso.com", "Two"),
        ];
        let results = s.store.apply_all(&chunk).await.expect("chunk");
        assert!(results[0].is_ok() && results[2].is_ok(), "{}: {results:?}", s.name);
        assert!(matches!(&results[1], Err(StoreError::Conflict(_))), "{}: {:?}", s.name, results[1]);
        let snap = s.store.load_customer("contoso", "contoso").await.expect("load");
        assert!(snap.memberships.contains_key("m0") && snap.memberships.contains_key("m2"), "{}", s.name);
        assert_eq!(snap.users["p1@contoso.com"].display_name, "Other", "{}: the refused batch wrote nothing", s.name);
        let now = s.store.audit(&AuditFilter::default()).await.expect("audit").len();
        assert_eq!(now - audit, 2 * chunk[0].steps.len(), "{}: audited once per applied change", s.name);
    }
}

#[tokio::test]
async fn an_empty_batch_touches_nothing() {
    for s in stores().await {
        s.store.apply(&seed("c1")).await.expect("apply");
        let written = s.store.rows_written();
        let audit = s.store.audit(&AuditFilter::default()).await.expect("audit").len();
        let out = s.store.apply(&batch(None, vec![])).await.expect("empty");
        assert_eq!(out, ApplyOutcome::default());
        assert_eq!(s.store.rows_written(), written, "{}", s.name);
        assert_eq!(s.store.audit(&AuditFilter::default()).await.expect("audit").len(), audit);
    }
}

#[tokio::test]
async fn a_failing_batch_leaves_nothing_behind() {
    for s in stores().await {
        s.store.apply(&seed("c1")).await.expect("seed");
        let before = s.store.load_customer("contoso", "contoso").await.expect("load");
        let audit = s.store.audit(&AuditFilter::default()).await.expect("audit").len();
        // A second default workspace violates a schema rule, after several good changes.
        let bad = batch(
            Some(Guard { table: GuardTable::Customer, id: "c1".into(), expected: Some(1) }),
            vec![
                Change::PutUser(user("c1", "new@contoso.com")),
                Change::PutWorkspace(workspace("ws-2", "c1", "apac", false)),
                Change::PutWorkspace(workspace("ws-3", "c1", "amer", true)),
            ],
        );
        let err = s.store.apply(&bad).await.expect_err("constraint");
        assert!(matches!(err, StoreError::Constraint(_)), "{}: {err:?}", s.name);
        assert_eq!(err.to_string(), "the customer already has a default workspace");
        assert_eq!(s.store.load_customer("contoso", "contoso").await.expect("load"), before, "{}", s.name);
        assert_eq!(s.store.audit(&AuditFilter::default()).await.expect("audit").len(), audit);
    }
}

#[tokio::test]
async fn a_stale_plan_is_a_retryable_conflict() {
    for s in stores().await {
        s.store.apply(&seed("c1")).await.expect("seed");
        let guard = || Some(Guard { table: GuardTable::Customer, id: "c1".into(), expected: Some(1) });
        let first = batch(guard(), vec![Change::PutUser(user("c1", "a@contoso.com"))]);
        let second = batch(guard(), vec![Change::PutUser(user("c1", "b@contoso.com"))]);
        s.store.apply(&first).await.expect("first writer wins");
        let err = s.store.apply(&second).await.expect_err("second writer conflicts");
        assert!(matches!(err, StoreError::Conflict(_)) && err.is_retryable(), "{}: {err:?}", s.name);
        let snap = s.store.load_customer("contoso", "contoso").await.expect("load");
        assert!(snap.users.contains_key("a@contoso.com") && !snap.users.contains_key("b@contoso.com"));
        // Creating a row that a concurrent writer created first also conflicts.
        let dup = seed("c1");
        assert!(matches!(s.store.apply(&dup).await, Err(StoreError::Conflict(_))), "{}", s.name);
    }
}

/// Apply each of `batches` from a task of its own, all started before any runs; the results
/// in order.
async fn apply_at_once(s: &TestStore, batches: &[Batch]) -> Vec<Result<ApplyOutcome, StoreError>> {
    let tasks: Vec<_> = batches
        .iter()
        .cloned()
        .map(|b| {
            let store = s.store.clone();
            tokio::spawn(async move { store.apply(&b).await })
        })
        .collect();
    let mut results = Vec::with_capacity(tasks.len());
    for t in tasks {
        results.push(t.await.expect("join"));
    }
    results
}

#[tokio::test]
async fn concurrent_writers_on_one_object_exactly_one_wins() {
    for s in stores().await {
        s.store.apply(&seed("c1")).await.expect("seed");
        let racers: Vec<Batch> = (0..8)
            .map(|i| {
                batch(
                    Some(Guard { table: GuardTable::Customer, id: "c1".into(), expected: Some(1) }),
                    vec![Change::PutUser(user("c1", &format!("racer{i}@contoso.com")))],
                )
            })
            .collect();
        let mut won = 0;
        for result in apply_at_once(&s, &racers).await {
            match result {
                Ok(_) => won += 1,
                Err(e) => assert!(e.is_retryable(), "{}: {e:?}", s.name),
            }
        }
        assert_eq!(won, 1, "{}", s.name);
        let racers = s.store.count("SELECT COUNT(*) FROM users WHERE email LIKE 'racer%'").await.expect("count");
        assert_eq!(racers, 1);
    }
}

#[tokio::test]
async fn batches_applied_at_once_keep_each_its_own_all_or_nothing() {
    // Applies that wait for the writer together share a transaction (group commit), each
    // batch in a savepoint of its own. Started at once on this single-threaded runtime they
    // queue before the writer runs, so they meet in one group: new members, one that breaks a
    // schema rule halfway, one whose plan is stale, one creating a member already there.
    for s in stores().await {
        s.store.apply(&seed("c1")).await.expect("seed");
        s.store.apply(&new_member("m-taken", "taken@contoso.com", "Taken")).await.expect("first");
        let audit = s.store.audit(&AuditFilter::default()).await.expect("audit").len();
        let customer_guard = |v| Some(Guard { table: GuardTable::Customer, id: "c1".into(), expected: Some(v) });
        let batches = [
            new_member("m0", "p0@contoso.com", "Zero"),
            batch(
                customer_guard(1),
                vec![
                    Change::PutUser(user("c1", "halfway@contoso.com")),
                    Change::PutWorkspace(workspace("ws-2", "c1", "apac", false)),
                    Change::PutWorkspace(workspace("ws-3", "c1", "amer", true)),
                ],
            ),
            new_member("m1", "p1@contoso.com", "One"),
            batch(customer_guard(7), vec![Change::PutUser(user("c1", "stale@contoso.com"))]),
            new_member("m-taken", "taken@contoso.com", "Again"),
            new_member("m2", "p2@contoso.com", "Two"),
        ];
        let grouped = s.store.batches_grouped();
        let results = apply_at_once(&s, &batches).await;
        assert_eq!(s.store.batches_grouped() - grouped, batches.len() as u64, "{}: one group", s.name);
        for i in [0, 2, 5] {
            assert!(results[i].is_ok(), "{}: batch {i}: {:?}", s.name, results[i]);
        }
        assert!(matches!(&results[1], Err(StoreError::Constraint(_))), "{}: {:?}", s.name, results[1]);
        assert!(matches!(&results[3], Err(StoreError::Conflict(_))), "{}: {:?}", s.name, results[3]);
        assert!(matches!(&results[4], Err(StoreError::Conflict(_))), "{}: {:?}", s.name, results[4]);
        let snap = s.store.load_customer("contoso", "contoso").await.expect("load");
        for m in ["m0", "m1", "m2", "m-taken"] {
            assert!(snap.memberships.contains_key(m), "{}: {m} is stored", s.name);
        }
        for (email, why) in [
            ("halfway@contoso.com", "the refused batch's first change is undone"),
            ("stale@contoso.com", "the stale batch wrote nothing"),
        ] {
            assert!(!snap.users.contains_key(email), "{}: {why}", s.name);
        }
        assert!(!snap.workspaces.contains_key("ws-2"), "{}: the refused batch wrote nothing", s.name);
        assert_eq!(snap.users["taken@contoso.com"].display_name, "Taken", "{}: the duplicate wrote nothing", s.name);
        let now = s.store.audit(&AuditFilter::default()).await.expect("audit").len();
        let applied: usize = [0, 2, 5].iter().map(|i| batches[*i].steps.len()).sum();
        assert_eq!(now - audit, applied, "{}: audited once per applied change, never for a refused one", s.name);
        // The store goes on after a mixed group: the next write lands.
        s.store.apply(&new_member("m3", "p3@contoso.com", "Three")).await.expect("after the group");
    }
}

#[tokio::test]
async fn rows_are_keyed_by_uid_so_a_recreated_object_starts_empty() {
    for s in stores().await {
        s.store.apply(&seed("old-uid")).await.expect("seed");
        let del = batch(
            Some(Guard { table: GuardTable::Customer, id: "old-uid".into(), expected: Some(1) }),
            vec![Change::DeleteCustomer { uid: "old-uid".into() }],
        );
        s.store.apply(&del).await.expect("delete");
        let recreate = batch(
            Some(Guard { table: GuardTable::Customer, id: "new-uid".into(), expected: None }),
            vec![Change::PutCustomer(customer("new-uid", "contoso"))],
        );
        s.store.apply(&recreate).await.expect("recreate");
        let snap = s.store.load_customer("contoso", "contoso").await.expect("load");
        assert_eq!(snap.customer.as_ref().map(|c| c.record.uid.as_str()), Some("new-uid"));
        assert!(snap.memberships.is_empty() && snap.workspaces.is_empty(), "{}: nothing inherited", s.name);
        assert_eq!(s.store.count("SELECT COUNT(*) FROM grants").await.expect("grants"), 0);
        assert!(s.store.audit(&AuditFilter::default()).await.expect("audit").len() > 8, "audit kept");
    }
}

#[tokio::test]
async fn the_audit_log_is_append_only() {
    for s in stores().await {
        s.store.apply(&seed("c1")).await.expect("seed");
        let n = s.store.count("SELECT COUNT(*) FROM audit").await.expect("count");
        assert!(s.store.execute_raw("UPDATE audit SET actor = 'mallory'").await.is_err(), "{}", s.name);
        assert!(s.store.execute_raw("DELETE FROM audit").await.is_err(), "{}", s.name);
        assert_eq!(s.store.count("SELECT COUNT(*) FROM audit").await.expect("count"), n);
    }
}

#[tokio::test]
async fn workspace_members_include_customer_level_microsoft_roles() {
    for s in stores().await {
        s.store.apply(&seed("c1")).await.expect("seed");
        let csam = batch(
            Some(Guard { table: GuardTable::Membership, id: "csam".into(), expected: None }),
            vec![
                Change::PutUser(user("c1", "csam@microsoft.com")),
                Change::PutMembership(membership("csam", "c1", None, "csam@microsoft.com")),
                Change::AddRole { membership_id: "csam".into(), role: Role::CustomerSuccessAccountManager },
                Change::AddGrant {
                    membership_id: "csam".into(),
                    grant: g(Permission::ManageUsers, Source::Role(Role::CustomerSuccessAccountManager)),
                },
                Change::AddGrant {
                    membership_id: "csam".into(),
                    grant: g(Permission::ManageOpenCanvas, Source::Role(Role::CustomerSuccessAccountManager)),
                },
            ],
        );
        s.store.apply(&csam).await.expect("csam");
        let members = s.store.workspace_members("c1-ws").await.expect("members");
        let subjects: Vec<&str> = members.iter().map(|m| m.subject.as_str()).collect();
        assert_eq!(subjects, vec!["csam@microsoft.com", "lee@contoso.com"], "{}", s.name);
        let csam_grants = &members[0].grants;
        assert_eq!(csam_grants.len(), 1, "only the workspace-scope grant reaches the workspace");
        let views = s.store.visible_to("c1", "csam@microsoft.com").await.expect("views");
        assert_eq!(views.len(), 2, "{}: customer level plus the one workspace", s.name);
        assert_eq!(views[0].workspace_id, None);
        assert_eq!(views[1].workspace.as_deref(), Some("emea"));
    }
}

#[tokio::test]
async fn get_queries_list_what_the_store_holds() {
    for s in stores().await {
        s.store.apply(&seed("c1")).await.expect("seed");
        let c = s.store.customers(Some("contoso")).await.expect("customers");
        assert_eq!(c.len(), 1);
        assert_eq!((c[0].workspaces, c[0].users, c[0].pending_invitations), (1, 1, 1), "{}", s.name);
        assert!(s.store.customers(Some("other")).await.expect("none").is_empty());
        let w = s.store.workspaces(None).await.expect("workspaces");
        assert_eq!((w[0].customer.as_str(), w[0].members), ("contoso", 1));
        let m = s.store.memberships(None).await.expect("memberships");
        assert_eq!(m[0].workspace.as_deref(), Some("emea"));
        assert!(m[0].record.roles.contains(&Role::WorkspaceAdministrator));
        let i = s.store.invitations(None).await.expect("invitations");
        assert_eq!((i[0].record.state.as_str(), i[0].workspace.as_deref()), ("Pending", Some("emea")));
        let gr = s.store.grants(None).await.expect("grants");
        assert_eq!(gr.len(), 2);
        assert_eq!(gr[0].membership, "Membership/c1-m");
        let audit =
            s.store.audit(&AuditFilter { kind: Some("invitation".into()), ..Default::default() }).await.expect("audit");
        assert_eq!(audit.len(), 1, "{}", s.name);
    }
}

#[tokio::test]
async fn the_next_deadline_comes_from_the_indexes() {
    for s in stores().await {
        assert_eq!(s.store.next_deadline().await.expect("none yet"), None);
        s.store.apply(&seed("c1")).await.expect("seed");
        // The seed queued one invitation delivery at its batch time.
        assert_eq!(s.store.next_deadline().await.expect("outbox"), Some(1_700_000_000));
        s.store
            .execute_raw(
                "INSERT INTO lockbox_requests (customer_uid, requester, workload, case_id, reason, requested_seconds, \
                 approvers, state, created_at, pending_deadline, due_at) VALUES \
                 ('c1', 'eng@microsoft.com', 'ExchangeOnline', 'case-1', 'r', 3600, '[]', 'Pending', 1, 1000, 1000)",
            )
            .await
            .expect("request");
        assert_eq!(s.store.next_deadline().await.expect("lockbox"), Some(1000), "{}", s.name);
        if s.name == "sqlite" {
            for sql in servicehub_operator::store::sql::DEADLINE_QUERIES {
                let plan: String = s.store.explain(sql).await.expect("explain");
                assert!(plan.contains("USING") && plan.contains("INDEX") && !plan.contains("SCAN"), "{sql}: {plan}");
            }
        }
    }
}

#[tokio::test]
async fn of_two_workers_claiming_the_same_delivery_attempt_exactly_one_wins() {
    use servicehub_operator::store::Claim;
    for s in stores().await {
        s.store.apply(&seed("c1")).await.expect("seed");
        let due = s.store.outbox_due(i64::MAX / 2, 10).await.expect("due");
        assert_eq!(due.len(), 1, "{}", s.name);
        let e = &due[0];
        let (ha, hb) = ("a".repeat(64), "b".repeat(64));
        let ra = [ClaimRequest { entry: e, retry_at: 1_700_000_060, token_hash: Some(&ha) }];
        let rb = [ClaimRequest { entry: e, retry_at: 1_700_000_060, token_hash: Some(&hb) }];
        let (a, b) = tokio::join!(
            s.store.outbox_claim_all(&ra, 1_700_000_000, 3600),
            s.store.outbox_claim_all(&rb, 1_700_000_000, 3600),
        );
        let claims = [a.expect("a").remove(0), b.expect("b").remove(0)];
        assert_eq!(claims.iter().filter(|c| matches!(c, Claim::Send { attempt: 1, .. })).count(), 1, "{claims:?}");
        assert_eq!(claims.iter().filter(|c| **c == Claim::Taken).count(), 1, "{claims:?}");
        // The loser left nothing behind: one token, one attempt counted on each row.
        assert_eq!(s.store.count("SELECT COUNT(*) FROM invitation_tokens").await.expect("tokens"), 1, "{}", s.name);
        assert_eq!(s.store.count("SELECT attempts FROM outbox").await.expect("outbox"), 1);
        assert_eq!(s.store.count("SELECT attempts FROM invitations").await.expect("invitation"), 1);
    }
}

#[tokio::test]
async fn a_claim_and_a_delivery_of_several_entries_judge_each_entry_on_its_own() {
    use servicehub_operator::domain::actor::Actor;
    use servicehub_operator::store::Claim;
    let (at, validity) = (1_700_000_000, 3600);
    for s in stores().await {
        for c in ["c1", "c2", "c3"] {
            // Three customers, so in namespaces of their own.
            let mut b = seed(c);
            for step in &mut b.steps {
                match &mut step.change {
                    Change::PutCustomer(r) => r.namespace = c.into(),
                    Change::PutWorkspace(r) => r.namespace = c.into(),
                    Change::PutMembership(r) => r.namespace = c.into(),
                    _ => {}
                }
            }
            s.store.apply(&b).await.expect("seed");
        }
        let due = s.store.outbox_due(i64::MAX / 2, 10).await.expect("due");
        assert_eq!(due.len(), 3, "{}", s.name);
        let of = |c: &str| due.iter().find(|e| e.key.contains(&format!("/{c}-m/"))).expect("entry");
        // c2's invitation was revoked after it was queued; c3's attempt was claimed by another
        // worker after this one read it.
        s.store
            .execute_raw("UPDATE invitations SET state = 'Revoked' WHERE customer_uid = 'c2'")
            .await
            .expect("revoke");
        let other = "o".repeat(64);
        let first = [ClaimRequest { entry: of("c3"), retry_at: at + 60, token_hash: Some(&other) }];
        assert!(matches!(s.store.outbox_claim_all(&first, at, validity).await.expect("other")[0], Claim::Send { .. }));
        let hashes: Vec<String> = ["a", "b", "c"].iter().map(|h| h.repeat(64)).collect();
        let requests: Vec<ClaimRequest<'_>> = ["c1", "c2", "c3"]
            .iter()
            .zip(&hashes)
            .map(|(c, h)| ClaimRequest { entry: of(c), retry_at: at + 60, token_hash: Some(h) })
            .collect();
        let claims = s.store.outbox_claim_all(&requests, at, validity).await.expect("claim");
        assert_eq!(
            claims,
            vec![Claim::Send { attempt: 1, expires_at: Some(at + validity) }, Claim::Cancelled, Claim::Taken],
            "{}",
            s.name
        );
        let state = |c: &str| format!("SELECT COUNT(*) FROM outbox WHERE state = 'Cancelled' AND id = {}", of(c).id);
        assert_eq!(s.store.count(&state("c2")).await.expect("c2"), 1, "{}: the dead entry is closed", s.name);
        assert_eq!(s.store.count(&state("c1")).await.expect("c1"), 0);
        // Tokens: c1's from this claim and c3's from the other worker's, none for the losers.
        let tokens =
            "SELECT COUNT(*) FROM invitation_tokens WHERE token_hash IN ('".to_owned() + &hashes.join("', '") + "')";
        assert_eq!(s.store.count(&tokens).await.expect("tokens"), 1, "{}", s.name);
        assert_eq!(s.store.count("SELECT COUNT(*) FROM invitation_tokens").await.expect("all"), 2);
        let attempts = |c: &str| format!("SELECT attempts FROM invitations WHERE customer_uid = '{c}'");
        for (c, n) in [("c1", 1), ("c2", 0), ("c3", 1)] {
            assert_eq!(s.store.count(&attempts(c)).await.expect("attempts"), n, "{}: {c}", s.name);
        }

        // Delivered: c1 and c3 become Sent, each audited once, and name their Membership; a
        // second report of c1 (a re-send after a crash) changes and audits nothing.
        let by = Actor::operator("test");
        let touched = s.store.outbox_sent_all(&[of("c1"), of("c3")], at + 1, &by).await.expect("sent");
        let names: Vec<Option<&str>> = touched.iter().map(|t| t.as_ref().map(|m| m.name.as_str())).collect();
        assert_eq!(names, vec![Some("c1-m"), Some("c3-m")], "{}", s.name);
        let again = s.store.outbox_sent_all(&[of("c1")], at + 2, &by).await.expect("again");
        assert!(again[0].is_none(), "{}: {again:?}", s.name);
        let sends = "SELECT COUNT(*) FROM audit WHERE action = 'invitation.send'";
        assert_eq!(s.store.count(sends).await.expect("audit"), 2, "{}", s.name);
        let sent = "SELECT COUNT(*) FROM invitations WHERE state = 'Sent' AND sent_at = 1700000001";
        assert_eq!(s.store.count(sent).await.expect("sent"), 2, "{}", s.name);
        assert_eq!(s.store.count("SELECT COUNT(*) FROM outbox WHERE state = 'Sent'").await.expect("outbox"), 2);
    }
}
