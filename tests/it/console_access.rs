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
