//! The console over real sockets: `servicehub serve` as a process, a client that keeps
//! cookies as a browser does, the sign-in link read from the `.eml` the file transport wrote.
//! Sign-in, sessions, the invitation page bound to the signed-in identity, CSRF, security
//! headers, rate limits and bad input; on SQLite and PostgreSQL.

use crate::support::{TestStore, eml_files, servicehub, stderr, token_in};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running `servicehub serve`.
pub struct Served {
    child: Child,
    /// Its base URL.
    pub base: String,
    /// Its outbox (file transport).
    pub outbox: PathBuf,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    /// Start `serve` over `store_url` with extra flags, and wait until it answers.
    pub async fn start(store_url: &str, extra: &[&str]) -> Served {
        Served::start_with_env(store_url, extra, &[], None).await
    }

    /// [`Served::start`] with environment variables, on `addr` if given.
    pub async fn start_with_env(
        store_url: &str,
        extra: &[&str],
        env: &[(&str, &str)],
        addr: Option<SocketAddr>,
    ) -> Served {
        let dir = tempfile::tempdir().expect("tempdir");
        let addr: SocketAddr = addr.unwrap_or_else(crate::cluster::free_addr);
        let base = format!("http://{addr}");
        let outbox = dir.path().join("outbox");
        let log = dir.path().join("serve.log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_servicehub"));
        cmd.envs(env.iter().copied());
        let child = cmd
            .args(["serve", "--store", store_url, "--http-addr", &addr.to_string()])
            // The public URL is the local address unless the test gives another.
            .args(if extra.contains(&"--console-base-url") { vec![] } else { vec!["--console-base-url", &base] })
            .args(["--invitation-link-base", &format!("{base}/invitations/accept")])
            .args(extra)
            .current_dir(dir.path())
            .env_remove("SERVICEHUB_STORE")
            .env_remove("SERVICEHUB_UNSAFE_TEST_CLOCK")
            .env("SERVICEHUB_NOTIFY_DIR", &outbox)
            .env("SERVICEHUB_LOG_FORMAT", "text")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("start serve");
        let served = Served { child, base, outbox, log, _dir: dir };
        let _ = rustls::crypto::ring::default_provider().install_default();
        for _ in 0..200 {
            if reqwest::get(format!("{}/static/console.css", served.base)).await.is_ok() {
                return served;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("serve did not answer: {}", served.log());
    }

    /// What it logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// A client that keeps cookies as a browser does (by name; paths are not needed here) and
/// never follows redirects, so each step can be looked at.
pub struct Browser {
    http: reqwest::Client,
    base: String,
    /// Cookies of the console, by name.
    pub cookies: HashMap<String, String>,
    /// Cookies of other origins (an identity provider), by origin and name.
    others: HashMap<String, HashMap<String, String>>,
    /// The `Set-Cookie` headers of the last response.
    pub set_cookies: Vec<String>,
}

/// A response, read whole.
pub struct Page {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Page {
    /// A header's value.
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
    }

    /// The value of the first hidden `csrf` field.
    pub fn csrf(&self) -> String {
        let at = self.body.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
        self.body[at..].chars().take_while(|c| *c != '"').collect()
    }

    /// The text of the element with `id`.
    pub fn text_of(&self, id: &str) -> Option<String> {
        let at = self.body.find(&format!("id=\"{id}\""))?;
        let start = self.body[at..].find('>')? + at + 1;
        let end = self.body[start..].find('<')? + start;
        Some(self.body[start..end].trim().to_owned())
    }
}

impl Browser {
    /// A browser for `base`.
    pub fn new(base: &str) -> Browser {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
        Browser {
            http,
            base: base.to_owned(),
            cookies: HashMap::new(),
            others: HashMap::new(),
            set_cookies: Vec::new(),
        }
    }

    fn origin(url: &str) -> String {
        url::Url::parse(url).map(|u| u.origin().ascii_serialization()).unwrap_or_default()
    }

    fn jar(&mut self, url: &str) -> &mut HashMap<String, String> {
        let origin = Browser::origin(url);
        if origin == Browser::origin(&self.base) { &mut self.cookies } else { self.others.entry(origin).or_default() }
    }

    async fn send(&mut self, req: reqwest::RequestBuilder) -> Page {
        let req = req.build().expect("request");
        let url = req.url().to_string();
        let header = self.jar(&url).iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ");
        let mut req = req;
        if let Ok(v) = reqwest::header::HeaderValue::from_str(&header) {
            req.headers_mut().insert("cookie", v);
        }
        let res = self.http.execute(req).await.expect("request");
        self.set_cookies =
            res.headers().get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()).map(str::to_owned).collect();
        let set = self.set_cookies.clone();
        let jar = self.jar(&url);
        for c in &set {
            let (pair, attrs) = c.split_once(';').unwrap_or((c, ""));
            if let Some((k, v)) = pair.split_once('=') {
                let expired = attrs.to_ascii_lowercase().contains("max-age=0")
                    || attrs.to_ascii_lowercase().contains("expires=thu, 01 jan 1970");
                if v.is_empty() || expired {
                    jar.remove(k);
                } else {
                    jar.insert(k.to_owned(), v.to_owned());
                }
            }
        }
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        Page { status, headers, body: res.text().await.unwrap_or_default() }
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http") { path.to_owned() } else { format!("{}{path}", self.base) }
    }

    /// GET.
    pub async fn get(&mut self, path: &str) -> Page {
        let req = self.http.get(self.url(path));
        self.send(req).await
    }

    /// GET with extra headers.
    pub async fn get_with(&mut self, path: &str, headers: &[(&str, &str)]) -> Page {
        let mut req = self.http.get(self.url(path));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.send(req).await
    }

    /// POST a form.
    pub async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let body: String = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(fields).finish();
        let req = self.http.post(self.url(path)).header("content-type", "application/x-www-form-urlencoded").body(body);
        self.send(req).await
    }

    /// POST JSON with extra headers.
    pub async fn post_json(&mut self, path: &str, body: &str, headers: &[(&str, &str)]) -> Page {
        let mut req = self.http.post(self.url(path)).header("content-type", "application/json").body(body.to_owned());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.send(req).await
    }

    /// Follow redirects from `page` (across origins, as a browser does) until one answers
    /// without a redirect; that page and its URL.
    pub async fn follow(&mut self, mut page: Page, mut at: String) -> (Page, String) {
        for _ in 0..20 {
            if !(300..400).contains(&page.status) {
                return (page, at);
            }
            let to = url::Url::parse(&at).expect("url").join(page.header("location")).expect("location").to_string();
            page = self.get(&to).await;
            at = to;
        }
        panic!("too many redirects, last at {at}");
    }

    /// Sign in as `email` through the emailed link in `outbox`; the home page.
    pub async fn sign_in_by_email(&mut self, outbox: &Path, email: &str) -> Page {
        let start = self.get("/").await;
        assert_eq!(start.status, 200, "{}", start.body);
        let sent = self.post("/signin/email", &[("csrf", &start.csrf()), ("email", email), ("return", "/")]).await;
        assert_eq!(sent.status, 200, "{}", sent.body);
        let link = wait_for_link(outbox, email).await;
        let opened = self.get(&link).await;
        assert_eq!((opened.status, opened.header("location")), (303, "/signin/email"), "{}", opened.body);
        let confirm = self.get("/signin/email").await;
        assert_eq!(confirm.status, 200, "{}", confirm.body);
        let done = self.post("/signin/email/confirm", &[("csrf", &confirm.csrf())]).await;
        assert_eq!(done.status, 303, "{}", done.body);
        self.get(done.header("location")).await
    }
}

/// The newest sign-in link sent to `email` (waits for the delivery).
pub async fn wait_for_link(outbox: &Path, email: &str) -> String {
    let email = email.to_ascii_lowercase();
    for _ in 0..100 {
        let found = eml_files(outbox)
            .into_iter()
            .filter(|(p, t)| {
                p.to_string_lossy().contains("signin") && t.to_ascii_lowercase().contains(&format!("to: {email}"))
            })
            .max_by_key(|(p, _)| std::fs::metadata(p).and_then(|m| m.modified()).ok());
        if let Some((_, text)) = found {
            let line = text.lines().find(|l| l.contains("/signin/email?token=")).expect("a link on a line of its own");
            return line.trim().to_owned();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no sign-in link for {email} in {}", outbox.display());
}

/// The examples applied to `s` (invitations delivered to `outbox`).
pub(crate) fn apply_examples(s: &TestStore, outbox: &Path, extra_env: &[(&str, &str)]) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_servicehub"));
    cmd.args(["apply", "-f", "examples/", "--store", &s.url])
        .current_dir(crate::support::root())
        .env_remove("SERVICEHUB_UNSAFE_TEST_CLOCK")
        .env("SERVICEHUB_NOTIFY_DIR", outbox);
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("apply");
    assert!(out.status.success(), "{}", stderr(&out));
}

pub(crate) async fn count(s: &TestStore, sql: &str) -> i64 {
    s.store.count(sql).await.expect("count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_sign_in_starts_a_server_side_session_with_strict_cookies_and_sign_out_ends_it() {
    for s in crate::support::stores().await {
        let invites = tempfile::tempdir().expect("tempdir");
        apply_examples(&s, invites.path(), &[]);
        // The CLI delivered them: audited as the CLI (not the operator), with user and host.
        let sends = s
            .store
            .strings("SELECT DISTINCT channel || ' ' || actor FROM audit WHERE action = 'invitation.send'")
            .await
            .expect("audit");
        assert_eq!(sends.len(), 1, "{sends:?}");
        assert!(sends[0].starts_with("cli cli:"), "{}: {sends:?}", s.name);
        let served = Served::start(&s.url, &[]).await;
        let mut b = Browser::new(&served.base);
        let start = b.get("/").await;
        // Strict headers on every page.
        let csp = start.header("content-security-policy");
        assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"), "{csp}");
        assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"), "{csp}");
        // The only script is the console's own file; nothing inline.
        assert_eq!(start.body.matches("<script").count(), 1, "{}", start.body);
        assert!(start.body.contains("<script src=\"/static/console.js\" defer></script>"), "{}", start.body);
        assert_eq!(start.header("x-content-type-options"), "nosniff");
        assert_eq!(start.header("referrer-policy"), "no-referrer");
        assert_eq!(start.header("cache-control"), "no-store");
        assert!(b.set_cookies.iter().any(|c| c.contains("presession") && c.contains("HttpOnly")));

        // A sign-in form without its CSRF value: 403, nothing queued.
        let forged = b.post("/signin/email", &[("email", "lee.gu@contoso.com"), ("return", "/")]).await;
        assert_eq!(forged.status, 403, "{}", forged.body);
        let wrong = b.post("/signin/email", &[("csrf", "x"), ("email", "lee.gu@contoso.com")]).await;
        assert_eq!(wrong.status, 403);
        assert_eq!(count(&s, "SELECT COUNT(*) FROM outbox WHERE kind = 'signin'").await, 0, "{}", s.name);
        // Bad input names the field, and nothing is queued.
        let bad = b.post("/signin/email", &[("csrf", &start.csrf()), ("email", "not an address")]).await;
        assert_eq!(bad.status, 400);
        assert!(bad.text_of("email-error").is_some_and(|e| e.starts_with("Email address:")), "{}", bad.body);
        let extra = b.post("/signin/email", &[("csrf", &start.csrf()), ("email", "a@b.c"), ("admin", "1")]).await;
        assert_eq!(extra.status, 400);
        assert!(extra.body.contains("admin: not a field of this form"), "{}", extra.body);
        assert_eq!(count(&s, "SELECT COUNT(*) FROM outbox WHERE kind = 'signin'").await, 0);

        let home = b.sign_in_by_email(&served.outbox, "Lee.Gu@Contoso.com").await;
        assert_eq!(home.status, 200, "{}", home.body);
        assert_eq!(home.text_of("signed-in-as").as_deref(), Some("lee.gu@contoso.com"));
        assert_eq!(home.text_of("account-type").as_deref(), Some("Work or school account"));
        assert!(home.body.contains("Workspace contoso-emea"), "where they have access: {}", home.body);
        // The session cookie: HttpOnly, SameSite=Lax, not Secure on http; its id is not stored.
        let session: Vec<&String> = b.set_cookies.iter().filter(|c| c.starts_with("servicehub-session=")).collect();
        assert!(session.is_empty(), "set at the confirmation, not again");
        let id = b.cookies.get("servicehub-session").expect("session cookie").clone();
        assert_eq!(id.len(), 43);
        assert_eq!(count(&s, &format!("SELECT COUNT(*) FROM sessions WHERE id_hash = '{id}'")).await, 0);
        assert_eq!(count(&s, "SELECT COUNT(*) FROM sessions WHERE revoked_at IS NULL").await, 1);
        // Only the hash of the sign-in token is stored, and the link works once.
        let link = wait_for_link(&served.outbox, "lee.gu@contoso.com").await;
        let token = token_in(&link);
        assert_eq!(count(&s, &format!("SELECT COUNT(*) FROM signin_tokens WHERE token_hash = '{token}'")).await, 0);
        let mut other = Browser::new(&served.base);
        other.get(&link).await;
        let confirm = other.get("/signin/email").await;
        let again = other.post("/signin/email/confirm", &[("csrf", &confirm.csrf())]).await;
        assert_eq!(again.status, 400, "a used link is refused: {}", again.body);
        assert!(!other.cookies.contains_key("servicehub-session"));
        // Audited with the channel and the subject.
        let audited = s
            .store
            .strings("SELECT actor || ' ' || channel || ' ' || subject FROM audit WHERE action = 'session.start'")
            .await
            .expect("audit");
        assert_eq!(audited, vec!["lee.gu@contoso.com console-email lee.gu@contoso.com"]);

        // Sign-out needs the session's CSRF token; then the session is over in the store.
        let refused = b.post("/signout", &[("csrf", "nope")]).await;
        assert_eq!(refused.status, 403);
        let out = b.post("/signout", &[("csrf", &home.csrf())]).await;
        assert_eq!(out.status, 200, "{}", out.body);
        assert_eq!(count(&s, "SELECT COUNT(*) FROM sessions WHERE revoked_at IS NULL").await, 0);
        // The old cookie, replayed, signs nobody in.
        b.cookies.insert("servicehub-session".into(), id);
        let after = b.get("/").await;
        assert!(
            after.body.contains("Email me a sign-in link") && after.text_of("signed-in-as").is_none(),
            "{}",
            after.body
        );
        assert!(served.log().contains("signed in to the console"), "{}", served.log());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invitation_is_accepted_only_by_the_signed_in_invitee_with_the_account_type_the_sign_in_proved() {
    for s in crate::support::stores().await {
        let invites = tempfile::tempdir().expect("tempdir");
        // contoso.com counts as a consumer domain on this console: its people sign in as
        // personal accounts, as an MSA with a work address would through Entra ID.
        let served = Served::start(&s.url, &[]).await;
        let personal = Served::start(&s.url, &["--consumer-domains", "contoso.com"]).await;
        apply_examples(
            &s,
            invites.path(),
            &[("SERVICEHUB_INVITATION_LINK_BASE", &format!("{}/invitations/accept", served.base))],
        );
        let text = eml_files(invites.path())
            .into_iter()
            .find(|(_, t)| t.contains("To: lee.gu@contoso.com"))
            .map(|(_, t)| t)
            .expect("lee's invitation");
        // The link sits whole on a line of its own, and the message names what invited.
        let link =
            text.lines().find(|l| l.contains("/invitations/accept?token=")).expect("link line").trim().to_owned();
        assert!(link.starts_with(&served.base) && link.len() > 43, "{link}");
        assert!(text.contains("Membership contoso/lee-emea-support (applied by cli:"), "{text}");
        // The sign-in hint fits the workspace: work accounts only in contoso-emea, either kind
        // in contoso-labs (the MSA exception).
        assert!(text.contains("does not accept personal Microsoft accounts"), "{text}");
        let sam = eml_files(invites.path())
            .into_iter()
            .find(|(_, t)| t.contains("To: sam.researcher@outlook.com"))
            .map(|(_, t)| t)
            .expect("sam's invitation");
        assert!(sam.contains("or with a personal Microsoft account"), "{sam}");
        let token = token_in(&link);

        // The link drops the token from the address bar at once.
        let mut anon = Browser::new(&served.base);
        let opened = anon.get(&link).await;
        assert_eq!((opened.status, opened.header("location")), (303, "/invitations/accept"));
        assert_eq!(opened.header("referrer-policy"), "no-referrer");
        let cookie = anon.set_cookies.iter().find(|c| c.contains("servicehub-invitation=")).expect("cookie").clone();
        assert!(cookie.contains("HttpOnly") && cookie.contains("Path=/invitations"), "{cookie}");
        let page = anon.get("/invitations/accept").await;
        assert_eq!(page.status, 200);
        for shown in ["Contoso Ltd", "Workspace contoso-emea", "lee.gu@contoso.com", "Work or school accounts only"] {
            assert!(page.body.contains(shown), "{shown}: {}", page.body);
        }
        assert!(page.text_of("signin").is_some() && page.text_of("accept").is_none(), "sign in first");

        // Someone else, signed in: refused, naming the invited address; nothing written.
        let mut megan = Browser::new(&served.base);
        megan.sign_in_by_email(&served.outbox, "megan.bowen@contoso.com").await;
        megan.get(&link).await;
        let mine = megan.get("/invitations/accept").await;
        assert!(mine.text_of("refusal").is_some_and(|r| r.contains("sent to lee.gu@contoso.com")), "{}", mine.body);
        assert!(mine.text_of("accept").is_none(), "no button");
        let forced = megan.post("/invitations/accept", &[("csrf", &mine.csrf())]).await;
        assert!(forced.body.contains("sent to lee.gu@contoso.com"), "{}", forced.body);
        let state = "SELECT COUNT(*) FROM invitations WHERE email = 'lee.gu@contoso.com' AND state = 'Accepted'";
        assert_eq!(count(&s, state).await, 0);

        // The invitee with a personal account (the sign-in says so): refused with the fix.
        let mut lee_msa = Browser::new(&personal.base);
        let home = lee_msa.sign_in_by_email(&personal.outbox, "lee.gu@contoso.com").await;
        assert_eq!(home.text_of("account-type").as_deref(), Some("Personal Microsoft account"));
        lee_msa.get(&format!("{}/invitations/accept?token={token}", personal.base)).await;
        let page = lee_msa.get("/invitations/accept").await;
        let refusal = page.text_of("refusal").expect("refused");
        assert!(refusal.contains("does not accept personal") && refusal.contains("allowPersonalAccounts"), "{refusal}");
        let forced = lee_msa.post("/invitations/accept", &[("csrf", &page.csrf())]).await;
        assert!(forced.body.contains("allowPersonalAccounts"), "{}", forced.body);
        assert_eq!(count(&s, state).await, 0);

        // The invitee, signed in with a work account: a wrong CSRF token changes nothing,
        // then the acceptance is recorded with the console channel and the proven identity.
        let mut lee = Browser::new(&served.base);
        lee.sign_in_by_email(&served.outbox, "lee.gu@contoso.com").await;
        lee.get(&link).await;
        let page = lee.get("/invitations/accept").await;
        assert!(page.text_of("accept").is_some_and(|t| t == "Accept as lee.gu@contoso.com"), "{}", page.body);
        let csrf_refused = lee.post("/invitations/accept", &[("csrf", "forged")]).await;
        assert_eq!(csrf_refused.status, 403);
        assert_eq!(count(&s, state).await, 0);
        let done = lee.post("/invitations/accept", &[("csrf", &page.csrf())]).await;
        assert_eq!(done.status, 200, "{}", done.body);
        assert!(
            done.text_of("message").is_some_and(|m| m.contains("active in workspace contoso-emea")),
            "{}",
            done.body
        );
        assert_eq!(count(&s, state).await, 1);
        let audited = s
            .store
            .strings("SELECT actor || ' ' || channel || ' ' || subject FROM audit WHERE action = 'invitation.accept'")
            .await
            .expect("audit");
        assert_eq!(audited, vec!["lee.gu@contoso.com console-email lee.gu@contoso.com"], "{}", s.name);
        // Used once.
        let again = lee.get("/invitations/accept").await;
        assert!(again.body.contains("Open the link from your invitation message"), "the cookie is gone");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_is_rate_limited_and_summarised_in_the_audit_and_bad_requests_write_nothing() {
    let s = crate::support::sqlite_unmigrated().await;
    servicehub_operator::store::Store::migrate(&*s.store).await.expect("migrate");
    let served = Served::start(&s.url, &["--console-rate-limit", "20", "--console-email-rate-limit", "2"]).await;
    let mut b = Browser::new(&served.base);
    let audit = "SELECT COUNT(*) FROM audit";
    let before = count(&s, audit).await;
    // 20 guessed invitation tokens: each refused, one audit entry in all; then 429.
    for i in 0..20 {
        let guess = format!("{:0>43}", i);
        let r = b.get(&format!("/invitations/accept?token={guess}")).await;
        assert_eq!(r.status, 303, "a well-formed token is kept for the page");
        let page = b.get("/invitations/accept").await;
        assert_eq!(page.status, 404, "{}", page.body);
    }
    assert_eq!(count(&s, audit).await - before, 1, "one summary entry per address and window");
    let entry = s.store.strings("SELECT after FROM audit WHERE action = 'token.refuse'").await.expect("audit");
    assert!(entry[0].contains("\"address\":\"127.0.0.1\"") && entry[0].contains("console_refusals"), "{entry:?}");
    let limited = b.get(&format!("/invitations/accept?token={}", "x".repeat(43))).await;
    assert_eq!(limited.status, 429);
    let wait: u64 = limited.header("retry-after").parse().expect("Retry-After seconds");
    assert!((1..=600).contains(&wait), "{wait}");
    // The JSON endpoint is limited on its own, answers 401 without authentication and
    // refuses a caller-supplied account, account type or time.
    let mut api = Browser::new(&served.base);
    let unauth = api.post_json("/v1/invitations/accept", &format!("{{\"token\":\"{}\"}}", "a".repeat(43)), &[]).await;
    assert_eq!(unauth.status, 401, "{}", unauth.body);
    assert_eq!(unauth.header("www-authenticate"), "Bearer");
    let home = api.sign_in_by_email(&served.outbox, "lee.gu@contoso.com").await;
    let csrf = home.csrf();
    let no_csrf = api.post_json("/v1/invitations/accept", &format!("{{\"token\":\"{}\"}}", "a".repeat(43)), &[]).await;
    assert_eq!(no_csrf.status, 403, "{}", no_csrf.body);
    assert!(no_csrf.body.contains("X-CSRF-Token"), "{}", no_csrf.body);
    for (body, field) in [
        (format!("{{\"token\":\"{}\",\"accountType\":\"WorkOrSchool\"}}", "a".repeat(43)), "accountType"),
        (format!("{{\"token\":\"{}\",\"acceptedAt\":\"1970-01-01T00:00:00Z\"}}", "a".repeat(43)), "acceptedAt"),
        ("{\"token\": 5}".to_owned(), "token"),
    ] {
        let r = api.post_json("/v1/invitations/accept", &body, &[("x-csrf-token", &csrf)]).await;
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        let v: serde_json::Value = serde_json::from_str(&r.body).expect("json");
        assert_eq!(v["field"], field, "{body}: {v}");
    }
    let unknown = api
        .post_json(
            "/v1/invitations/accept",
            &format!("{{\"token\":\"{}\"}}", "a".repeat(43)),
            &[("x-csrf-token", &csrf)],
        )
        .await;
    assert_eq!(unknown.status, 404, "{}", unknown.body);
    // Sign-in links per email: the third in the window is refused.
    let mut c = Browser::new(&served.base);
    for expect in [200, 200, 429] {
        let start = c.get("/").await;
        let r = c.post("/signin/email", &[("csrf", &start.csrf()), ("email", "kim@fabrikam.com")]).await;
        assert_eq!(r.status, expect, "{}", r.body);
    }
    assert_eq!(count(&s, "SELECT COUNT(*) FROM outbox WHERE kind = 'signin' AND payload LIKE '%kim@%'").await, 2);
    // Oversized bodies: 413; unknown routes: 404 without internals; both with the headers.
    let big = "x".repeat(64 * 1024);
    let r = c.post("/signin/email", &[("email", &big)]).await;
    assert_eq!(r.status, 413);
    let r = c.get("/admin/../../etc/passwd").await;
    assert_eq!(r.status, 404);
    assert!(
        !r.body.contains("panicked")
            && !r.body.contains("src/")
            && r.header("content-security-policy").contains("'none'")
    );
    let r = c.post_json("/api/v1/nothing", "{}", &[]).await;
    assert_eq!(r.status, 404);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&r.body).expect("json")["reason"], "NotFound");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_lists_and_revokes_a_persons_sessions_and_a_console_without_sign_in_refuses_to_start() {
    let s = crate::support::sqlite_unmigrated().await;
    servicehub_operator::store::Store::migrate(&*s.store).await.expect("migrate");
    let served = Served::start(&s.url, &[]).await;
    let mut b = Browser::new(&served.base);
    b.sign_in_by_email(&served.outbox, "lee.gu@contoso.com").await;
    let listed = servicehub(&["session", "list", "--store", &s.url, "-o", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&listed.stdout).expect("json");
    assert_eq!(v[0]["email"], "lee.gu@contoso.com", "{v}");
    assert_eq!(v[0]["method"], "email");
    assert!(v[0].get("csrf").is_none() && v[0].get("idHash").is_none(), "no secrets listed: {v}");
    let revoked = servicehub(&["session", "revoke", "--user", "Lee.Gu@contoso.com", "--store", &s.url]);
    assert!(String::from_utf8_lossy(&revoked.stdout).contains("1 session(s) of lee.gu@contoso.com revoked"));
    let after = b.get("/").await;
    assert!(after.text_of("signed-in-as").is_none(), "signed out by the revocation");
    let who =
        s.store.strings("SELECT channel || ' ' || actor FROM audit WHERE action = 'session.revoke'").await.expect("a");
    assert_eq!(who.len(), 1);
    assert!(who[0].starts_with("cli cli:"), "{who:?}");
    // No sign-in method: refused at start, saying why.
    let out = servicehub(&["serve", "--store", &s.url, "--console-email-signin=false", "--http-addr", "127.0.0.1:0"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("the console has no sign-in method"), "{}", stderr(&out));
}

#[tokio::test]
async fn a_session_ends_when_idle_or_at_its_absolute_end_and_a_page_view_is_not_a_write() {
    use servicehub_operator::store::{Session, Store};
    const T: i64 = 1_800_000_000;
    for s in crate::support::stores().await {
        let by = servicehub_operator::domain::actor::Actor::person(
            "lee.gu@contoso.com",
            servicehub_operator::domain::actor::Channel::ConsoleEmail,
            "lee.gu@contoso.com",
        );
        let session = |id: &str, expires_at: i64| Session {
            id_hash: id.into(),
            email: "lee.gu@contoso.com".into(),
            account_type: "WorkOrSchool".into(),
            method: "email".into(),
            subject: "lee.gu@contoso.com".into(),
            groups: vec!["g1".into()],
            csrf: "c".into(),
            address: "127.0.0.1".into(),
            created_at: T,
            seen_at: T,
            expires_at,
            revoked_at: None,
        };
        let db = s.store.as_ref();
        db.session_insert(&session("a", T + 12 * 3600), &by).await.expect("insert");
        db.session_insert(&session("b", T + 100), &by).await.expect("insert");
        let idle = 3600;
        // Used within the minute: found, nothing written.
        let before = db.rows_written();
        let found = db.session_find("a", T + 30, idle).await.expect("find").expect("live");
        assert_eq!((found.seen_at, found.groups.clone()), (T, vec!["g1".to_owned()]), "{}", s.name);
        assert_eq!(db.rows_written(), before, "{}: a page view within the minute writes nothing", s.name);
        // A minute later: seen moves forward, once.
        assert_eq!(db.session_find("a", T + 90, idle).await.expect("find").expect("live").seen_at, T + 90);
        assert_eq!(db.rows_written(), before + 1, "{}", s.name);
        // Idle for the idle lifetime: over.
        assert!(db.session_find("a", T + 90 + idle, idle).await.expect("find").is_none(), "{}", s.name);
        // Seen a second ago but past its absolute end: over.
        assert!(db.session_find("b", T + 99, idle).await.expect("find").is_some());
        assert!(db.session_find("b", T + 100, idle).await.expect("find").is_none(), "{}", s.name);
        // An unknown id finds nothing.
        assert!(db.session_find("zzz", T, idle).await.expect("find").is_none());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_an_https_base_url_every_cookie_is_secure_and_host_prefixed() {
    let s = crate::support::sqlite_unmigrated().await;
    servicehub_operator::store::Store::migrate(&*s.store).await.expect("migrate");
    // TLS is terminated in front of the console (an Ingress); the base URL says https.
    let served = Served::start(&s.url, &["--console-base-url", "https://hub.contoso.example"]).await;
    let mut b = Browser::new(&served.base);
    let start = b.get("/").await;
    assert_eq!(start.header("strict-transport-security"), "max-age=31536000");
    let pre = b.set_cookies.iter().find(|c| c.contains("presession")).expect("cookie").clone();
    assert!(pre.starts_with("__Host-servicehub-presession=") && pre.contains("; Secure"), "{pre}");
    assert!(pre.contains("Path=/;") && pre.contains("HttpOnly") && pre.contains("SameSite=Lax"), "{pre}");
    // Links in messages use the public URL.
    b.post("/signin/email", &[("csrf", &start.csrf()), ("email", "lee.gu@contoso.com")]).await;
    let link = wait_for_link(&served.outbox, "lee.gu@contoso.com").await;
    assert!(link.starts_with("https://hub.contoso.example/signin/email?token="), "{link}");
    // Followed on the console's own address (the proxy's job), the session cookie is secure too.
    let local = link.replace("https://hub.contoso.example", &served.base);
    let opened = b.get(&local).await;
    assert!(b.set_cookies.iter().any(|c| c.starts_with("__Secure-servicehub-signin=") && c.contains("; Secure")));
    assert_eq!(opened.status, 303);
    let confirm = b.get("/signin/email").await;
    b.post("/signin/email/confirm", &[("csrf", &confirm.csrf())]).await;
    let session = b.set_cookies.iter().find(|c| c.contains("session=")).expect("session cookie").clone();
    assert!(session.starts_with("__Host-servicehub-session=") && session.contains("; Secure"), "{session}");
    assert!(session.contains("HttpOnly") && session.contains("SameSite=Lax") && session.contains("Max-Age=43200"));
}

#[test]
fn a_token_that_starts_with_3d_is_read_whole_from_a_7bit_message() {
    // A 1-in-4096 token made an earlier helper cut `token=3D…` short (it decoded every
    // message as quoted-printable); the messages are 7bit now, and read as written.
    let token = "3DTDg5R23qDzE1zw39IYrF_GCSIlI43GYgfes8Evrsp";
    let raw =
        format!("Content-Transfer-Encoding: 7bit\r\n\r\nhttps://hub.example/invitations/accept?token={token}\r\n");
    assert_eq!(token_in(&crate::support::unquote(&raw)), token);
    let qp = "Content-Transfer-Encoding: quoted-printable\r\n\r\nhttps://hub.example/?token=3DabcDEF=\r\nghi\r\n";
    assert_eq!(token_in(&crate::support::unquote(qp)), "abcDEFghi");
}
