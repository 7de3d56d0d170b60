//! The console in a real browser: Debian's Chromium driven through its WebDriver
//! (`chromium`, `chromium-driver`; `.ci/run` installs them) with `fantoccini`. One person's
//! path through the pages: signed in with a personal account through the OpenID provider
//! and refused on a work-only invitation; signed in by the emailed link with a work account
//! and the invitation accepted; signed out. Each page is saved as a screenshot in
//! `target/screenshots/` (kept as test artifacts).

use crate::support::{eml_files, repo, stderr};
use fantoccini::{Client, Locator};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Chromium through ChromeDriver, headless.
async fn browser() -> (Driver, Client) {
    let (chromium, driver) = ("/usr/bin/chromium", "/usr/bin/chromedriver");
    assert!(
        std::path::Path::new(chromium).exists() && std::path::Path::new(driver).exists(),
        "Chromium and ChromeDriver are not installed: apt-get install chromium chromium-driver (.ci/run does)"
    );
    let port = crate::cluster::free_addr().port();
    let child = Command::new(driver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let driver = Driver(child);
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1100,800"],
        }),
    );
    let url = format!("http://127.0.0.1:{port}");
    for _ in 0..100 {
        if let Ok(c) =
            fantoccini::ClientBuilder::rustls().expect("rustls").capabilities(caps.clone()).connect(&url).await
        {
            return (driver, c);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("ChromeDriver did not answer at {url}");
}

/// Save what the browser shows as `target/screenshots/NAME.png`.
async fn shot(c: &Client, name: &str) {
    let dir = repo("target/screenshots");
    std::fs::create_dir_all(&dir).expect("dir");
    let png = c.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    std::fs::write(dir.join(format!("{name}.png")), png).expect("write");
}

/// The text of the element with `id`, waiting for it to appear (a click starts a navigation
/// that has not necessarily finished when the click returns).
async fn text(c: &Client, id: &str) -> String {
    let found = c.wait().at_most(Duration::from_secs(10)).for_element(Locator::Id(id)).await;
    found.unwrap_or_else(|e| panic!("#{id}: {e}")).text().await.expect("text")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_signs_in_both_ways_is_refused_with_a_personal_account_accepts_and_signs_out() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let s = crate::support::sqlite_unmigrated().await;
    servicehub_operator::store::Store::migrate(&*s.store).await.expect("migrate");
    let addr = crate::cluster::free_addr();
    let base = format!("http://{addr}");
    let provider = crate::oidc::Provider::start(&format!("{base}/signin/oidc/callback")).await;
    let flags = ["--oidc-issuer", &provider.issuer, "--oidc-client-id", "servicehub", "--oidc-name", "Contoso ID"];
    let env = [("SERVICEHUB_OIDC_CLIENT_SECRET", "test-secret")];
    let served = crate::console::Served::start_with_env(&s.url, &flags, &env, Some(addr)).await;
    let invites = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_servicehub"))
        .args(["apply", "-f", "examples/", "--store", &s.url])
        .current_dir(crate::support::root())
        .env("SERVICEHUB_NOTIFY_DIR", invites.path())
        .env("SERVICEHUB_INVITATION_LINK_BASE", format!("{base}/invitations/accept"))
        .output()
        .expect("apply");
    assert!(out.status.success(), "{}", stderr(&out));
    let text_of_mail = eml_files(invites.path())
        .into_iter()
        .find(|(_, t)| t.contains("To: lee.gu@contoso.com"))
        .map(|(_, t)| t)
        .expect("lee's invitation");
    let invitation =
        text_of_mail.lines().find(|l| l.contains("/invitations/accept?token=")).expect("link").trim().to_owned();

    let (_driver, c) = browser().await;
    // The sign-in page: both methods.
    c.goto(&format!("{base}/")).await.expect("goto");
    shot(&c, "01-signin").await;
    assert!(c.find(Locator::Id("signin-oidc")).await.is_ok() && c.find(Locator::Id("email")).await.is_ok());

    // A personal Microsoft account through the provider: Lee's address, the consumer tenant.
    provider.login_as("msa").await;
    c.goto(&invitation).await.expect("goto invitation");
    assert_eq!(c.current_url().await.expect("url").as_str(), format!("{base}/invitations/accept"), "token dropped");
    shot(&c, "02-invitation-signed-out").await;
    c.find(Locator::Id("signin")).await.expect("sign-in link").click().await.expect("click");
    let button = c.wait().at_most(Duration::from_secs(10)).for_element(Locator::Id("signin-oidc")).await;
    button.expect("the sign-in page").click().await.expect("click");
    c.wait().for_element(Locator::Id("refusal")).await.expect("back on the invitation, refused");
    let refusal = text(&c, "refusal").await;
    assert!(refusal.contains("does not accept personal") && refusal.contains("allowPersonalAccounts"), "{refusal}");
    assert!(c.find(Locator::Id("accept")).await.is_err(), "no accept button");
    shot(&c, "03-invitation-refused-personal").await;
    c.find(Locator::Css("header form.signout button")).await.expect("sign out").click().await.expect("click");
    c.wait().for_element(Locator::Id("message")).await.expect("signed out");
    shot(&c, "04-signed-out").await;

    // A work account by the emailed link.
    c.goto(&format!("{base}/")).await.expect("goto");
    c.find(Locator::Id("email")).await.expect("field").send_keys("lee.gu@contoso.com").await.expect("type");
    c.find(Locator::Id("signin-email")).await.expect("button").click().await.expect("click");
    let sent = text(&c, "message").await;
    assert!(sent.contains("on its way to lee.gu@contoso.com"), "{sent}");
    shot(&c, "05-check-your-mail").await;
    let link = crate::console::wait_for_link(&served.outbox, "lee.gu@contoso.com").await;
    c.goto(&link).await.expect("open the link");
    assert_eq!(c.current_url().await.expect("url").as_str(), format!("{base}/signin/email"), "token dropped");
    shot(&c, "06-confirm-sign-in").await;
    c.find(Locator::Id("confirm")).await.expect("button").click().await.expect("click");
    c.wait().for_element(Locator::Id("signed-in-as")).await.expect("home");
    assert_eq!(text(&c, "signed-in-as").await, "lee.gu@contoso.com");
    assert_eq!(text(&c, "account-type").await, "Work or school account");
    shot(&c, "07-home").await;

    // The invitation, accepted.
    c.goto(&invitation).await.expect("goto invitation");
    let accept = c.find(Locator::Id("accept")).await.expect("accept button");
    assert_eq!(accept.text().await.expect("text"), "Accept as lee.gu@contoso.com");
    shot(&c, "08-invitation").await;
    accept.click().await.expect("click");
    let done = text(&c, "message").await;
    assert!(done.contains("active in workspace contoso-emea"), "{done}");
    shot(&c, "09-accepted").await;
    let accepted = "SELECT COUNT(*) FROM invitations WHERE email = 'lee.gu@contoso.com' AND state = 'Accepted'";
    assert_eq!(s.store.count(accepted).await.expect("count"), 1);

    // Signed out: the session is over in the store.
    c.goto(&format!("{base}/")).await.expect("goto");
    c.find(Locator::Css("header form.signout button")).await.expect("sign out").click().await.expect("click");
    c.wait().for_element(Locator::Id("message")).await.expect("signed out");
    assert_eq!(s.store.count("SELECT COUNT(*) FROM sessions WHERE revoked_at IS NULL").await.expect("count"), 0);
    c.goto(&format!("{base}/")).await.expect("goto");
    assert!(c.find(Locator::Id("signed-in-as")).await.is_err(), "signed out");
    c.close().await.expect("close");
}
