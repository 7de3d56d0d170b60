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
    for _ in 0..50 {
        let found = c.wait().at_most(Duration::from_secs(10)).for_element(Locator::Id(id)).await;
        match found.unwrap_or_else(|e| panic!("#{id}: {e}")).text().await {
            Ok(t) => return t,
            // Found on the page being left: read it again on the page that replaced it.
            Err(e) if e.to_string().contains("stale element") => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) => panic!("#{id}: {e}"),
        }
    }
    panic!("#{id}: the page kept changing")
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
    page(&c, "01-signin").await;
    assert!(c.find(Locator::Id("signin-oidc")).await.is_ok() && c.find(Locator::Id("email")).await.is_ok());

    // A personal Microsoft account through the provider: Lee's address, the consumer tenant.
    provider.login_as("msa").await;
    c.goto(&invitation).await.expect("goto invitation");
    assert_eq!(c.current_url().await.expect("url").as_str(), format!("{base}/invitations/accept"), "token dropped");
    page(&c, "02-invitation-signed-out").await;
    c.find(Locator::Id("signin")).await.expect("sign-in link").click().await.expect("click");
    let button = c.wait().at_most(Duration::from_secs(10)).for_element(Locator::Id("signin-oidc")).await;
    button.expect("the sign-in page").click().await.expect("click");
    c.wait().for_element(Locator::Id("refusal")).await.expect("back on the invitation, refused");
    let refusal = text(&c, "refusal").await;
    assert!(refusal.contains("does not accept personal") && refusal.contains("allowPersonalAccounts"), "{refusal}");
    assert!(c.find(Locator::Id("accept")).await.is_err(), "no accept button");
    page(&c, "03-invitation-refused-personal").await;
    c.find(Locator::Css("header form.signout button")).await.expect("sign out").click().await.expect("click");
    c.wait().for_element(Locator::Id("message")).await.expect("signed out");
    page(&c, "04-signed-out").await;

    // A work account by the emailed link.
    c.goto(&format!("{base}/")).await.expect("goto");
    c.find(Locator::Id("email")).await.expect("field").send_keys("lee.gu@contoso.com").await.expect("type");
    c.find(Locator::Id("signin-email")).await.expect("button").click().await.expect("click");
    let sent = text(&c, "message").await;
    assert!(sent.contains("on its way to lee.gu@contoso.com"), "{sent}");
    page(&c, "05-check-your-mail").await;
    let link = crate::console::wait_for_link(&served.outbox, "lee.gu@contoso.com").await;
    c.goto(&link).await.expect("open the link");
    assert_eq!(c.current_url().await.expect("url").as_str(), format!("{base}/signin/email"), "token dropped");
    page(&c, "06-confirm-sign-in").await;
    c.find(Locator::Id("confirm")).await.expect("button").click().await.expect("click");
    c.wait().for_element(Locator::Id("signed-in-as")).await.expect("home");
    assert_eq!(text(&c, "signed-in-as").await, "lee.gu@contoso.com");
    assert_eq!(text(&c, "account-type").await, "Work or school account");
    page(&c, "07-home").await;

    // The invitation, accepted.
    c.goto(&invitation).await.expect("goto invitation");
    let accept = c.find(Locator::Id("accept")).await.expect("accept button");
    assert_eq!(accept.text().await.expect("text"), "Accept as lee.gu@contoso.com");
    page(&c, "08-invitation").await;
    accept.click().await.expect("click");
    let done = text(&c, "message").await;
    assert!(done.contains("active in workspace contoso-emea"), "{done}");
    page(&c, "09-accepted").await;
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

/// Check the page with axe-core (npm, `tests/browser/`), injected into the browser: no
/// serious or critical violation of WCAG 2 A/AA. The findings, by rule, otherwise.
async fn accessible(c: &Client, name: &str) {
    let path = repo("tests/browser/node_modules/axe-core/axe.min.js");
    let axe = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run `npm ci --prefix tests/browser` (.ci/run does)", path.display()));
    c.execute(&axe, vec![]).await.expect("inject axe-core");
    let found = c
        .execute_async(
            "const done = arguments[arguments.length - 1];
             axe.run(document, { runOnly: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] })
               .then(r => done(r.violations.filter(v => v.impact === 'serious' || v.impact === 'critical')
                 .map(v => v.id + ': ' + v.help + ' (' + v.nodes.map(n => n.target.join(' ')).join(', ') + ')')))
               .catch(e => done(['axe failed: ' + e]));",
            vec![],
        )
        .await
        .expect("run axe-core");
    let found: Vec<String> = serde_json::from_value(found).expect("a list");
    assert!(found.is_empty(), "{name}: serious or critical accessibility violations: {found:#?}");
}

/// Save the page's screenshot and check its accessibility.
async fn page(c: &Client, name: &str) {
    shot(c, name).await;
    accessible(c, name).await;
}

/// Sign in by the emailed link, in the browser.
async fn sign_in(c: &Client, base: &str, outbox: &std::path::Path, email: &str) {
    c.goto(&format!("{base}/")).await.expect("goto");
    let field = c.wait().at_most(Duration::from_secs(10)).for_element(Locator::Id("email")).await;
    field.expect("the sign-in page").send_keys(email).await.expect("type");
    c.find(Locator::Id("signin-email")).await.expect("button").click().await.expect("click");
    text(c, "message").await;
    let link = crate::console::wait_for_link(outbox, email).await;
    c.goto(&link).await.expect("open the link");
    c.wait().for_element(Locator::Id("confirm")).await.expect("confirm").click().await.expect("click");
    assert_eq!(text(c, "signed-in-as").await, email);
}

/// `serve` over a fresh SQLite store with the examples applied (their invitations kept in
/// the returned directory).
async fn examples_served() -> (crate::support::TestStore, crate::console::Served, tempfile::TempDir) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let s = crate::support::sqlite_unmigrated().await;
    servicehub_operator::store::Store::migrate(&*s.store).await.expect("migrate");
    let invites = tempfile::tempdir().expect("tempdir");
    crate::console::apply_examples(&s, invites.path(), &[]);
    let served = crate::console::Served::start(&s.url, &[]).await;
    (s, served, invites)
}

/// The id of the element that has the keyboard focus.
async fn focused(c: &Client) -> String {
    c.active_element().await.expect("focus").attr("id").await.expect("id").unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lockbox_an_engineer_asks_an_approver_decides_a_late_approver_is_told_and_a_customer_user_is_refused() {
    use fantoccini::key::Key;
    let (s, served, _invites) = examples_served().await;
    let (base, outbox) = (served.base.clone(), served.outbox.clone());

    // The engineer asks, by keyboard only: Tab moves through the form in order, Enter sends.
    let (_d1, eng) = browser().await;
    sign_in(&eng, &base, &outbox, "eng@microsoft.com").await;
    eng.find(Locator::Id("nav-lockbox")).await.expect("nav").click().await.expect("click");
    eng.wait().for_element(Locator::Id("new-request")).await.expect("ask link").click().await.expect("click");
    eng.wait().for_element(Locator::Id("customer")).await.expect("the form");
    page(&eng, "10-lockbox-ask").await;
    eng.execute("document.getElementById('customer').focus()", vec![]).await.expect("focus");
    let mut order = vec![focused(&eng).await];
    for _ in 0..5 {
        eng.active_element().await.expect("focus").send_keys(&Key::Tab).await.expect("tab");
        order.push(focused(&eng).await);
    }
    assert_eq!(order, ["customer", "workload", "caseId", "reason", "duration", "open-request"], "tab order");
    eng.find(Locator::Id("caseId")).await.expect("case").send_keys("2611220010001").await.expect("type");
    eng.find(Locator::Id("reason")).await.expect("reason").send_keys("mailbox repair").await.expect("type");
    let duration = eng.find(Locator::Id("duration")).await.expect("duration");
    duration.clear().await.expect("clear");
    duration.send_keys("2h").await.expect("type");
    eng.find(Locator::Id("open-request")).await.expect("button").send_keys(&Key::Enter).await.expect("enter");
    assert_eq!(text(&eng, "state").await, "Pending");
    assert!(eng.find(Locator::Id("approve")).await.is_err(), "the requester has no decision buttons");
    page(&eng, "11-lockbox-requested").await;

    // Two approvers open the request; one approves with a reason, the other is told.
    let (_d2, megan) = browser().await;
    sign_in(&megan, &base, &outbox, "megan.bowen@contoso.com").await;
    megan.goto(&format!("{base}/lockbox")).await.expect("inbox");
    let left = megan.wait().for_element(Locator::Css("#pending .left")).await.expect("countdown");
    let first = left.text().await.expect("text");
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let later = left.text().await.expect("text");
    assert!(first.starts_with("11h 59m") || first.starts_with("12h"), "{first}");
    assert_ne!(first, later, "the time left counts down");
    page(&megan, "12-lockbox-inbox").await;
    let (_d3, nestor) = browser().await;
    sign_in(&nestor, &base, &outbox, "nestor.wilke@contoso.com").await;
    nestor.goto(&format!("{base}/lockbox/requests/1")).await.expect("request");
    nestor.wait().for_element(Locator::Id("approve")).await.expect("approve button");

    megan.find(Locator::Id("pending-1")).await.expect("the request").click().await.expect("click");
    megan.wait().for_element(Locator::Id("reason")).await.expect("reason").send_keys("go ahead").await.expect("type");
    // The deadline in UTC, and in the reader's own time (the browser's time zone).
    assert!(text(&megan, "decide-by").await.contains("your time)"));
    page(&megan, "13-lockbox-decide").await;
    // By keyboard: from the reason, Tab reaches Approve, Enter decides.
    megan.active_element().await.expect("focus").send_keys(&Key::Tab).await.expect("tab");
    assert_eq!(focused(&megan).await, "approve");
    megan.active_element().await.expect("focus").send_keys(&Key::Enter).await.expect("enter");
    assert_eq!(text(&megan, "done").await, "You approved this request.");
    assert_eq!(text(&megan, "state").await, "Approved");
    assert!(text(&megan, "decided").await.contains("by megan.bowen@contoso.com: go ahead"));
    page(&megan, "14-lockbox-approved").await;
    megan.find(Locator::Id("policy-link")).await.expect("policy link").click().await.expect("click");
    assert!(text(&megan, "approvers").await.contains("megan.bowen@contoso.com"));
    page(&megan, "14b-lockbox-policy").await;
    megan.back().await.expect("back");

    nestor.find(Locator::Id("approve")).await.expect("approve").click().await.expect("click");
    let told = text(&nestor, "message").await;
    assert!(told.contains("megan.bowen@contoso.com approved this request first, at "), "{told}");
    assert_eq!(text(&nestor, "next").await, "Request 1 as it is now");
    page(&nestor, "15-lockbox-lost-race").await;

    // Nestor audits: the customer's audit page, and its CSV export holds the decision with
    // the approver's authenticated identity and channel.
    nestor.goto(&format!("{base}/audit?customer=contoso/contoso&kind=lockbox")).await.expect("audit");
    assert!(text(&nestor, "summary").await.contains("entries, newest first"));
    page(&nestor, "23-audit").await;
    // The link is followed with the browser's own session cookie (the page's CSP allows no
    // script to fetch, and a download is not shown in a headless browser).
    let href = nestor.find(Locator::Id("export-csv")).await.expect("link").attr("href").await.expect("href");
    let cookie = nestor
        .get_all_cookies()
        .await
        .expect("cookies")
        .iter()
        .map(|c| format!("{}={}", c.name(), c.value()))
        .collect::<Vec<_>>()
        .join("; ");
    let url = format!("{base}{}", href.expect("an href"));
    let res = reqwest::Client::new().get(&url).header("cookie", cookie).send().await.expect("export");
    assert_eq!(res.status(), 200);
    let csv = res.text().await.expect("csv");
    std::fs::write(repo("target/screenshots/23-audit-export.csv"), &csv).expect("keep the export");
    let decision = csv.lines().find(|l| l.contains(",lockbox.approved,")).unwrap_or_else(|| panic!("{csv}"));
    assert!(decision.contains(",megan.bowen@contoso.com,console-email,megan.bowen@contoso.com,"), "{decision}");

    // The engineer completes it.
    eng.refresh().await.expect("reload");
    eng.wait().for_element(Locator::Id("complete")).await.expect("complete").click().await.expect("click");
    assert_eq!(text(&eng, "done").await, "You completed this request.");
    assert_eq!(text(&eng, "state").await, "Completed");
    page(&eng, "16-lockbox-completed").await;
    let history = text(&eng, "history").await;
    let approved = history.lines().find(|l| l.contains("approved")).unwrap_or_else(|| panic!("{history}"));
    assert!(approved.contains("megan.bowen@contoso.com") && approved.contains("console (email link)"), "{history}");

    // A request opened 12 h less 4 s ago: the approver watches it count down and expire at
    // exactly 12:00:00 after it was opened.
    let opened = jiff::Timestamp::now().as_second() - (12 * 3600 - 4);
    let out = Command::new(env!("CARGO_BIN_EXE_servicehub"))
        .args(["lockbox", "request", "--customer", "contoso/contoso", "--workload", "ExchangeOnline", "--case", "9"])
        .args(["--reason", "repair", "--duration", "1h", "--as", "eng@microsoft.com", "--store", &s.url])
        .env("SERVICEHUB_UNSAFE_TEST_CLOCK", jiff::Timestamp::from_second(opened).expect("t").to_string())
        .output()
        .expect("request");
    assert!(out.status.success(), "{}", stderr(&out));
    megan.goto(&format!("{base}/lockbox/requests/2")).await.expect("request 2");
    let left = text(&megan, "left").await;
    assert!(left.ends_with('s') && left.len() <= 2, "seconds left: {left}");
    shot(&megan, "17-lockbox-counting-down").await;
    let deadline = opened + 12 * 3600;
    assert!(
        text(&megan, "decide-by").await.starts_with(&jiff::Timestamp::from_second(deadline).expect("t").to_string())
    );
    while jiff::Timestamp::now().as_second() < deadline + 1 {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(text(&megan, "left").await, "the deadline has passed: reload the page");
    megan.refresh().await.expect("reload");
    assert_eq!(text(&megan, "state").await, "Expired");
    assert!(text(&megan, "closed").await.starts_with(&jiff::Timestamp::from_second(deadline).expect("t").to_string()));
    assert!(megan.find(Locator::Id("approve")).await.is_err(), "no decision after the deadline");
    page(&megan, "18-lockbox-expired").await;

    // A customer user is refused as a requester.
    nestor.goto(&format!("{base}/")).await.expect("home");
    nestor.find(Locator::Css("header form.signout button")).await.expect("sign out").click().await.expect("click");
    let out = nestor.wait().at_most(Duration::from_secs(10)).for_element(Locator::Css("main p.success")).await;
    out.expect("signed out");
    sign_in(&nestor, &base, &outbox, "diego.siciliani@contoso.com").await;
    nestor.goto(&format!("{base}/lockbox/new")).await.expect("form");
    let refused = text(&nestor, "message").await;
    assert!(refused.contains("requests come from Microsoft engineers"), "{refused}");
    page(&nestor, "19-lockbox-not-a-requester").await;
    for c in [eng, megan, nestor] {
        c.close().await.expect("close");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workspace_administrator_looks_up_a_member_of_their_workspace_and_is_refused_for_another() {
    let (_s, served, _invites) = examples_served().await;
    let (_d, c) = browser().await;
    sign_in(&c, &served.base, &served.outbox, "adele.vance@contoso.com").await;
    c.find(Locator::Id("nav-access")).await.expect("nav").click().await.expect("click");
    c.wait().for_element(Locator::Id("my-access")).await.expect("her access");
    page(&c, "20-access-mine").await;
    c.find(Locator::Id("subject-1")).await.expect("field").send_keys("lee.gu@contoso.com").await.expect("type");
    c.find(Locator::Id("ws-1")).await.expect("field").send_keys("contoso-emea").await.expect("type");
    c.find(Locator::Id("lookup-1")).await.expect("button").click().await.expect("click");
    let table = text(&c, "access").await;
    assert!(table.contains("ViewAllSupportCases") && table.contains("Workspace contoso-emea"), "{table}");
    page(&c, "21-access-lookup").await;
    let workspace = c.find(Locator::Id("workspace")).await.expect("field");
    workspace.clear().await.expect("clear");
    workspace.send_keys("contoso-labs").await.expect("type");
    c.find(Locator::Id("lookup")).await.expect("button").click().await.expect("click");
    let refused = text(&c, "message").await;
    assert!(refused.contains("may not look up people in workspace contoso-labs"), "{refused}");
    page(&c, "22-access-refused").await;
    c.close().await.expect("close");
}
