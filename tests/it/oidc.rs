//! OpenID Connect sign-in against a real provider: the certified `oidc-provider` package
//! (npm, installed by `.ci/run` into `tests/oidc/node_modules`) on loopback, with a fixed
//! client and test accounts, one of them in Microsoft's consumer tenant. Real round trips
//! through the console's HTTP server; forged, expired, wrongly signed, wrong-audience and
//! wrong-issuer ID tokens are refused on the bearer endpoint, and nothing is written.

use crate::console::{Browser, Page, Served};
use crate::support::{TestStore, eml_files, repo, stderr, token_in};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The provider, running.
pub(crate) struct Provider {
    child: Child,
    pub(crate) issuer: String,
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Provider {
    /// Start it for a console whose callback is `redirect`.
    pub(crate) async fn start(redirect: &str) -> Provider {
        let dir = repo("tests/oidc");
        assert!(
            dir.join("node_modules/oidc-provider").exists(),
            "the OpenID provider is not installed: run `npm ci --prefix tests/oidc` (.ci/run does)"
        );
        let _ = rustls::crypto::ring::default_provider().install_default();
        let addr = crate::cluster::free_addr();
        let child = Command::new("node")
            .args(["provider.mjs", &addr.port().to_string(), redirect])
            .current_dir(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start node (Node.js 20 or newer is needed)");
        let p = Provider { child, issuer: format!("http://{addr}") };
        for _ in 0..200 {
            if reqwest::get(format!("{}/.well-known/openid-configuration", p.issuer)).await.is_ok() {
                return p;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the OpenID provider did not start");
    }

    /// The account that signs in next (the person typing their password).
    pub(crate) async fn login_as(&self, account: &str) {
        reqwest::get(format!("{}/test/login-as/{account}", self.issuer)).await.expect("login-as");
    }

    /// An ID token of `kind` for `account`.
    async fn mint(&self, account: &str, kind: &str) -> String {
        let url = format!("{}/test/mint?account={account}&kind={kind}", self.issuer);
        let v: serde_json::Value = reqwest::get(url).await.expect("mint").json().await.expect("json");
        v["token"].as_str().expect("token").to_owned()
    }
}

/// A console at a fixed address (the provider must know its callback) with OIDC only.
async fn console_with(s: &TestStore) -> (Provider, Served) {
    let addr: SocketAddr = crate::cluster::free_addr();
    let provider = Provider::start(&format!("http://{addr}/signin/oidc/callback")).await;
    let flags = ["--oidc-issuer", &provider.issuer, "--oidc-client-id", "servicehub", "--console-email-signin=false"];
    let env = [("SERVICEHUB_OIDC_CLIENT_SECRET", "test-secret")];
    let served = Served::start_with_env(&s.url, &flags, &env, Some(addr)).await;
    (provider, served)
}

/// Press "Sign in with …" and go through the provider; the page the browser ends on.
async fn sign_in(b: &mut Browser, base: &str, return_to: &str) -> (Page, String) {
    let start = b.get(&format!("/?return={return_to}")).await;
    assert!(start.body.contains("id=\"signin-oidc\""), "{}", start.body);
    let sent = b.post("/signin/oidc", &[("csrf", &start.csrf()), ("return", return_to)]).await;
    assert_eq!(sent.status, 303, "{}", sent.body);
    b.follow(sent, format!("{base}/signin/oidc")).await
}

fn apply_examples(s: &TestStore, outbox: &std::path::Path, link_base: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_servicehub"))
        .args(["apply", "-f", "examples/", "--store", &s.url])
        .current_dir(crate::support::root())
        .env_remove("SERVICEHUB_UNSAFE_TEST_CLOCK")
        .env("SERVICEHUB_NOTIFY_DIR", outbox)
        .env("SERVICEHUB_INVITATION_LINK_BASE", link_base)
        .output()
        .expect("apply");
    assert!(out.status.success(), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_round_trips_through_a_real_provider_and_the_token_decides_the_account_type() {
    let s = crate::support::sqlite_unmigrated().await;
    servicehub_operator::store::Store::migrate(&*s.store).await.expect("migrate");
    let (provider, served) = console_with(&s).await;
    let base = served.base.clone();

    // A work account (Contoso's tenant).
    provider.login_as("lee").await;
    let mut b = Browser::new(&base);
    let start = b.get("/").await;
    let csp = start.header("content-security-policy").to_owned();
    assert!(csp.contains(&format!("form-action 'self' {}", provider.issuer)), "{csp}");
    assert!(!start.body.contains("signin-email"), "email-link sign-in is off");
    let (home, at) = sign_in(&mut b, &base, "/").await;
    assert_eq!(at, format!("{base}/"), "back on the console");
    assert_eq!(home.text_of("signed-in-as").as_deref(), Some("lee.gu@contoso.com"), "{}", home.body);
    assert_eq!(home.text_of("account-type").as_deref(), Some("Work or school account"));
    assert!(home.body.contains("OpenID Connect"));
    let row = s.store.strings("SELECT method || ' ' || subject || ' ' || groups FROM sessions").await.expect("row");
    assert_eq!(row, vec![format!("oidc {}#lee [\"6f1c5d2e-0000-4000-8000-00000000c0de\"]", provider.issuer)]);
    let audited = s.store.strings("SELECT channel || ' ' || subject FROM audit WHERE action = 'session.start'").await;
    assert_eq!(audited.expect("audit"), vec![format!("console-oidc {}#lee", provider.issuer)]);

    // The same address as a personal Microsoft account: the consumer tenant says so.
    provider.login_as("msa").await;
    let mut m = Browser::new(&base);
    let (home, _) = sign_in(&mut m, &base, "/").await;
    assert_eq!(home.text_of("signed-in-as").as_deref(), Some("lee.gu@contoso.com"));
    assert_eq!(home.text_of("account-type").as_deref(), Some("Personal Microsoft account"));

    // A token without a tenant identifies nobody: refused, naming the claim; no session.
    provider.login_as("notenant").await;
    let mut k = Browser::new(&base);
    let (refused, _) = sign_in(&mut k, &base, "/").await;
    assert_eq!(refused.status, 401, "{}", refused.body);
    assert!(refused.text_of("message").is_some_and(|t| t.contains("claim tid")), "{}", refused.body);
    assert!(!k.cookies.contains_key("servicehub-session"));

    // Login CSRF: a sign-in started in one browser and finished in another finds nothing;
    // a callback used twice is refused the second time.
    provider.login_as("megan").await;
    let mut attacker = Browser::new(&base);
    let start = attacker.get("/").await;
    let sent = attacker.post("/signin/oidc", &[("csrf", &start.csrf()), ("return", "/")]).await;
    let mut at = sent.header("location").to_owned();
    let mut page = attacker.get(&at).await;
    while !page.header("location").contains("/signin/oidc/callback") {
        at = url::Url::parse(&at).expect("url").join(page.header("location")).expect("join").to_string();
        page = attacker.get(&at).await;
    }
    let callback = page.header("location").to_owned();
    let mut victim = Browser::new(&base);
    victim.get("/").await;
    let planted = victim.get(&callback).await;
    assert_eq!(planted.status, 401, "{}", planted.body);
    assert!(planted.body.contains("not started in this browser"), "{}", planted.body);
    assert!(!victim.cookies.contains_key("servicehub-session"));
    // In the browser that started it, the callback signs in once; used again, it is refused.
    let own = attacker.get(&callback).await;
    assert_eq!(own.status, 303, "{}", own.body);
    let replay = attacker.get(&callback).await;
    assert_eq!(replay.status, 401, "the state was taken by the first callback: {}", replay.body);
    let mut sessions = s.store.strings("SELECT email || ' ' || account_type FROM sessions").await.expect("sessions");
    sessions.sort();
    let expected =
        ["lee.gu@contoso.com Personal", "lee.gu@contoso.com WorkOrSchool", "megan.bowen@contoso.com WorkOrSchool"];
    assert_eq!(sessions, expected, "nobody else: not the victim, not the replay");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invitations_are_accepted_with_the_identity_the_provider_proved_and_bad_tokens_are_refused() {
    for s in crate::support::stores().await {
        let (provider, served) = console_with(&s).await;
        let base = served.base.clone();
        let invites = tempfile::tempdir().expect("tempdir");
        apply_examples(&s, invites.path(), &format!("{base}/invitations/accept"));
        let text = eml_files(invites.path())
            .into_iter()
            .find(|(_, t)| t.contains("To: lee.gu@contoso.com"))
            .map(|(_, t)| t)
            .expect("lee's invitation");
        let link = text.lines().find(|l| l.contains("/invitations/accept?token=")).expect("link").trim().to_owned();
        let token = token_in(&link);
        let accepted = "SELECT COUNT(*) FROM invitations WHERE email = 'lee.gu@contoso.com' AND state = 'Accepted'";

        // Signed in as a personal account (the consumer tenant): the page refuses.
        provider.login_as("msa").await;
        let mut msa = Browser::new(&base);
        msa.get(&link).await;
        let (page, at) = sign_in(&mut msa, &base, "/invitations/accept").await;
        assert_eq!(at, format!("{base}/invitations/accept"), "back on the invitation after sign-in");
        let refusal = page.text_of("refusal").unwrap_or_default();
        assert!(refusal.contains("does not accept personal"), "{}: {}", s.name, page.body);
        assert_eq!(s.store.count(accepted).await.expect("count"), 0);

        // Bearer ID tokens: each bad one is refused with 401 and writes nothing.
        let body = serde_json::json!({ "token": token }).to_string();
        let mut api = Browser::new(&base);
        for kind in ["expired", "audience", "key", "issuer"] {
            let bad = provider.mint("lee", kind).await;
            let r =
                api.post_json("/v1/invitations/accept", &body, &[("authorization", &format!("Bearer {bad}"))]).await;
            assert_eq!(r.status, 401, "{kind}: {}", r.body);
            assert!(r.body.contains("Authorization"), "{kind}: {}", r.body);
        }
        let r = api.post_json("/v1/invitations/accept", &body, &[("authorization", "Bearer not-a-jwt")]).await;
        assert_eq!(r.status, 401);
        // A token the provider signed, whose payload was changed afterwards.
        let good = provider.mint("megan", "valid").await;
        let parts: Vec<&str> = good.split('.').collect();
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let payload = String::from_utf8(b64.decode(parts[1]).expect("payload")).expect("utf-8");
        let forged_payload = b64.encode(payload.replace("megan.bowen@contoso.com", "lee.gu@contoso.com"));
        let forged = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
        let r = api.post_json("/v1/invitations/accept", &body, &[("authorization", &format!("Bearer {forged}"))]).await;
        assert_eq!(r.status, 401, "forged: {}", r.body);
        // A valid token of someone else: 403, naming the invitee.
        let r = api.post_json("/v1/invitations/accept", &body, &[("authorization", &format!("Bearer {good}"))]).await;
        assert_eq!(r.status, 403, "{}", r.body);
        assert!(r.body.contains("WrongAccount"), "{}", r.body);
        assert_eq!(s.store.count(accepted).await.expect("count"), 0, "{}: nothing accepted", s.name);

        // Lee's own token: accepted, audited as the API with the provider's subject.
        let lee = provider.mint("lee", "valid").await;
        let r = api.post_json("/v1/invitations/accept", &body, &[("authorization", &format!("Bearer {lee}"))]).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(s.store.count(accepted).await.expect("count"), 1);
        let audited = s
            .store
            .strings("SELECT actor || ' ' || channel || ' ' || subject FROM audit WHERE action = 'invitation.accept'")
            .await
            .expect("audit");
        assert_eq!(audited, vec![format!("lee.gu@contoso.com api-bearer {}#lee", provider.issuer)], "{}", s.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_takes_bearer_id_tokens_with_the_groups_they_carry_and_the_same_authorization() {
    let s = crate::support::sqlite_unmigrated().await;
    servicehub_operator::store::Store::migrate(&*s.store).await.expect("migrate");
    let (provider, served) = console_with(&s).await;
    let invites = tempfile::tempdir().expect("tempdir");
    apply_examples(&s, invites.path(), &format!("{}/invitations/accept", served.base));
    // Lee's token names a group; a Membership of that group grants Health in EMEA.
    let group = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        group.path().join("group.yaml"),
        "apiVersion: servicehub.io/v1alpha1\nkind: Membership\nmetadata: {name: emea-health-group, namespace: contoso}\n\
         spec:\n  customerRef: {name: contoso}\n  workspaceRef: {name: contoso-labs}\n  subject:\n    kind: Group\n    \
         groupId: 6f1c5d2e-0000-4000-8000-00000000c0de\n  permissions: [Health]\n",
    )
    .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_servicehub"))
        .args(["apply", "-f"])
        .arg(group.path())
        .args(["--store", &s.url, "--deliver=false"])
        .output()
        .expect("apply");
    assert!(out.status.success(), "{}", stderr(&out));
    let out = Command::new(env!("CARGO_BIN_EXE_servicehub"))
        .args(["lockbox", "request", "--customer", "contoso/contoso", "--workload", "ExchangeOnline", "--case", "3"])
        .args(["--reason", "repair", "--duration", "1h", "--as", "eng@microsoft.com", "--store", &s.url])
        .output()
        .expect("request");
    assert!(out.status.success(), "{}", stderr(&out));

    let lee = format!("Bearer {}", provider.mint("lee", "valid").await);
    let mut api = Browser::new(&served.base);
    let me = api.get_with("/api/v1/access/me", &[("authorization", &lee)]).await;
    assert_eq!(me.status, 200, "{}", me.body);
    let v: serde_json::Value = serde_json::from_str(&me.body).expect("json");
    let items = v["items"].as_array().expect("items");
    assert!(
        items.iter().any(|l| l["permission"] == "Health"
            && l["workspace"] == "contoso-labs"
            && l["throughGroup"] == "6f1c5d2e-0000-4000-8000-00000000c0de"),
        "the group from the token: {v}"
    );
    assert_eq!(api.get_with("/api/v1/audit?customer=contoso/contoso", &[("authorization", &lee)]).await.status, 403);
    // A bearer token needs no CSRF token (a browser never sends it by itself); Lee is a
    // customer user, so opening a request is refused all the same.
    let ask = r#"{"customer":"contoso/contoso","workload":"ExchangeOnline","caseId":"9","reason":"r","duration":"1h"}"#;
    let refused = api.post_json("/api/v1/lockbox/requests", ask, &[("authorization", &lee)]).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(refused.body.contains("lee.gu@contoso.com may not open Customer Lockbox requests"), "{}", refused.body);

    // Megan approves through the API with her token; the audit names the channel and subject.
    let megan = format!("Bearer {}", provider.mint("megan", "valid").await);
    let inbox = api.get_with("/api/v1/lockbox/inbox", &[("authorization", &megan)]).await;
    let v: serde_json::Value = serde_json::from_str(&inbox.body).expect("json");
    assert_eq!(v["pending"][0]["id"], 1, "{v}");
    let approved =
        api.post_json("/api/v1/lockbox/requests/1/approve", r#"{"reason":"ok"}"#, &[("authorization", &megan)]).await;
    assert_eq!(approved.status, 200, "{}", approved.body);
    let row = s
        .store
        .strings("SELECT actor || ' ' || channel || ' ' || subject FROM audit WHERE action = 'lockbox.approved'")
        .await
        .expect("audit");
    assert_eq!(row, [format!("megan.bowen@contoso.com api-bearer {}#megan", provider.issuer)]);
    let expired = format!("Bearer {}", provider.mint("megan", "expired").await);
    assert_eq!(api.get_with("/api/v1/lockbox/inbox", &[("authorization", &expired)]).await.status, 401);
}
