//! Access in the console and its API, over real sockets, on SQLite and PostgreSQL: a person's
//! own access with sources and the no-export flag; a Workspace Administrator looks up a
//! member of their workspace and is refused for another; a Global Administrator reaches
//! everyone; "who holds P in W"; an expired invitation sent again from the look-up page.

use crate::console::{Browser, Served, apply_examples, count};
use crate::support::{stderr, stores};
use std::process::Command;

const LEE: &str = "lee.gu@contoso.com";
/// Workspace Administrator of contoso-emea.
const ADELE: &str = "adele.vance@contoso.com";
/// A member of contoso-labs only.
const GRADY: &str = "grady.archie@contoso.com";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_see_their_access_and_administrators_look_up_only_within_their_reach() {
    for s in stores().await {
        let invites = tempfile::tempdir().expect("tempdir");
        apply_examples(&s, invites.path(), &[]);
        // Fifteen days on, with no automatic re-issue: every invitation has expired.
        let later = (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(15 * 24)).to_string();
        let out = Command::new(env!("CARGO_BIN_EXE_servicehub"))
            .args(["notify", "--once", "--store", &s.url])
            .env("SERVICEHUB_UNSAFE_TEST_CLOCK", &later)
            .env("SERVICEHUB_INVITATION_REISSUES", "0")
            .env("SERVICEHUB_NOTIFY_DIR", invites.path())
            .output()
            .expect("notify");
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(count(&s, "SELECT COUNT(*) FROM invitations WHERE state = 'Expired'").await, 13, "{}", s.name);
        let served = Served::start(&s.url, &["--invitation-reissues", "1"]).await;

        // Lee's own access: the EMEA permissions with their sources; no look-up offered.
        let mut lee = Browser::new(&served.base);
        lee.sign_in_by_email(&served.outbox, LEE).await;
        let mine = lee.get("/access?workspace=contoso-emea").await;
        assert_eq!(mine.status, 200, "{}", mine.body);
        assert!(mine.body.contains("Workspace contoso-emea") && mine.body.contains("ViewAllSupportCases"));
        assert!(!mine.body.contains("id=\"lookup-heading\""), "Lee administers nothing");
        let refused = lee.get("/access/lookup?customer=contoso/contoso&subject=adele.vance@contoso.com").await;
        assert_eq!(refused.status, 403, "{}", refused.body);
        let api = lee.get("/api/v1/access/me").await;
        let v: serde_json::Value = serde_json::from_str(&api.body).expect("json");
        assert!(v["items"].as_array().is_some_and(|a| a.iter().all(|l| l["workspace"] == "contoso-emea")), "{v}");

        // The Incident Manager sees support cases, view only.
        let mut irvin = Browser::new(&served.base);
        irvin.sign_in_by_email(&served.outbox, "irvin.sayers@microsoft.com").await;
        let mine = irvin.get("/access").await;
        assert!(
            mine.body
                .contains("ViewAllSupportCases</td><td>role IncidentManager</td><td>directly</td><td>no (view only)")
        );

        // Adele administers EMEA: she looks up Lee there, and is refused for Labs.
        let mut adele = Browser::new(&served.base);
        adele.sign_in_by_email(&served.outbox, ADELE).await;
        let mine = adele.get("/access").await;
        assert!(mine.body.contains("In contoso/contoso you may look up workspaces contoso-emea."), "{}", mine.body);
        let found = adele
            .get("/access/lookup?customer=contoso/contoso&subject=Lee.Gu@contoso.com&workspace=contoso-emea")
            .await;
        assert_eq!(found.status, 200, "{}", found.body);
        assert!(found.body.contains("What lee.gu@contoso.com can see in contoso/contoso"), "{}", found.body);
        assert!(found.body.contains("<td>Workspace contoso-emea</td><td>ViewAllSupportCases</td>"), "{}", found.body);
        let other =
            adele.get(&format!("/access/lookup?customer=contoso/contoso&subject={GRADY}&workspace=contoso-labs")).await;
        assert_eq!(other.status, 403, "{}", other.body);
        assert!(other.body.contains(
            "may not look up people in workspace contoso-labs of contoso/contoso: you administer contoso-emea"
        ));
        // Without a workspace, what lies outside hers is not shown.
        let outside = adele.get(&format!("/access/lookup?customer=contoso/contoso&subject={GRADY}")).await;
        assert_eq!(outside.status, 200);
        assert!(
            outside.body.contains("id=\"no-access\"") && outside.body.contains("id=\"no-invitations\""),
            "{}",
            outside.body
        );
        let api = adele.get("/api/v1/access/lookup?customer=contoso/contoso&subject=grady.archie@contoso.com&workspace=contoso-labs").await;
        assert_eq!(api.status, 403, "{}", api.body);
        // Who holds ManageUsers in EMEA: Adele (her role), the CSAM through customer level.
        let holders = adele
            .get("/api/v1/access/holders?customer=contoso/contoso&workspace=contoso-emea&permission=ManageUsers")
            .await;
        let v: serde_json::Value = serde_json::from_str(&holders.body).expect("json");
        let who: Vec<&str> =
            v["items"].as_array().expect("items").iter().filter_map(|g| g["subject"].as_str()).collect();
        assert!(who.contains(&ADELE) && who.contains(&"pradeep.gupta@microsoft.com") && !who.contains(&LEE), "{v}");
        let bad =
            adele.get("/api/v1/access/holders?customer=contoso/contoso&workspace=contoso-emea&permission=Fly").await;
        assert_eq!(bad.status, 422);
        assert!(bad.body.contains("\"field\":\"permission\""), "{}", bad.body);

        // Lee's expired invitation, sent again by Adele from the look-up page.
        assert!(found.body.contains("id=\"resend-contoso-emea\""), "{}", found.body);
        let csrf = found.csrf();
        let sent = adele
            .post(
                "/access/resend",
                &[("csrf", &csrf), ("customer", "contoso/contoso"), ("email", LEE), ("workspace", "contoso-emea")],
            )
            .await;
        assert_eq!(sent.status, 303, "{}", sent.body);
        let back = adele.get(sent.header("location")).await;
        assert!(
            back.body.contains("workspace contoso-emea: sent again to lee.gu@contoso.com (issue 2)"),
            "{}",
            back.body
        );
        let audited = s
            .store
            .strings("SELECT actor || ' ' || channel FROM audit WHERE action = 'invitation.resend'")
            .await
            .expect("audit");
        assert_eq!(audited, [format!("{ADELE} console-email")], "{}", s.name);
        // Not for Labs, and not without the session's CSRF token.
        let labs =
            [("csrf", csrf.as_str()), ("customer", "contoso/contoso"), ("email", GRADY), ("workspace", "contoso-labs")];
        assert_eq!(adele.post("/access/resend", &labs).await.status, 403);
        let forged = [("csrf", "x"), ("customer", "contoso/contoso"), ("email", LEE), ("workspace", "contoso-emea")];
        assert_eq!(adele.post("/access/resend", &forged).await.status, 403);
        assert_eq!(count(&s, "SELECT COUNT(*) FROM audit WHERE action = 'invitation.resend'").await, 1);

        // A Global Administrator reaches everyone, at customer level too.
        let mut nestor = Browser::new(&served.base);
        nestor.sign_in_by_email(&served.outbox, "nestor.wilke@contoso.com").await;
        let any = nestor.get(&format!("/access/lookup?customer=contoso/contoso&subject={GRADY}")).await;
        assert!(any.body.contains("Workspace contoso-labs"), "{}", any.body);
        let group = nestor.get("/access/lookup?customer=contoso/contoso&subject=nope").await;
        assert_eq!(group.status, 200, "a group id is a subject too");
    }
}

/// A request opened through the CLI (now), by `who`; its id.
fn open_request(url: &str, who: &str) -> i64 {
    let out = Command::new(env!("CARGO_BIN_EXE_servicehub"))
        .args(["lockbox", "request", "--customer", "contoso/contoso", "--workload", "ExchangeOnline", "--case", "5"])
        .args(["--reason", "repair", "--duration", "1h", "--as", who, "--store", url, "-o", "json"])
        .output()
        .expect("request");
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("json")["id"].as_i64().expect("id")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_answers_each_role_as_the_store_grants() {
    // The people of the examples, by role (the approver is the policy's approver by email).
    const ROLES: [(&str, &str); 9] = [
        ("none", ""),
        ("User", "diego.siciliani@contoso.com"),
        ("WA of another workspace", "grady.archie@contoso.com"),
        ("WA", ADELE),
        ("GA", "nestor.wilke@contoso.com"),
        ("CSAM", "pradeep.gupta@microsoft.com"),
        ("IM", "irvin.sayers@microsoft.com"),
        ("approver", "megan.bowen@contoso.com"),
        ("requester", "eng@microsoft.com"),
    ];
    let ok = |who: &[&str]| -> [u16; 9] {
        let mut out = [403; 9];
        out[0] = 401;
        for (i, (role, _)) in ROLES.iter().enumerate() {
            if who.contains(role) {
                out[i] = 200;
            }
        }
        out
    };
    let everyone = ok(&["User", "WA of another workspace", "WA", "GA", "CSAM", "IM", "approver", "requester"]);
    let emea = "customer=contoso/contoso&workspace=contoso-emea";
    for s in stores().await {
        let invites = tempfile::tempdir().expect("tempdir");
        apply_examples(&s, invites.path(), &[]);
        let pending = open_request(&s.url, "eng@microsoft.com");
        let served = Served::start(&s.url, &[]).await;
        let mut people = Vec::new();
        for (role, email) in ROLES {
            let mut b = Browser::new(&served.base);
            let csrf = if email.is_empty() {
                String::new()
            } else {
                b.sign_in_by_email(&served.outbox, email).await;
                b.get("/").await.csrf()
            };
            people.push((role, b, csrf));
        }
        let reads: Vec<(String, [u16; 9])> = vec![
            ("/api/v1/access/me".into(), everyone),
            (format!("/api/v1/access/lookup?{emea}&subject={LEE}"), ok(&["WA", "GA", "CSAM"])),
            (format!("/api/v1/access/holders?{emea}&permission=ManageUsers"), ok(&["WA", "GA", "CSAM"])),
            ("/api/v1/audit?customer=contoso/contoso".into(), ok(&["GA", "CSAM"])),
            ("/api/v1/audit/export?format=csv&customer=contoso/contoso".into(), ok(&["GA", "CSAM"])),
            ("/api/v1/lockbox/inbox".into(), everyone),
            ("/api/v1/lockbox/requests".into(), everyone),
            (format!("/api/v1/lockbox/requests/{pending}"), ok(&["GA", "CSAM", "approver", "requester"])),
        ];
        let mut wrong = Vec::new();
        for (path, expected) in &reads {
            for (i, (role, b, _)) in people.iter_mut().enumerate() {
                let got = b.get(path).await.status;
                if got != expected[i] {
                    wrong.push(format!("GET {path} as {role}: {got}, expected {}", expected[i]));
                }
            }
        }
        // The pages answer as their endpoints (a page without a session redirects to sign-in).
        let pages: Vec<(String, [u16; 9])> = vec![
            (format!("/access/lookup?{emea}&subject={LEE}"), ok(&["WA", "GA", "CSAM"])),
            ("/audit?customer=contoso/contoso".into(), ok(&["GA", "CSAM"])),
            (format!("/lockbox/requests/{pending}"), ok(&["GA", "CSAM", "approver", "requester"])),
            ("/lockbox/new".into(), ok(&["CSAM", "IM", "requester"])),
        ];
        for (path, expected) in &pages {
            for (i, (role, b, _)) in people.iter_mut().enumerate() {
                let got = b.get(path).await.status;
                let expected = if i == 0 { 303 } else { expected[i] };
                if got != expected {
                    wrong.push(format!("GET {path} as {role}: {got}, expected {expected}"));
                }
            }
        }
        // Writes: resend (Lee's invitation is still valid: nothing is sent, but the answer
        // says so to those who may ask), opening a request, and decisions.
        let resend = format!(r#"{{"customer":"contoso/contoso","email":"{LEE}","workspace":"contoso-emea"}}"#);
        let ask =
            r#"{"customer":"contoso/contoso","workload":"ExchangeOnline","caseId":"9","reason":"r","duration":"1h"}"#;
        let writes: Vec<(String, String, [u16; 9])> = vec![
            ("/api/v1/invitations/resend".into(), resend, ok(&["WA", "GA", "CSAM"])),
            ("/api/v1/lockbox/requests".into(), ask.into(), {
                let mut e = ok(&["CSAM", "IM", "requester"]);
                e.iter_mut().filter(|c| **c == 200).for_each(|c| *c = 201);
                e
            }),
        ];
        for (path, body, expected) in &writes {
            for (i, (role, b, csrf)) in people.iter_mut().enumerate() {
                let got = b.post_json(path, body, &[("x-csrf-token", csrf.as_str())]).await.status;
                if got != expected[i] {
                    wrong.push(format!("POST {path} as {role}: {got}, expected {}", expected[i]));
                }
            }
        }
        // Decisions: the approvers (by email, and the GA through the policy's role) each on a
        // request of their own; everyone else is refused on the pending one.
        let decide = ok(&["GA", "approver"]);
        for (i, (role, b, csrf)) in people.iter_mut().enumerate() {
            let id = if decide[i] == 200 { open_request(&s.url, "eng@microsoft.com") } else { pending };
            let path = format!("/api/v1/lockbox/requests/{id}/approve");
            let got = b.post_json(&path, "{}", &[("x-csrf-token", csrf.as_str())]).await.status;
            if got != decide[i] {
                wrong.push(format!("POST {path} as {role}: {got}, expected {}", decide[i]));
            }
        }
        let complete = ok(&["requester"]);
        let approved = open_request(&s.url, "eng@microsoft.com");
        let (_, megan, m_csrf) = &mut people[7];
        let m_csrf = m_csrf.clone();
        let path = format!("/api/v1/lockbox/requests/{approved}/approve");
        assert_eq!(megan.post_json(&path, "{}", &[("x-csrf-token", m_csrf.as_str())]).await.status, 200);
        for (i, (role, b, csrf)) in people.iter_mut().enumerate() {
            let path = format!("/api/v1/lockbox/requests/{approved}/complete");
            let got = b.post_json(&path, "{}", &[("x-csrf-token", csrf.as_str())]).await.status;
            if got != complete[i] {
                wrong.push(format!("POST {path} as {role}: {got}, expected {}", complete[i]));
            }
        }
        assert!(wrong.is_empty(), "{}: {} answers differ:\n{}", s.name, wrong.len(), wrong.join("\n"));
        assert_eq!(
            count(&s, &format!("SELECT COUNT(*) FROM lockbox_requests WHERE id = {pending} AND state = 'Pending'"))
                .await,
            1,
            "the refused decisions changed nothing"
        );
    }
}
