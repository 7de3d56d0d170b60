//! Customer Lockbox in the console and its API, over real sockets (`servicehub serve`, the
//! sign-in link from the `.eml` the file transport wrote), on SQLite and PostgreSQL: who may
//! open requests, the approver's inbox, decisions stamped with the signed-in identity, a lost
//! race told who acted first, the requester completing, the deadline, and the refusals.

use crate::console::{Browser, Served, apply_examples, count};
use crate::support::{TestStore, stderr, stores};
use std::process::Command;

const ENGINEER: &str = "eng@microsoft.com";
/// The policy's approver by email.
const APPROVER: &str = "megan.bowen@contoso.com";
/// A Global Administrator: an approver through the policy's role.
const GA: &str = "nestor.wilke@contoso.com";
/// A customer user who is neither.
const USER: &str = "diego.siciliani@contoso.com";

fn ask(customer: &str, csrf: &str) -> Vec<(&'static str, String)> {
    vec![
        ("csrf", csrf.to_owned()),
        ("customer", customer.to_owned()),
        ("workload", "ExchangeOnline".into()),
        ("caseId", "2611220010001".into()),
        ("reason", "mailbox repair".into()),
        ("duration", "4h".into()),
    ]
}

fn refs<'a>(v: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    v.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// The CSRF token of the signed-in session (the sign-out form of every page carries it).
async fn session_csrf(b: &mut Browser) -> String {
    b.get("/").await.csrf()
}

/// A request opened through the CLI at `at` (RFC 3339), by `who`.
fn cli_request(s: &TestStore, at: &str, who: &str) -> i64 {
    let out = Command::new(env!("CARGO_BIN_EXE_servicehub"))
        .args(["lockbox", "request", "--customer", "contoso/contoso", "--workload", "SharePointOnline", "--case", "7"])
        .args(["--reason", "site restore", "--duration", "1h", "--as", who, "--store", &s.url, "-o", "json"])
        .env("SERVICEHUB_UNSAFE_TEST_CLOCK", at)
        .output()
        .expect("lockbox request");
    assert!(out.status.success(), "{}", stderr(&out));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    r["id"].as_i64().expect("id")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engineer_asks_an_approver_decides_a_second_approver_loses_the_race_and_the_engineer_completes() {
    for s in stores().await {
        let invites = tempfile::tempdir().expect("tempdir");
        apply_examples(&s, invites.path(), &[]);
        let served = Served::start(&s.url, &[]).await;
        let outbox = served.outbox.clone();

        // The engineer: the form lists the customers they may ask for access to.
        let mut eng = Browser::new(&served.base);
        eng.sign_in_by_email(&outbox, ENGINEER).await;
        let inbox = eng.get("/lockbox").await;
        assert_eq!(inbox.status, 200, "{}", inbox.body);
        assert!(inbox.body.contains("id=\"new-request\"") && inbox.body.contains("id=\"no-mine\""), "{}", inbox.body);
        let form = eng.get("/lockbox/new").await;
        assert_eq!(form.status, 200, "{}", form.body);
        assert!(form.body.contains("<option value=\"contoso/contoso\""), "{}", form.body);
        let csrf = form.csrf();

        // Bad input is named by field, and nothing is stored.
        let mut long = ask("contoso/contoso", &csrf);
        long[5].1 = "9h".into();
        let refused = eng.post("/lockbox/requests", &refs(&long)).await;
        assert_eq!(refused.status, 422, "{}", refused.body);
        assert!(
            refused.body.contains("duration: requested access of 9h exceeds the policy&#x27;s maxAccessDuration of 8h")
                || refused
                    .body
                    .contains("duration: requested access of 9h exceeds the policy&#39;s maxAccessDuration of 8h"),
            "{}",
            refused.body
        );
        assert!(refused.body.contains("id=\"duration\" name=\"duration\" value=\"9h\" required aria-invalid=\"true\""));
        let mut no_case = ask("contoso/contoso", &csrf);
        no_case[3].1 = "  ".into();
        let refused = eng.post("/lockbox/requests", &refs(&no_case)).await;
        assert_eq!(refused.status, 422);
        assert!(refused.body.contains("caseId: the support case id"), "{}", refused.body);
        let forged = eng.post("/lockbox/requests", &refs(&ask("contoso/contoso", "forged"))).await;
        assert_eq!(forged.status, 403, "{}", forged.body);
        assert_eq!(count(&s, "SELECT COUNT(*) FROM lockbox_requests").await, 0, "{}", s.name);

        let opened = eng.post("/lockbox/requests", &refs(&ask("contoso/contoso", &csrf))).await;
        assert_eq!((opened.status, opened.header("location")), (303, "/lockbox/requests/1"), "{}", opened.body);
        let page = eng.get("/lockbox/requests/1").await;
        assert_eq!(page.text_of("state").as_deref(), Some("Pending"), "{}", page.body);
        assert!(!page.body.contains("id=\"approve\""), "the requester has no decision buttons");

        // A customer user is refused as a requester, by the page and by the form.
        let mut user = Browser::new(&served.base);
        user.sign_in_by_email(&outbox, USER).await;
        let form = user.get("/lockbox/new").await;
        assert_eq!(form.status, 403, "{}", form.body);
        assert!(form.body.contains("requests come from Microsoft engineers"), "{}", form.body);
        let ucsrf = session_csrf(&mut user).await;
        let refused = user.post("/lockbox/requests", &refs(&ask("contoso/contoso", &ucsrf))).await;
        assert_eq!(refused.status, 403, "{}", refused.body);
        assert!(refused.body.contains("diego.siciliani@contoso.com may not open Customer Lockbox requests"));
        // ... sees neither the request nor its buttons, and cannot decide it.
        assert_eq!(user.get("/lockbox/requests/1").await.status, 403);
        let tried = user.post("/lockbox/requests/1", &[("csrf", &ucsrf), ("action", "approve")]).await;
        assert_eq!(tried.status, 403, "{}", tried.body);
        assert!(tried.body.contains("may not approve request 1: only its approvers may"), "{}", tried.body);
        assert_eq!(count(&s, "SELECT COUNT(*) FROM lockbox_requests").await, 1);
        assert_eq!(count(&s, "SELECT COUNT(*) FROM lockbox_requests WHERE state = 'Pending'").await, 1);

        // The approvers see it in their inbox, with the time left before it expires.
        let mut megan = Browser::new(&served.base);
        megan.sign_in_by_email(&outbox, APPROVER).await;
        let mut nestor = Browser::new(&served.base);
        nestor.sign_in_by_email(&outbox, GA).await;
        let inbox = megan.get("/lockbox").await;
        assert!(inbox.body.contains("id=\"pending-1\""), "{}", inbox.body);
        let at = inbox.body.find("data-left=\"").expect("a countdown") + 11;
        let left: i64 =
            inbox.body[at..].chars().take_while(char::is_ascii_digit).collect::<String>().parse().expect("n");
        assert!((43_140..=43_200).contains(&left), "about 12 h left: {left}");
        assert!(!inbox.body.contains("id=\"new-request\""), "a customer's approver opens no requests");
        // The policy as applied: approvers resolved to people, deadlines, workloads, and
        // the live request; not for a customer user.
        let policy = megan.get("/lockbox/policy?customer=contoso/contoso").await;
        assert_eq!(policy.status, 200, "{}", policy.body);
        assert_eq!(
            policy.text_of("approvers").as_deref(),
            Some("joni.sherman@contoso.com, megan.bowen@contoso.com, nestor.wilke@contoso.com")
        );
        assert_eq!(
            (policy.text_of("pending-ttl").as_deref(), policy.text_of("max-access").as_deref()),
            (Some("12h"), Some("8h"))
        );
        assert!(
            policy.body.contains("<a href=\"/lockbox/requests/1\">Request 1</a></td><td>Pending</td>"),
            "{}",
            policy.body
        );
        assert_eq!(user.get("/lockbox/policy?customer=contoso/contoso").await.status, 403);
        let detail = megan.get("/lockbox/requests/1").await;
        assert!(detail.body.contains("id=\"approve\"") && detail.body.contains("id=\"deny\""), "{}", detail.body);
        assert!(detail.body.contains("Contoso Ltd (contoso/contoso)") && detail.body.contains(ENGINEER));

        // Denying needs a reason.
        let m_csrf = detail.csrf();
        let no_reason = megan.post("/lockbox/requests/1", &[("csrf", &m_csrf), ("action", "deny")]).await;
        assert_eq!(no_reason.status, 422, "{}", no_reason.body);
        assert!(no_reason.body.contains("reason: say why the request is denied"), "{}", no_reason.body);

        // Both approve at once: exactly one wins, the other is told who acted first.
        let n_csrf = nestor.get("/lockbox/requests/1").await.csrf();
        let m_form = [("csrf", m_csrf.as_str()), ("action", "approve"), ("reason", "go ahead")];
        let n_form = [("csrf", n_csrf.as_str()), ("action", "approve"), ("reason", "fine")];
        let (a, b) =
            tokio::join!(megan.post("/lockbox/requests/1", &m_form), nestor.post("/lockbox/requests/1", &n_form));
        let (won, lost, winner) = match (a.status, b.status) {
            (303, 409) => (a, b, APPROVER),
            (409, 303) => (b, a, GA),
            other => panic!("{}: expected one 303 and one 409, got {other:?}: {} / {}", s.name, a.body, b.body),
        };
        assert_eq!(won.header("location"), "/lockbox/requests/1?done=approve");
        assert!(lost.body.contains(&format!("{winner} approved this request first, at ")), "{}", lost.body);
        let after = megan.get("/lockbox/requests/1").await;
        assert_eq!(after.text_of("state").as_deref(), Some("Approved"));
        assert!(after.text_of("decided").is_some_and(|d| d.contains(winner)), "{}", after.body);
        assert!(after.body.contains("id=\"revoke\""), "an approver may revoke active access");

        // The engineer completes it.
        let page = eng.get("/lockbox/requests/1").await;
        assert!(page.body.contains("id=\"complete\""), "{}", page.body);
        let done = eng.post("/lockbox/requests/1", &[("csrf", &page.csrf()), ("action", "complete")]).await;
        assert_eq!((done.status, done.header("location")), (303, "/lockbox/requests/1?done=complete"), "{}", done.body);
        let page = eng.get("/lockbox/requests/1?done=complete").await;
        assert_eq!(page.text_of("state").as_deref(), Some("Completed"));
        assert_eq!(page.text_of("done").as_deref(), Some("You completed this request."));

        // Each step is audited with the authenticated person, the console channel and the
        // server's clock; the loser wrote nothing.
        let history = s
            .store
            .strings(
                "SELECT action || ' ' || actor || ' ' || channel FROM audit WHERE kind = 'lockbox' AND object = '1' \
                 ORDER BY id",
            )
            .await
            .expect("audit");
        assert_eq!(
            history,
            [
                format!("lockbox.pending {ENGINEER} console-email"),
                format!("lockbox.approved {winner} console-email"),
                format!("lockbox.completed {ENGINEER} console-email"),
            ],
            "{}",
            s.name
        );
        // The history on the page says the same, as people read it.
        assert!(page.body.contains("console (email link)"), "{}", page.body);
        // The auditor (a Global Administrator) reads and exports the customer's audit: the
        // decision with the approver's authenticated identity, the sign-ins of its people.
        let audit = nestor.get("/audit?customer=contoso/contoso&kind=lockbox").await;
        assert_eq!(audit.status, 200, "{}", audit.body);
        assert!(audit.body.contains("<td>lockbox.approved</td>"), "{}", audit.body);
        assert!(!audit.body.contains("<td>membership.create</td>"), "filtered by kind");
        let csv = nestor.get("/audit/export?format=csv&customer=contoso/contoso").await;
        assert_eq!(csv.status, 200, "{}", csv.body);
        assert_eq!(csv.header("content-type"), "text/csv; charset=utf-8");
        assert!(csv.header("content-disposition").contains("audit-contoso-contoso.csv"));
        assert!(csv.body.starts_with("id,at,actor,channel,subject,action,kind,object,before,after\r\n"));
        let decision = csv.body.lines().find(|l| l.contains(",lockbox.approved,")).expect("the decision");
        assert!(decision.contains(&format!(",{winner},console-email,{winner},")), "{decision}");
        assert!(csv.body.lines().any(|l| l.contains(",session.start,Session,megan.bowen@contoso.com")), "sign-ins");
        let json = nestor.get("/api/v1/audit/export?format=json&customer=contoso/contoso&channel=console-email").await;
        let v: serde_json::Value = serde_json::from_str(&json.body).expect("json");
        let items = v["items"].as_array().expect("items");
        assert!(!items.is_empty() && items.iter().all(|e| e["channel"] == "console-email"), "{v}");
        let paged = nestor.get("/api/v1/audit?customer=contoso/contoso").await;
        let v: serde_json::Value = serde_json::from_str(&paged.body).expect("json");
        assert_eq!(v["page"], 1);
        assert!(v["total"].as_u64().is_some_and(|t| t > 50) && v["items"].as_array().is_some_and(|a| a.len() == 50));
        let bad = nestor.get("/api/v1/audit?customer=contoso/contoso&since=yesterday").await;
        assert_eq!(bad.status, 422);
        assert!(bad.body.contains("\"field\":\"since\""), "{}", bad.body);
        // Neither the engineer nor the approver by email is an auditor of the customer.
        assert_eq!(eng.get("/audit?customer=contoso/contoso").await.status, 403);
        assert_eq!(megan.get("/api/v1/audit/export?format=csv&customer=contoso/contoso").await.status, 403);

        // The approvers were notified with a link to the page (which decides nothing).
        let notes = crate::support::eml_files(&outbox);
        let (_, note) =
            notes.iter().find(|(p, _)| p.to_string_lossy().ends_with("lockbox_1_Pending.eml")).expect("mail");
        assert!(note.contains(&format!("{}/lockbox/requests/1", served.base)), "{note}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_takes_the_session_with_csrf_names_bad_fields_and_refuses_a_decision_after_the_deadline() {
    for s in stores().await {
        let invites = tempfile::tempdir().expect("tempdir");
        apply_examples(&s, invites.path(), &[]);
        // Opened 12 hours less 3 seconds ago: it expires 3 s from now.
        let opened = jiff::Timestamp::from_second(jiff::Timestamp::now().as_second() - (12 * 3600 - 3)).expect("t");
        let id = cli_request(&s, &opened.to_string(), ENGINEER);
        let served = Served::start(&s.url, &[]).await;
        let anonymous = reqwest::get(format!("{}/api/v1/lockbox/inbox", served.base)).await.expect("get");
        assert_eq!(anonymous.status(), 401);
        assert_eq!(anonymous.headers()["www-authenticate"], "Bearer");

        let mut megan = Browser::new(&served.base);
        megan.sign_in_by_email(&served.outbox, APPROVER).await;
        let inbox = megan.get("/api/v1/lockbox/inbox").await;
        assert_eq!(inbox.status, 200, "{}", inbox.body);
        let v: serde_json::Value = serde_json::from_str(&inbox.body).expect("json");
        assert_eq!(v["pending"][0]["id"], id, "{v}");
        assert_eq!(v["pending"][0]["requester"], ENGINEER);

        // A write needs the session's CSRF token; a body with an unknown field is named.
        let path = format!("/api/v1/lockbox/requests/{id}/approve");
        let no_csrf = megan.post_json(&path, "{}", &[]).await;
        assert_eq!(no_csrf.status, 403, "{}", no_csrf.body);
        assert!(no_csrf.body.contains("\"field\":\"X-CSRF-Token\""), "{}", no_csrf.body);
        let csrf = session_csrf(&mut megan).await;
        let h = [("x-csrf-token", csrf.as_str())];
        let unknown = megan.post_json(&path, r#"{"approver":"x"}"#, &h).await;
        assert_eq!(unknown.status, 400, "{}", unknown.body);
        assert!(unknown.body.contains("approver: not a field of this request"), "{}", unknown.body);
        let bad_id = megan.post_json("/api/v1/lockbox/requests/x1/approve", "{}", &h).await;
        assert_eq!((bad_id.status, bad_id.body.contains("\"field\":\"id\"")), (400, true), "{}", bad_id.body);
        assert_eq!(megan.post_json("/api/v1/lockbox/requests/999/approve", "{}", &h).await.status, 404);
        let created = megan
            .post_json(
                "/api/v1/lockbox/requests",
                r#"{"customer":"contoso/contoso","workload":"ExchangeOnline","caseId":"1","reason":"r","duration":"1h"}"#,
                &h,
            )
            .await;
        assert_eq!(created.status, 403, "a customer's approver opens no requests: {}", created.body);

        // The detail names what the reader may do; after the deadline, nothing.
        let detail = megan.get(&format!("/api/v1/lockbox/requests/{id}")).await;
        let v: serde_json::Value = serde_json::from_str(&detail.body).expect("json");
        assert_eq!(v["allowedActions"], serde_json::json!(["approve", "deny"]), "{v}");
        let deadline: jiff::Timestamp = v["request"]["pendingDeadline"].as_str().expect("deadline").parse().expect("t");
        assert_eq!(deadline, opened + jiff::SignedDuration::from_secs(12 * 3600), "exactly 12:00:00 after opening");
        while jiff::Timestamp::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        let late = megan.post_json(&path, r#"{"reason":"too late"}"#, &h).await;
        assert_eq!(late.status, 409, "{}", late.body);
        let v: serde_json::Value = serde_json::from_str(&late.body).expect("json");
        assert_eq!(v["reason"], "PastDeadline", "{v}");
        assert!(v["message"].as_str().is_some_and(|m| m.contains("a decision after the deadline is refused")), "{v}");
        let state = s
            .store
            .strings(&format!("SELECT state || ' ' || closed_at FROM lockbox_requests WHERE id = {id}"))
            .await
            .expect("state");
        assert_eq!(state, [format!("Expired {}", deadline.as_second())], "{}: closed at its deadline", s.name);
        let approvals = "SELECT COUNT(*) FROM audit WHERE kind = 'lockbox' AND action = 'lockbox.approved'";
        assert_eq!(count(&s, approvals).await, 0);
    }
}
