//! Customer Lockbox against real stores, with an injected clock: exact expiry, decisions and
//! refusals, catch-up after downtime, a disabled policy, concurrent decisions, the CLI.

use crate::support::{TestStore, stores};
use servicehub_operator::domain::lockbox::{Action, NewRequest, Request, State};
use servicehub_operator::engine::{self, Options};
use servicehub_operator::lockbox::{self, Error, Requester, Requesters};
use servicehub_operator::plan::Context;
use servicehub_operator::store::{LockboxFilter, Store, StoreError};
use servicehub_operator::validate::{Object, Sourced};

/// 2026-11-22T10:00:00Z.
const T: i64 = 1_795_341_600;
const HOUR: i64 = 3600;
const APPROVER: &str = "megan.bowen@contoso.com";
/// A Global Administrator: an approver through the policy's role.
const GA: &str = "nestor.wilke@contoso.com";

/// The example scenario applied at `T`, with the LockboxPolicy changed by `policy`.
async fn scenario(s: &TestStore, policy: impl Fn(&mut servicehub_operator::api::LockboxPolicySpec)) {
    let objects: Vec<Sourced> = crate::cluster::examples()
        .into_iter()
        .map(|mut o| {
            if let Object::LockboxPolicy(p) = &mut o.object {
                policy(&mut p.spec);
            }
            o
        })
        .collect();
    let ctx = Context {
        now: jiff::Timestamp::from_second(T).expect("time"),
        actor: servicehub_operator::domain::actor::Actor::cli(None, "test", "host"),
    };
    let report = engine::run(s.store.as_ref(), &objects, &Options { dry_run: false, ctx, summaries: true })
        .await
        .expect("apply");
    assert!(!report.has_failures(), "{:?}", report.objects);
}

fn ask(requester: &str, hours: i64) -> NewRequest {
    NewRequest {
        requester: requester.into(),
        workload: "ExchangeOnline".into(),
        case_id: "2611220010001".into(),
        reason: "mailbox repair".into(),
        duration: hours * HOUR,
    }
}

async fn open(s: &TestStore, requester: &str, hours: i64, at: i64) -> Request {
    lockbox::request(
        s.store.as_ref(),
        "contoso",
        "contoso",
        ask(requester, hours),
        Requester::person(&by(requester)),
        &Requesters::default(),
        at,
    )
    .await
    .expect("request")
}

async fn state(s: &TestStore, id: i64) -> Request {
    s.store.lockbox_get(id).await.expect("get").expect("exists")
}

fn refusal(r: Result<Request, Error>) -> String {
    match r {
        Err(Error::Refused(e)) => e.to_string(),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn a_pending_request_expires_exactly_at_its_deadline() {
    for s in stores().await {
        scenario(&s, |_| {}).await;
        let r = open(&s, "eng@microsoft.com", 4, T).await;
        assert_eq!(
            (r.state, r.pending_deadline),
            (State::Pending, Some(T + 12 * HOUR)),
            "{}: default pendingTtl 12h",
            s.name
        );
        assert!(
            r.approvers.contains(&APPROVER.to_owned()) && r.approvers.contains(&GA.to_owned()),
            "{:?}",
            r.approvers
        );
        let none = lockbox::sweep(s.store.as_ref(), T + 12 * HOUR - 1, None, false).await.expect("sweep");
        assert!(none.is_empty(), "{}: still pending at T+11:59:59", s.name);
        assert_eq!(state(&s, r.id).await.state, State::Pending);
        let swept = lockbox::sweep(s.store.as_ref(), T + 12 * HOUR, None, false).await.expect("sweep");
        assert_eq!(swept.len(), 1, "{}", s.name);
        let e = state(&s, r.id).await;
        assert_eq!(
            (e.state, e.closed_at, e.expired_by_inaction),
            (State::Expired, Some(T + 12 * HOUR), true),
            "{}",
            s.name
        );
        // A decision now is refused with the reason.
        let late =
            refusal(lockbox::act(s.store.as_ref(), r.id, Action::Approve, &by(GA), None, T + 12 * HOUR + 5).await);
        assert!(late.contains("is Expired; it cannot be approved (only Pending requests can)"), "{late}");

        // A shorter pendingTtl is honoured.
        scenario(&s, |p| p.pending_ttl = "30m".parse().expect("duration")).await;
        let short = open(&s, "eng@microsoft.com", 1, T + 100).await;
        assert_eq!(short.pending_deadline, Some(T + 100 + 1800), "{}", s.name);
        assert!(lockbox::sweep(s.store.as_ref(), T + 100 + 1799, None, false).await.expect("sweep").is_empty());
        assert_eq!(lockbox::sweep(s.store.as_ref(), T + 100 + 1800, None, false).await.expect("sweep").len(), 1);
    }
}

#[tokio::test]
async fn approved_access_is_time_bound_and_refusals_are_clear() {
    for s in stores().await {
        scenario(&s, |_| {}).await;
        let db = s.store.as_ref();
        let r = open(&s, "eng@microsoft.com", 4, T).await;
        let stranger = refusal(lockbox::act(db, r.id, Action::Approve, &by("someone@contoso.com"), None, T + 60).await);
        assert!(
            stranger.contains("someone@contoso.com may not approve request")
                && stranger.contains("only the policy's approvers"),
            "{stranger}"
        );
        let own = refusal(lockbox::act(db, r.id, Action::Approve, &by("eng@microsoft.com"), None, T + 60).await);
        assert!(own.contains("a requester can never decide their own request"), "{own}");
        let a =
            lockbox::act(db, r.id, Action::Approve, &by(GA), Some("go ahead".into()), T + 600).await.expect("approve");
        assert_eq!((a.state, a.access_deadline), (State::Approved, Some(T + 600 + 4 * HOUR)), "{}", s.name);
        assert!(lockbox::sweep(db, T + 600 + 4 * HOUR - 1, None, false).await.expect("sweep").is_empty());
        lockbox::sweep(db, T + 600 + 4 * HOUR, None, false).await.expect("sweep");
        let over = state(&s, r.id).await;
        assert_eq!((over.state, over.closed_at), (State::AccessExpired, Some(T + 600 + 4 * HOUR)), "{}", s.name);

        // Completed ends it early; then nothing is due.
        let r2 = open(&s, "eng@microsoft.com", 4, T).await;
        lockbox::act(db, r2.id, Action::Approve, &by(APPROVER), None, T + 60).await.expect("approve");
        let done =
            lockbox::act(db, r2.id, Action::Complete, &by("eng@microsoft.com"), None, T + 120).await.expect("complete");
        assert_eq!((done.state, done.closed_at), (State::Completed, Some(T + 120)));
        assert!(lockbox::sweep(db, T + 10 * HOUR, None, false).await.expect("sweep").is_empty(), "{}", s.name);

        // Refused at request time: too long, or a workload the policy does not cover.
        let too_long = lockbox::request(
            db,
            "contoso",
            "contoso",
            ask("eng@microsoft.com", 9),
            Requester::person(&by("eng@microsoft.com")),
            &Requesters::default(),
            T,
        )
        .await;
        assert_eq!(
            refusal(too_long),
            "requested access of 9h exceeds the policy's maxAccessDuration of 8h; ask for 8h or less"
        );
        scenario(&s, |p| p.workloads = vec![servicehub_operator::api::lockbox_policy::Workload::SharePointOnline])
            .await;
        let uncovered = refusal(
            lockbox::request(
                db,
                "contoso",
                "contoso",
                ask("eng@microsoft.com", 1),
                Requester::person(&by("eng@microsoft.com")),
                &Requesters::default(),
                T,
            )
            .await,
        );
        assert!(uncovered.contains("workload ExchangeOnline is not covered"), "{uncovered}");
        // The whole history is audited.
        let audit = db
            .audit(&servicehub_operator::store::AuditFilter { kind: Some("lockbox".into()), ..Default::default() })
            .await
            .expect("audit");
        let actions: Vec<&str> = audit.iter().filter(|a| a.kind == "lockbox").map(|a| a.action.as_str()).collect();
        for a in ["lockbox.pending", "lockbox.approved", "lockbox.accessexpired", "lockbox.completed"] {
            assert!(actions.contains(&a), "{}: no {a} in {actions:?}", s.name);
        }
    }
}

#[tokio::test]
async fn after_two_days_down_every_due_transition_is_applied_once_in_order_and_notified_once() {
    for s in stores().await {
        scenario(&s, |_| {}).await;
        let db = s.store.as_ref();
        // Requests in every state, opened an hour apart.
        let pending = open(&s, "a@microsoft.com", 1, T).await;
        let approved = open(&s, "b@microsoft.com", 2, T + HOUR).await;
        lockbox::act(db, approved.id, Action::Approve, &by(GA), None, T + HOUR + 60).await.expect("approve");
        let denied = open(&s, "c@microsoft.com", 1, T + 2 * HOUR).await;
        lockbox::act(db, denied.id, Action::Deny, &by(APPROVER), Some("not needed".into()), T + 2 * HOUR + 60)
            .await
            .expect("deny");
        let completed = open(&s, "d@microsoft.com", 1, T + 3 * HOUR).await;
        lockbox::act(db, completed.id, Action::Approve, &by(GA), None, T + 3 * HOUR + 60).await.expect("approve");
        lockbox::act(db, completed.id, Action::Complete, &by("d@microsoft.com"), None, T + 3 * HOUR + 120)
            .await
            .expect("complete");
        let revoked = open(&s, "e@microsoft.com", 1, T + 4 * HOUR).await;
        lockbox::act(db, revoked.id, Action::Approve, &by(GA), None, T + 4 * HOUR + 60).await.expect("approve");
        lockbox::act(db, revoked.id, Action::Revoke, &by(APPROVER), None, T + 4 * HOUR + 120).await.expect("revoke");
        let outbox_before = s.store.count("SELECT COUNT(*) FROM outbox WHERE kind = 'lockbox'").await.expect("count");

        // Two days later the operator starts and sweeps once.
        let preview = lockbox::sweep(db, T + 48 * HOUR, None, true).await.expect("dry run");
        assert_eq!(preview.len(), 2, "{}: the dry run finds the two overdue requests", s.name);
        assert_eq!(
            s.store.count("SELECT COUNT(*) FROM outbox WHERE kind = 'lockbox'").await.expect("count"),
            outbox_before,
            "a dry run writes nothing"
        );
        let swept = lockbox::sweep(db, T + 48 * HOUR, None, false).await.expect("sweep");
        let order: Vec<(i64, State, Option<i64>)> =
            swept.iter().map(|x| (x.after.id, x.after.state, x.after.closed_at)).collect();
        assert_eq!(
            order,
            vec![
                (approved.id, State::AccessExpired, Some(T + HOUR + 60 + 2 * HOUR)),
                (pending.id, State::Expired, Some(T + 12 * HOUR)),
            ],
            "{}: in deadline order, each stamped with its deadline",
            s.name
        );
        assert!(lockbox::sweep(db, T + 48 * HOUR, None, false).await.expect("again").is_empty(), "applied once");
        let notified = s.store.count("SELECT COUNT(*) FROM outbox WHERE kind = 'lockbox'").await.expect("count");
        assert_eq!(notified, outbox_before + 2, "{}: one notification per transition", s.name);
        for (id, st) in [(denied.id, State::Denied), (completed.id, State::Completed), (revoked.id, State::Revoked)] {
            assert_eq!(state(&s, id).await.state, st, "{}: final states stay", s.name);
        }
        let history = db
            .lockbox_list(&LockboxFilter { customer: Some("contoso".into()), ..Default::default() })
            .await
            .expect("list");
        assert_eq!(history.len(), 5);
        let expired =
            db.lockbox_list(&LockboxFilter { state: Some(State::Expired), ..Default::default() }).await.expect("list");
        assert_eq!(expired.iter().map(|r| r.id).collect::<Vec<_>>(), vec![pending.id]);
    }
}

#[tokio::test]
async fn disabling_the_policy_keeps_pending_requests_decidable_and_new_ones_need_no_approval() {
    for s in stores().await {
        scenario(&s, |_| {}).await;
        let db = s.store.as_ref();
        let before = open(&s, "eng@microsoft.com", 2, T).await;
        scenario(&s, |p| p.enabled = false).await;
        let after = open(&s, "eng@microsoft.com", 2, T + 60).await;
        assert_eq!((after.state, after.access_deadline), (State::NotRequired, Some(T + 60 + 2 * HOUR)), "{}", s.name);
        assert_eq!(state(&s, before.id).await.state, State::Pending, "{}: untouched by the change", s.name);
        let a = lockbox::act(db, before.id, Action::Approve, &by(GA), None, T + 120).await.expect("still decidable");
        assert_eq!(a.state, State::Approved);
        // Not-required access is still time-bound.
        lockbox::sweep(db, T + 60 + 2 * HOUR, None, false).await.expect("sweep");
        assert_eq!(state(&s, after.id).await.state, State::AccessExpired, "{}", s.name);
    }
}

#[tokio::test]
async fn of_two_concurrent_decisions_exactly_one_wins() {
    for s in stores().await {
        scenario(&s, |_| {}).await;
        for round in 0..10 {
            let r = open(&s, "eng@microsoft.com", 1, T + round).await;
            let (db1, db2) = (s.store.clone(), s.store.clone());
            let approve =
                tokio::spawn(
                    async move { lockbox::act(db1.as_ref(), r.id, Action::Approve, &by(GA), None, T + 100).await },
                );
            let deny = tokio::spawn(async move {
                lockbox::act(db2.as_ref(), r.id, Action::Deny, &by(APPROVER), None, T + 100).await
            });
            let results = [approve.await.expect("join"), deny.await.expect("join")];
            let won = results.iter().filter(|r| r.is_ok()).count();
            assert_eq!(won, 1, "{}: {results:?}", s.name);
            for r in &results {
                if let Err(e) = r {
                    assert!(
                        matches!(e, Error::Store(StoreError::Conflict(_)) | Error::Refused(_)),
                        "the loser learns someone else acted: {e}"
                    );
                }
            }
            let final_state = state(&s, r.id).await.state;
            assert!(matches!(final_state, State::Approved | State::Denied));
        }
    }
}

#[tokio::test]
async fn the_cli_requests_decides_lists_and_previews_a_sweep() {
    let s = crate::support::sqlite_unmigrated().await;
    s.store.migrate().await.expect("migrate");
    scenario(&s, |_| {}).await;
    let run = |args: &[&str], now: &str| {
        let mut all = vec!["lockbox"];
        all.extend_from_slice(args);
        all.extend(["--store", &s.url]);
        std::process::Command::new(env!("CARGO_BIN_EXE_servicehub"))
            .args(&all)
            .env("SERVICEHUB_UNSAFE_TEST_CLOCK", now)
            .output()
            .expect("run")
    };
    let t0 = "2026-11-22T10:00:00Z";
    let out = run(
        &[
            "request",
            "--customer",
            "contoso/contoso",
            "--workload",
            "ExchangeOnline",
            "--case",
            "42",
            "--reason",
            "repair",
            "--duration",
            "2h",
            "--as",
            "eng@microsoft.com",
            "-o",
            "json",
        ],
        t0,
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let created: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let id = created["id"].as_i64().expect("id").to_string();
    assert_eq!(created["state"], "Pending");
    let refused = run(&["approve", &id, "--as", "someone@contoso.com"], t0);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("only the policy's approvers may decide"));
    let out = run(&["approve", &id, "--as", GA, "--reason", "ok"], "2026-11-22T10:05:00Z");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Approved"));
    let preview = run(&["sweep", "--dry-run", "--at", "2026-11-22T12:05:00Z"], t0);
    let text = String::from_utf8_lossy(&preview.stdout);
    assert!(
        text.contains("Approved   AccessExpired   2026-11-22T12:05:00Z") && text.contains("1 request(s) would expire"),
        "{text}"
    );
    let list = run(&["list", "--state", "Approved"], t0);
    assert!(String::from_utf8_lossy(&list.stdout).contains("eng@microsoft.com"));
    let bad = run(&["list", "--state", "Open"], t0);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown state \"Open\""));
    let show = run(&["show", &id, "-o", "json"], t0);
    let shown: serde_json::Value = serde_json::from_slice(&show.stdout).expect("json");
    assert_eq!(shown["decidedBy"], GA);
    // The table view is the whole request: who, what, why, deadlines, and its history.
    let show = run(&["show", &id], "2026-11-22T10:10:00Z");
    let text = String::from_utf8_lossy(&show.stdout);
    for needle in [
        "Requester:      eng@microsoft.com",
        "Workload:       ExchangeOnline",
        "Case:           42",
        "Reason:         repair",
        "Duration:       2h",
        &format!("Decided:        2026-11-22T10:05:00Z by {GA}: ok"),
        "Access until:   2026-11-22T12:05:00Z (1h55m left)",
        "History:",
    ] {
        assert!(text.contains(needle), "expected {needle:?} in:\n{text}");
    }
    let history: Vec<&str> = text.lines().skip_while(|l| *l != "History:").skip(2).collect();
    assert_eq!(history.len(), 2, "requested, then approved: {text}");
    assert!(history[0].contains("pending") && history[0].contains("eng@microsoft.com"), "{text}");
    assert!(
        history[1].contains("approved") && history[1].contains(GA) && history[1].contains("not authenticated"),
        "{text}"
    );
}

/// A CLI actor (the store trusts it; the console authenticates people).
fn by(email: &str) -> servicehub_operator::domain::actor::Actor {
    servicehub_operator::domain::actor::Actor::cli(Some(email), "test", "host")
}

#[tokio::test]
async fn only_microsoft_engineers_open_requests_by_domain_or_by_a_microsoft_role() {
    for s in stores().await {
        scenario(&s, |_| {}).await;
        let db = s.store.as_ref();
        let ask_as = |who: &'static str, requesters: Requesters| async move {
            let actor = by(who);
            lockbox::request(db, "contoso", "contoso", ask(who, 1), Requester::person(&actor), &requesters, T).await
        };
        // The customer's own service administrator is refused, and nothing is stored.
        let before = db.lockbox_list(&LockboxFilter::default()).await.expect("list").len();
        match ask_as(APPROVER, Requesters::default()).await {
            Err(e @ Error::NotRequester { .. }) => assert_eq!(
                e.to_string(),
                "megan.bowen@contoso.com may not open Customer Lockbox requests for contoso/contoso: requests come \
                 from Microsoft engineers, an address at microsoft.com or a Customer Success Account Manager or \
                 Incident Manager of this customer",
                "{}",
                s.name
            ),
            other => panic!("{}: expected NotRequester, got {other:?}", s.name),
        }
        assert_eq!(db.lockbox_list(&LockboxFilter::default()).await.expect("list").len(), before, "{}", s.name);
        // With another domain configured, the CSAM still may (a Microsoft role for this
        // customer), a microsoft.com address without a role may not.
        let other = Requesters::from_domains(&[" @Engineers.Example ".into()]);
        assert_eq!(other.domains, ["engineers.example"]);
        let csam = ask_as("pradeep.gupta@microsoft.com", other.clone()).await.expect("the CSAM may");
        assert_eq!(csam.requester, "pradeep.gupta@microsoft.com");
        assert!(matches!(ask_as("eng@microsoft.com", other.clone()).await, Err(Error::NotRequester { .. })));
        assert!(ask_as("someone@engineers.example", other).await.is_ok(), "{}", s.name);
        // A Global Administrator holds no Microsoft role.
        let ga = Requesters::from_domains(&["engineers.example".into()]);
        assert!(matches!(ask_as(GA, ga).await, Err(Error::NotRequester { .. })), "{}", s.name);
    }
}
