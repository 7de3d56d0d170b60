//! Invitation delivery end to end with the real binary and real transports on loopback: an
//! SMTP server (mailin-embedded), a webhook receiver (axum), `.eml` files; expiry and
//! re-issue with an injected clock; acceptance rules; SIGKILL between "sent" and "marked sent".

use crate::support::{TestStore, eml_files, stderr, stdout, token_in};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

pub(crate) const T0: &str = "2026-11-22T12:00:00Z";

/// Run the binary against `s` at time `now`, with extra environment.
pub(crate) fn servicehub(s: &TestStore, now: &str, env: &[(&str, &str)], args: &[&str]) -> Output {
    command(s, now, env, args).output().expect("run servicehub")
}

pub(crate) fn command(s: &TestStore, now: &str, env: &[(&str, &str)], args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_servicehub"));
    c.args(args)
        .args(["--store", &s.url])
        .current_dir(crate::support::root())
        .env("SERVICEHUB_UNSAFE_TEST_CLOCK", now)
        .env("SERVICEHUB_ACTOR", "cli:test")
        .env("SERVICEHUB_LOG_FORMAT", "text")
        .env_remove("SERVICEHUB_STORE");
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

pub(crate) fn at(t: &str, plus_hours: i64) -> String {
    let t: jiff::Timestamp = t.parse().expect("time");
    (t + jiff::SignedDuration::from_hours(plus_hours)).to_string()
}

pub(crate) async fn count(s: &TestStore, sql: &str) -> i64 {
    s.store.count(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"))
}

// ---------------------------------------------------------------------------------------
// A real SMTP server on loopback.

/// One message as the SMTP server received it.
#[derive(Clone, Debug)]
struct Received {
    rcpt: Vec<String>,
    data: String,
}

impl Received {
    fn header(&self, name: &str) -> Option<String> {
        let prefix = format!("{name}: ");
        self.data.lines().find_map(|l| l.strip_prefix(&prefix).map(str::to_owned))
    }
    fn message_id(&self) -> String {
        self.header("Message-ID").expect("Message-ID")
    }
}

#[derive(Default)]
struct Mailbox {
    received: Vec<Received>,
    /// When set: SIGKILL this process on the first receipt of each Message-ID, after the data
    /// is in (so the message was sent) and before the client hears "250 OK" (so it cannot
    /// mark it sent).
    kill: Option<u32>,
    /// The Message-IDs whose first receipt killed the sender.
    killed: Vec<String>,
}

#[derive(Clone)]
struct SmtpHandler {
    mailbox: Arc<Mutex<Mailbox>>,
    rcpt: Vec<String>,
    data: Vec<u8>,
}

impl mailin_embedded::Handler for SmtpHandler {
    fn data_start(&mut self, _domain: &str, _from: &str, _is8bit: bool, to: &[String]) -> mailin_embedded::Response {
        self.rcpt = to.to_vec();
        self.data.clear();
        mailin_embedded::response::OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.data.extend_from_slice(buf);
        Ok(())
    }

    fn data_end(&mut self) -> mailin_embedded::Response {
        let got =
            Received { rcpt: self.rcpt.clone(), data: crate::support::unquote(&String::from_utf8_lossy(&self.data)) };
        let mut mb = self.mailbox.lock().expect("mailbox");
        let first = !mb.received.iter().any(|r| r.message_id() == got.message_id());
        mb.received.push(got);
        if let Some(pid) = mb.kill.filter(|_| first) {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            let id = mb.received.last().map(Received::message_id).unwrap_or_default();
            mb.killed.push(id);
            mb.kill = None;
        }
        mailin_embedded::response::OK
    }
}

/// Start an SMTP server on a free loopback port; its mailbox and port. It serves until the
/// test process ends.
fn smtp_server() -> (Arc<Mutex<Mailbox>>, u16) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let mailbox = Arc::new(Mutex::new(Mailbox::default()));
    let handler = SmtpHandler { mailbox: mailbox.clone(), rcpt: Vec::new(), data: Vec::new() };
    let mut server = mailin_embedded::Server::new(handler);
    server.with_name("smtp.test").with_num_threads(16).with_tcp_listener(listener);
    std::thread::spawn(move || {
        let _ = server.serve();
    });
    (mailbox, port)
}

fn smtp_env(port: &str) -> Vec<(&'static str, String)> {
    vec![
        ("SERVICEHUB_NOTIFY_TRANSPORT", "smtp".into()),
        ("SERVICEHUB_SMTP_HOST", "127.0.0.1".into()),
        ("SERVICEHUB_SMTP_PORT", port.into()),
        ("SERVICEHUB_SMTP_TLS", "none".into()),
        ("SERVICEHUB_MAIL_FROM", "Services Hub <hub@servicehub.test>".into()),
        ("SERVICEHUB_INVITATION_LINK_BASE", "https://hub.servicehub.test/invitations/accept".into()),
    ]
}

pub(crate) fn refs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

#[tokio::test]
async fn smtp_delivers_exactly_one_message_per_invitation_with_recipient_subject_link_and_message_id() {
    let (mailbox, port) = smtp_server();
    let env = smtp_env(&port.to_string());
    for s in crate::support::stores().await {
        mailbox.lock().expect("mailbox").received.clear();
        let out = servicehub(&s, T0, &refs(&env), &["apply", "-f", "examples/"]);
        assert!(out.status.success(), "{}: {}\n{}", s.name, stdout(&out), stderr(&out));
        assert!(stdout(&out).contains("delivered 13 message(s); 0 to retry, 0 failed"), "{}", stdout(&out));
        // Draining again sends nothing: each invitation goes out once.
        let again = servicehub(&s, &at(T0, 1), &refs(&env), &["notify", "--once"]);
        assert!(stdout(&again).contains("delivered 0 message(s)"), "{}", stdout(&again));

        let received = mailbox.lock().expect("mailbox").received.clone();
        assert_eq!(received.len(), 13, "{}", s.name);
        let keys = s
            .store
            .strings("SELECT idempotency_key FROM outbox WHERE kind = 'invitation' AND state = 'Sent'")
            .await
            .expect("keys");
        let mut ids: Vec<String> = received.iter().map(Received::message_id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 13, "one Message-ID per invitation");
        for m in &received {
            // The envelope recipient is the To: header, and the invitation's.
            assert_eq!(m.rcpt.len(), 1);
            assert_eq!(m.header("To"), Some(m.rcpt[0].clone()));
            let id = m.message_id();
            let key = id.trim_start_matches('<').trim_end_matches("@servicehub.test>");
            assert!(keys.iter().any(|k| k.replace('@', "_") == key), "{id} is an outbox key");
            assert!(m.header("Subject").is_some_and(|s| s.starts_with("You are invited to Contoso Ltd")), "{m:?}");
            assert!(m.data.contains("https://hub.servicehub.test/invitations/accept?token="), "{}", m.data);
            assert_eq!(token_in(&m.data).len(), 43);
        }
        let megan = received.iter().find(|m| m.rcpt == ["megan.bowen@contoso.com"]).expect("megan");
        assert!(megan.header("Subject").is_some_and(|s| s.contains("(workspace contoso-hq)")), "{megan:?}");
        assert!(megan.data.contains("expires on 2026-12-06T12:00:00Z"), "{}", megan.data);
        // Only hashes are stored: no token appears anywhere in the store.
        let token = token_in(&megan.data);
        let stored = s.store.strings("SELECT token_hash FROM invitation_tokens").await.expect("hashes");
        assert_eq!(stored.len(), 13);
        assert!(stored.iter().all(|h| h.len() == 64 && !h.contains(&token)));
    }
}

/// A Customer, its workspace and `n` Memberships, as YAML files in a temp dir.
fn many_memberships(n: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for f in ["00-namespace.yaml", "01-customer.yaml", "02-workspaces.yaml"] {
        std::fs::copy(crate::support::repo("examples").join(f), dir.path().join(f)).expect("copy");
    }
    let docs: Vec<String> = (0..n)
        .map(|i| {
            format!(
                "apiVersion: servicehub.io/v1alpha1\nkind: Membership\nmetadata:\n  name: user-{i}\n  namespace: contoso\n\
                 spec:\n  customerRef:\n    name: contoso\n  workspaceRef:\n    name: contoso-emea\n  subject:\n    kind: User\n    \
                 email: user{i}@contoso.com\n  permissions: [Learning]\n"
            )
        })
        .collect();
    std::fs::write(dir.path().join("10-many.yaml"), docs.join("---\n")).expect("write");
    dir
}

#[tokio::test]
async fn sigkill_between_sending_and_marking_sent_resends_under_the_same_id_and_loses_nothing() {
    const KILLS: usize = 100;
    let (mailbox, port) = smtp_server();
    // One message in flight, so each kill lands between one message's sending and marking.
    let mut env = smtp_env(&port.to_string());
    env.push(("SERVICEHUB_NOTIFY_CONCURRENCY", "1".into()));
    let s = crate::support::sqlite_unmigrated().await;
    let files = many_memberships(KILLS);
    let path = files.path().to_str().expect("utf-8").to_owned();
    let out = servicehub(&s, T0, &refs(&env), &["apply", "-f", &path, "--deliver=false"]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    let invitations = count(&s, "SELECT COUNT(*) FROM invitations").await;
    assert!(invitations > KILLS as i64, "100 users and the customer's people: {invitations}");

    // Each run delivers until the server kills it on a message it has not seen before; the
    // clock moves an hour per run, so retries scheduled by a killed attempt are due.
    let mut runs: i64 = 0;
    loop {
        runs += 1;
        assert!(runs <= 2 * invitations + 10, "the kill loop does not converge");
        let now = at(T0, runs);
        let mut child = command(&s, &now, &refs(&env), &["notify", "--once"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn");
        mailbox.lock().expect("mailbox").kill = Some(child.id());
        let status = child.wait().expect("wait");
        mailbox.lock().expect("mailbox").kill = None;
        if status.success() {
            break;
        }
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9), "run {runs} ended by SIGKILL, not by an error");
    }
    let (killed, received) = {
        let mb = mailbox.lock().expect("mailbox");
        (mb.killed.clone(), mb.received.clone())
    };
    assert!(killed.len() >= KILLS, "{} kills", killed.len());
    // Every invitation ends Sent, marked once.
    assert_eq!(count(&s, "SELECT COUNT(*) FROM invitations WHERE state = 'Sent'").await, invitations);
    assert_eq!(count(&s, "SELECT COUNT(*) FROM audit WHERE action = 'invitation.send'").await, invitations);
    // Nothing lost, nothing delivered under two ids: one Message-ID per recipient, and every
    // message that was killed was re-sent under the same one.
    let mut by_rcpt: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for m in &received {
        by_rcpt.entry(m.rcpt[0].clone()).or_default().push(m.message_id());
    }
    assert_eq!(by_rcpt.len() as i64, invitations, "every invitation was delivered");
    for (rcpt, ids) in &by_rcpt {
        assert!(ids.iter().all(|i| i == &ids[0]), "{rcpt} got {ids:?}");
    }
    // Each message whose receipt killed its sender was sent again (under the same id). With
    // several messages in flight, one that arrived whole as the sender died is re-sent too.
    for id in &killed {
        let times = received.iter().filter(|m| &m.message_id() == id).count();
        assert!(times >= 2, "{id} was received {times} time(s)");
    }

    // A re-sent message carries a new token (only hashes are kept); either one accepts, once.
    let (rcpt, _) = by_rcpt.iter().find(|(_, ids)| ids.len() >= 2).expect("a re-sent message");
    let tokens: Vec<String> = received.iter().filter(|m| &m.rcpt[0] == rcpt).map(|m| token_in(&m.data)).collect();
    assert_ne!(tokens[0], tokens[1]);
    let accept = |token: &str| {
        servicehub(
            &s,
            &at(T0, 300),
            &[],
            &["invitation", "accept", "--token", token, "--account", rcpt, "--account-type", "WorkOrSchool"],
        )
    };
    let first = accept(&tokens[1]);
    assert!(first.status.success(), "{}", stderr(&first));
    let second = accept(&tokens[0]);
    assert!(!second.status.success());
    assert!(stderr(&second).contains("already accepted"), "{}", stderr(&second));
}

// ---------------------------------------------------------------------------------------
// Expiry, re-issue and acceptance rules, with the file transport and an injected clock.

pub(crate) fn file_env(dir: &Path, reissues: &str) -> Vec<(&'static str, String)> {
    vec![("SERVICEHUB_NOTIFY_DIR", dir.display().to_string()), ("SERVICEHUB_INVITATION_REISSUES", reissues.into())]
}

/// The newest token sent to `email` (by issue number in the file name).
pub(crate) fn token_for(dir: &Path, email: &str, issue: i64) -> String {
    let files = eml_files(dir);
    let (_, text) = files
        .iter()
        .find(|(p, t)| t.contains(&format!("To: {email}")) && p.to_string_lossy().ends_with(&format!("_{issue}.eml")))
        .unwrap_or_else(|| panic!("no issue {issue} message for {email} in {files:?}"));
    token_in(text)
}

pub(crate) fn accept(s: &TestStore, now: &str, token: &str, account: &str, kind: &str) -> Output {
    servicehub(s, now, &[], &["invitation", "accept", "--token", token, "--account", account, "--account-type", kind])
}

#[tokio::test]
async fn expired_invitations_are_reissued_with_new_tokens_then_expire_and_old_tokens_are_refused() {
    for s in crate::support::stores().await {
        let dir = tempfile::tempdir().expect("tempdir");
        let env = file_env(dir.path(), "1");
        let out = servicehub(&s, T0, &refs(&env), &["apply", "-f", "examples/"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let first = token_for(dir.path(), "lee.gu@contoso.com", 1);

        // Day 13: nothing expires yet.
        let out = servicehub(&s, &at(T0, 13 * 24), &refs(&env), &["notify", "--once"]);
        assert!(stdout(&out).contains("0 invitation(s) expired, 0 issued again"), "{}", stdout(&out));
        // Day 15: every invitation expired unaccepted; each is issued again (issue 2) and sent.
        let day15 = at(T0, 15 * 24);
        let out = servicehub(&s, &day15, &refs(&env), &["notify", "--once"]);
        assert!(stdout(&out).contains("delivered 13 message(s)"), "{}: {}", s.name, stdout(&out));
        assert!(stdout(&out).contains("0 invitation(s) expired, 13 issued again"), "{}", stdout(&out));
        assert_eq!(count(&s, "SELECT COUNT(*) FROM invitations WHERE state = 'Sent' AND issue = 2").await, 13);
        let second = token_for(dir.path(), "lee.gu@contoso.com", 2);
        assert_ne!(first, second);

        // The first token was replaced.
        let out = accept(&s, &day15, &first, "lee.gu@contoso.com", "WorkOrSchool");
        assert!(!out.status.success());
        assert!(stderr(&out).contains("replaced by a newer one"), "{}", stderr(&out));

        // Day 30: the second issue ran out too, and the re-issue budget (1) is spent.
        let day30 = at(T0, 30 * 24);
        let out = accept(&s, &day30, &second, "lee.gu@contoso.com", "WorkOrSchool");
        assert!(stderr(&out).contains("expired on 2026-12-21T12:00:00Z"), "{}", stderr(&out));
        let out = servicehub(&s, &day30, &refs(&env), &["notify", "--once"]);
        assert!(stdout(&out).contains("13 invitation(s) expired, 0 issued again"), "{}", stdout(&out));
        assert_eq!(count(&s, "SELECT COUNT(*) FROM invitations WHERE state = 'Expired'").await, 13);
        let out = accept(&s, &day30, &second, "lee.gu@contoso.com", "WorkOrSchool");
        assert!(stderr(&out).contains("expired"), "{}", stderr(&out));
        // Every step is in the audit log, refusals included (never with the token).
        for action in ["invitation.send", "invitation.reissue", "invitation.expire", "invitation.refuse"] {
            let n = count(&s, &format!("SELECT COUNT(*) FROM audit WHERE action = '{action}'")).await;
            assert!(n > 0, "{}: no {action} audit entry", s.name);
        }
        let audit = s.store.strings("SELECT COALESCE(after, '') FROM audit").await.expect("audit");
        assert!(audit.iter().all(|a| !a.contains(&first) && !a.contains(&second)), "a token reached the audit log");
    }
}

#[tokio::test]
async fn an_expired_invitation_is_sent_again_with_a_new_token_within_the_reissue_limit() {
    for s in crate::support::stores().await {
        let dir = tempfile::tempdir().expect("tempdir");
        // No automatic re-issue: on day 15 every invitation is Expired.
        let env = file_env(dir.path(), "0");
        assert!(servicehub(&s, T0, &refs(&env), &["apply", "-f", "examples/"]).status.success());
        let first = token_for(dir.path(), "lee.gu@contoso.com", 1);
        let day15 = at(T0, 15 * 24);
        let out = servicehub(&s, &day15, &refs(&env), &["notify", "--once"]);
        assert!(stdout(&out).contains("13 invitation(s) expired, 0 issued again"), "{}", stdout(&out));
        let resend = |now: &str, reissues: &str, extra: &[&str]| {
            let mut args = vec!["invitation", "resend", "-n", "contoso", "--email", "Lee.Gu@contoso.com"];
            args.extend_from_slice(extra);
            servicehub(&s, now, &refs(&file_env(dir.path(), reissues)), &args)
        };
        // With the limit at 0, the resend is refused and says why; nothing is written.
        let out = resend(&day15, "0", &[]);
        assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
        assert!(
            stdout(&out).contains("the limit of re-issues (0, --invitation-reissues) is reached"),
            "{}",
            stdout(&out)
        );
        assert_eq!(count(&s, "SELECT COUNT(*) FROM audit WHERE action = 'invitation.resend'").await, 0);
        // With one re-issue allowed: issue 2, a new token, delivered at once.
        let out = resend(&day15, "1", &["--workspace", "contoso-emea"]);
        assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
        assert!(
            stdout(&out).contains("sent again with a new token") && stdout(&out).contains("delivered 1 message(s)")
        );
        let second = token_for(dir.path(), "lee.gu@contoso.com", 2);
        assert_ne!(first, second);
        assert_eq!(
            s.store
                .strings("SELECT state || ' ' || issue FROM invitations WHERE email = 'lee.gu@contoso.com'")
                .await
                .expect("state"),
            ["Sent 2"],
            "{}",
            s.name
        );
        let audited = s
            .store
            .strings("SELECT actor || ' ' || channel || ' ' || after FROM audit WHERE action = 'invitation.resend'")
            .await
            .expect("audit");
        assert_eq!(audited.len(), 1, "{audited:?}");
        assert!(audited[0].starts_with("cli:test cli ") && audited[0].contains("\"previousState\":\"Expired\""));
        // The old token is refused; the new one accepted.
        let old = accept(&s, &day15, &first, "lee.gu@contoso.com", "WorkOrSchool");
        assert!(!old.status.success());
        assert!(accept(&s, &day15, &second, "lee.gu@contoso.com", "WorkOrSchool").status.success());
        // Now nothing is left to send, and the command says so for each invitation.
        let out = resend(&day15, "1", &[]);
        assert_eq!(out.status.code(), Some(1));
        assert!(stdout(&out).contains("left: accepted already"), "{}", stdout(&out));
        // After the agreement's end nothing new is issued.
        let late = resend("2028-01-02T00:00:00Z", "5", &["--email", "megan.bowen@contoso.com"]);
        assert_eq!(late.status.code(), Some(2), "--email twice is a usage error: {}", stderr(&late));
        let out = servicehub(
            &s,
            "2028-01-02T00:00:00Z",
            &refs(&file_env(dir.path(), "5")),
            &["invitation", "resend", "-n", "contoso", "--email", "megan.bowen@contoso.com"],
        );
        assert!(stdout(&out).contains("left: the agreement has ended"), "{}", stdout(&out));
        let unknown = resend(&day15, "1", &["--workspace", "nope"]);
        assert!(
            stderr(&unknown).contains("no invitation of Lee.Gu@contoso.com in namespace contoso in workspace nope")
        );
    }
}

#[tokio::test]
async fn personal_accounts_are_refused_where_the_workspace_takes_work_accounts_only() {
    for s in crate::support::stores().await {
        let dir = tempfile::tempdir().expect("tempdir");
        let env = file_env(dir.path(), "2");
        assert!(servicehub(&s, T0, &refs(&env), &["apply", "-f", "examples/"]).status.success());
        // contoso-emea belongs to a Unified agreement and has no personal-account exception.
        let lee = token_for(dir.path(), "lee.gu@contoso.com", 1);
        let out = accept(&s, T0, &lee, "lee.gu@outlook.com", "Personal");
        assert!(!out.status.success());
        let msg = stderr(&out);
        assert!(msg.contains("workspace contoso-emea does not accept personal (Microsoft) accounts"), "{msg}");
        assert!(msg.contains("allowPersonalAccounts: true"), "says what the administrator can change: {msg}");
        // Refused means untouched: the same token still works with a work account.
        let out = accept(&s, T0, &lee, "lee.gu@contoso.com", "WorkOrSchool");
        assert!(out.status.success(), "{}", stderr(&out));
        // contoso-labs has the exception: a personal account is accepted.
        let sam = token_for(dir.path(), "sam.researcher@outlook.com", 1);
        let out = accept(&s, T0, &sam, "sam.researcher@outlook.com", "Personal");
        assert!(out.status.success(), "{}", stderr(&out));
        // Acceptance activates the user in that workspace only.
        let active = s
            .store
            .strings(
                "SELECT u.email || ' ' || w.name || ' ' || uw.state FROM user_workspaces uw \
                 JOIN users u ON u.id = uw.user_id JOIN workspaces w ON w.id = uw.workspace_id",
            )
            .await
            .expect("active");
        let mut active = active;
        active.sort();
        assert_eq!(
            active,
            ["lee.gu@contoso.com contoso-emea Active", "sam.researcher@outlook.com contoso-labs Active"]
        );
        // `get invitations -o wide` shows who accepted, and how many attempts each took.
        let table = stdout(&servicehub(&s, T0, &[], &["get", "invitations", "-o", "wide"]));
        let row = table.lines().find(|l| l.contains("lee.gu@contoso.com")).unwrap_or_else(|| panic!("{table}"));
        let cols: Vec<&str> = row.split_whitespace().collect();
        assert_eq!((cols[4], &cols[6..8]), ("Accepted", &["1", "1"][..]), "{table}");
        assert!(row.trim_end().ends_with("lee.gu@contoso.com"), "accepted by: {row}");
        assert!(table.lines().next().is_some_and(|h| h.contains("ACCEPTED BY") && h.contains("LAST ERROR")));
        // Used tokens and malformed input are refused with the reason, naming the field.
        let out = accept(&s, T0, &lee, "lee.gu@contoso.com", "WorkOrSchool");
        assert!(stderr(&out).contains("already accepted"), "{}", stderr(&out));
        let out = accept(&s, T0, "not-a-token", "lee.gu@contoso.com", "WorkOrSchool");
        assert!(stderr(&out).contains("token: must be the 43-character token"), "{}", stderr(&out));
        let out = accept(&s, T0, &lee, "lee.gu@contoso.com", "MSA");
        assert!(stderr(&out).contains("[possible values: WorkOrSchool, Personal]"), "{}", stderr(&out));
        let out = accept(&s, T0, &"A".repeat(43), "lee.gu@contoso.com", "WorkOrSchool");
        assert!(stderr(&out).contains("matches no invitation"), "{}", stderr(&out));
        // A token may begin with '-' (base64url): it is a value, not a flag.
        let out = accept(&s, T0, &format!("-{}", "A".repeat(42)), "lee.gu@contoso.com", "WorkOrSchool");
        assert!(stderr(&out).contains("matches no invitation"), "{}", stderr(&out));
    }
}

#[tokio::test]
async fn a_removed_membership_revokes_its_queued_invitation_and_nothing_is_sent() {
    let s = crate::support::sqlite_unmigrated().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let env = file_env(dir.path(), "2");
    let out = servicehub(&s, T0, &refs(&env), &["apply", "-f", "examples/", "--deliver=false"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = servicehub(&s, T0, &refs(&env), &["delete", "-f", "examples/03-memberships.yaml"]);
    assert!(out.status.success(), "{}", stdout(&out));
    let revoked = count(&s, "SELECT COUNT(*) FROM invitations WHERE state = 'Revoked'").await;
    assert!(revoked > 0);
    let out = servicehub(&s, T0, &refs(&env), &["notify", "--once"]);
    assert!(stdout(&out).contains(&format!("{revoked} cancelled")), "{}", stdout(&out));
    assert_eq!(eml_files(dir.path()).len() as i64, 13 - revoked, "revoked invitations are not sent");
}

// ---------------------------------------------------------------------------------------
// Webhook: a loopback receiver checks the JSON and the signature.

#[derive(Clone, Default)]
struct Hooks {
    got: Arc<Mutex<Vec<(axum::http::HeaderMap, String)>>>,
    /// Status codes to answer, in order; 200 once they run out.
    answers: Arc<Mutex<Vec<u16>>>,
}

async fn webhook_receiver(hooks: Hooks) -> std::net::SocketAddr {
    async fn receive(
        axum::extract::State(h): axum::extract::State<Hooks>,
        headers: axum::http::HeaderMap,
        body: String,
    ) -> axum::http::StatusCode {
        h.got.lock().expect("hooks").push((headers, body));
        let code = { h.answers.lock().expect("answers").pop().unwrap_or(200) };
        axum::http::StatusCode::from_u16(code).expect("status")
    }
    let app = axum::Router::new().route("/hook", axum::routing::post(receive)).with_state(hooks);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

const SECRET: &str = "webhook-test-secret";

/// Check the signature header the way a receiver would: HMAC-SHA256 over "<t>.<body>".
fn verify(headers: &axum::http::HeaderMap, body: &str) -> bool {
    use hmac::Mac;
    let Some(sig) = headers.get("x-servicehub-signature").and_then(|v| v.to_str().ok()) else { return false };
    let Some((t, v1)) = sig.strip_prefix("t=").and_then(|r| r.split_once(",v1=")) else { return false };
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).expect("key");
    mac.update(format!("{t}.{body}").as_bytes());
    let want: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    want == v1
}

fn webhook_env(addr: std::net::SocketAddr) -> Vec<(&'static str, String)> {
    vec![
        ("SERVICEHUB_NOTIFY_TRANSPORT", "webhook".into()),
        ("SERVICEHUB_WEBHOOK_URL", format!("http://{addr}/hook")),
        ("SERVICEHUB_WEBHOOK_SECRET", SECRET.into()),
        ("SERVICEHUB_NOTIFY_MAX_ATTEMPTS", "3".into()),
        ("SERVICEHUB_NOTIFY_RETRY_BASE", "1m".into()),
    ]
}

// Multi-threaded: the receiver must answer while the test blocks on the binary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_receives_signed_json_and_failures_are_retried_then_given_up() {
    let hooks = Hooks::default();
    let addr = webhook_receiver(hooks.clone()).await;
    let env = webhook_env(addr);
    let s = crate::support::sqlite_unmigrated().await;
    // The first two deliveries get 503: retried with backoff, then delivered.
    *hooks.answers.lock().expect("answers") = vec![503, 503];
    let out = servicehub(&s, T0, &refs(&env), &["apply", "-f", "examples/"]);
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("delivered 11 message(s); 2 to retry, 0 failed"), "{}", stdout(&out));
    // Not due before the backoff (1 minute ±20%), due after it.
    let early = servicehub(&s, &at(T0, 0), &refs(&env), &["notify", "--once"]);
    assert!(stdout(&early).contains("delivered 0 message(s)"), "{}", stdout(&early));
    let later = servicehub(&s, &at(T0, 1), &refs(&env), &["notify", "--once"]);
    assert!(stdout(&later).contains("delivered 2 message(s)"), "{}", stdout(&later));
    assert_eq!(count(&s, "SELECT COUNT(*) FROM invitations WHERE state = 'Sent'").await, 13);

    let got = hooks.got.lock().expect("hooks").clone();
    assert_eq!(got.len(), 15, "13 deliveries and 2 failed attempts");
    for (headers, body) in &got {
        assert!(verify(headers, body), "signature of {body}");
        let doc: serde_json::Value = serde_json::from_str(body).expect("JSON");
        assert_eq!(headers.get("x-servicehub-delivery").and_then(|v| v.to_str().ok()), doc["id"].as_str());
        assert_eq!(doc["kind"], "invitation");
        assert!(doc["id"].as_str().is_some_and(|i| i.starts_with("invitation/") && i.ends_with("/1")), "{doc}");
        assert!(doc["data"]["acceptUrl"].as_str().is_some_and(|u| u.contains("?token=")), "{doc}");
        assert_eq!(doc["to"][0], doc["data"]["email"]);
        assert!(doc["text"].as_str().is_some_and(|t| t.contains("expires on")) && doc["html"].is_string());
    }
    // A tampered body fails the check (the check is not vacuous).
    let (headers, body) = &got[0];
    assert!(!verify(headers, &body.replace("invitation", "invitatioN")));

    // A receiver that keeps failing: after 3 attempts the invitation is Failed; a 4xx is final at once.
    let s = crate::support::sqlite_unmigrated().await;
    // Answers are popped from the end: the first delivery gets the 400.
    *hooks.answers.lock().expect("answers") = [vec![500; 3 * 12], vec![400]].concat();
    let out = servicehub(&s, T0, &refs(&env), &["apply", "-f", "examples/"]);
    assert!(!out.status.success(), "a failed delivery fails the command");
    assert!(stdout(&out).contains("delivered 0 message(s); 12 to retry, 1 failed"), "{}", stdout(&out));
    for h in 1..=3 {
        let _ = servicehub(&s, &at(T0, h), &refs(&env), &["notify", "--once"]);
    }
    assert_eq!(count(&s, "SELECT COUNT(*) FROM invitations WHERE state = 'Failed'").await, 13);
    let errors = s.store.strings("SELECT DISTINCT last_error FROM invitations").await.expect("errors");
    assert!(errors.iter().any(|e| e.contains("400")) && errors.iter().any(|e| e.contains("500")), "{errors:?}");
    assert!(count(&s, "SELECT COUNT(*) FROM audit WHERE action = 'invitation.fail'").await == 13);
}

// ---------------------------------------------------------------------------------------
// In the cluster: the leader delivers, the HTTP endpoint accepts, the Membership shows it.

use crate::cluster::{self, Operator};
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use servicehub_operator::api::Membership;
use std::time::Duration;

async fn invited(client: &kube::Client, name: &str) -> Option<(String, String)> {
    let m = Api::<Membership>::namespaced(client.clone(), "contoso").get(name).await.ok()?;
    let st = m.status?;
    let c = st.conditions.iter().find(|c| c.type_ == "Invited")?;
    Some((st.invitation?.state, format!("{} {} {}", c.status, c.reason, c.message)))
}

async fn has_event(client: &kube::Client, reason: &str, name: &str) -> bool {
    let events: Api<Event> = Api::namespaced(client.clone(), "contoso");
    let list = events.list(&Default::default()).await.map(|l| l.items).unwrap_or_default();
    list.iter().any(|e| {
        e.reason.as_deref() == Some(reason) && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_delivers_and_accepts_over_http_and_the_membership_shows_it() {
    // The console runs beside the controller, on its own port; email-link sign-in is on.
    let console = cluster::free_addr();
    let base = format!("http://{console}");
    let (s, api, op) = cluster::ready_scenario(&[
        "--leader-elect=false",
        "--console=true",
        "--console-email-signin=true",
        "--console-addr",
        &console.to_string(),
        "--console-base-url",
        &base,
    ])
    .await;
    let client = api.client();
    cluster::eventually(&op, Duration::from_secs(30), "invitations sent", || async {
        s.store.count("SELECT COUNT(*) FROM invitations WHERE state = 'Sent'").await.unwrap_or(0) == 13
    })
    .await;
    let token = token_for(&op.outbox(), "lee.gu@contoso.com", 1);
    let sends = s.store.strings("SELECT DISTINCT channel || ' ' || actor FROM audit WHERE action = 'invitation.send'");
    assert_eq!(sends.await.expect("audit"), vec!["operator operator"], "the leader delivered");
    let body = serde_json::json!({ "token": token }).to_string();
    // The metrics port serves no acceptance: people never reach it.
    let res =
        reqwest::Client::new().post(format!("http://{}/v1/invitations/accept", op.http)).body(body.clone()).send();
    assert_eq!(res.await.expect("POST").status().as_u16(), 404);
    // Without a sign-in: 401.
    let mut anon = crate::console::Browser::new(&base);
    assert_eq!(anon.post_json("/v1/invitations/accept", &body, &[]).await.status, 401);
    // Signed in (the leader delivers the link) as someone else: 403, naming the invitee.
    let mut other = crate::console::Browser::new(&base);
    let home = other.sign_in_by_email(&op.outbox(), "lee.gu@outlook.com").await;
    let r = other.post_json("/v1/invitations/accept", &body, &[("x-csrf-token", &home.csrf())]).await;
    assert_eq!(r.status, 403, "{}", r.body);
    let reply: serde_json::Value = serde_json::from_str(&r.body).expect("json");
    assert_eq!(reply["reason"], "WrongAccount");
    assert!(reply["message"].as_str().is_some_and(|m| m.contains("lee.gu@contoso.com")), "{reply}");
    // Malformed bodies name the field and never echo the token.
    let mut lee = crate::console::Browser::new(&base);
    let home = lee.sign_in_by_email(&op.outbox(), "lee.gu@contoso.com").await;
    let csrf = home.csrf();
    let r = lee.post_json("/v1/invitations/accept", r#"{"token": 5}"#, &[("x-csrf-token", &csrf)]).await;
    assert_eq!(r.status, 400, "{}", r.body);
    // Accepted, then the same token again: 409.
    let r = lee.post_json("/v1/invitations/accept", &body, &[("x-csrf-token", &csrf)]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let reply: serde_json::Value = serde_json::from_str(&r.body).expect("json");
    assert_eq!((reply["state"].as_str(), reply["workspace"].as_str()), (Some("Accepted"), Some("contoso-emea")));
    assert!(!r.body.contains(&token));
    let r = lee.post_json("/v1/invitations/accept", &body, &[("x-csrf-token", &csrf)]).await;
    let reply: serde_json::Value = serde_json::from_str(&r.body).expect("json");
    assert_eq!((r.status, reply["reason"].as_str()), (409, Some("AlreadyAccepted")), "{reply}");
    // The Membership shows it at once (not at the 10-minute resync), with an Event.
    cluster::eventually(&op, Duration::from_secs(15), "Membership shows Accepted", || async {
        invited(&client, "lee-emea-support").await.is_some_and(|(state, c)| {
            state == "Accepted" && c.starts_with("True Accepted accepted by lee.gu@contoso.com")
        })
    })
    .await;
    assert!(has_event(&client, "InvitationAccepted", "lee-emea-support").await);
    // Accepted by another process (the CLI here; a standby's endpoint alike): the leader
    // notices within a pass and the Membership shows it too.
    let sam = token_for(&op.outbox(), "sam.researcher@outlook.com", 1);
    let now = jiff::Timestamp::now().to_string();
    let out = accept(&s, &now, &sam, "sam.researcher@outlook.com", "Personal");
    assert!(out.status.success(), "{}", stderr(&out));
    cluster::eventually(&op, Duration::from_secs(15), "Membership shows the CLI's acceptance", || async {
        invited(&client, "researcher-personal").await.is_some_and(|(state, _)| state == "Accepted")
    })
    .await;
    assert_eq!(op.metric("servicehub_notifications_total{kind=\"invitation\",outcome=\"sent\"}").await, 13.0);
    assert_eq!(op.metric("servicehub_notifications_total{kind=\"invitation\",outcome=\"accepted\"}").await, 1.0);
    // The token reached neither the log nor the audit log.
    assert!(!op.logs().contains(&token), "the token is in the operator's log");
    let audit = s.store.strings("SELECT COALESCE(after, '') || object FROM audit").await.expect("audit");
    assert!(audit.iter().all(|a| !a.contains(&token)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_that_keeps_failing_marks_the_membership_and_emits_a_warning() {
    let hooks = Hooks::default();
    *hooks.answers.lock().expect("answers") = vec![500; 100];
    let addr = webhook_receiver(hooks.clone()).await;
    let url = format!("http://{addr}/hook");
    let s = crate::support::sqlite_unmigrated().await;
    let api = crate::apiserver::http::ApiServer::start().await;
    cluster::create(&api.client(), &cluster::examples()).await;
    let op = Operator::start_with_env(
        &api,
        &s.url,
        &["--leader-elect=false", "--notify-max-attempts", "2", "--notify-retry-base", "1s"],
        &[
            ("SERVICEHUB_NOTIFY_TRANSPORT", "webhook"),
            ("SERVICEHUB_WEBHOOK_URL", &url),
            ("SERVICEHUB_WEBHOOK_SECRET", SECRET),
        ],
    );
    cluster::wait_all_ready(&api.client(), &op, Duration::from_secs(60)).await;
    let client = api.client();
    cluster::eventually(&op, Duration::from_secs(30), "Membership shows Failed", || async {
        invited(&client, "lee-emea-support").await.is_some_and(|(state, c)| {
            state == "Failed" && c.starts_with("False Failed delivery to lee.gu@contoso.com failed after 2 attempt(s)")
        })
    })
    .await;
    let (_, condition) = invited(&client, "lee-emea-support").await.expect("condition");
    assert!(condition.contains("webhook answered 500"), "{condition}");
    assert!(has_event(&client, "InvitationFailed", "lee-emea-support").await);
    // Ready still holds: the membership is provisioned; only its invitation failed.
    let m = Api::<Membership>::namespaced(client.clone(), "contoso").get("lee-emea-support").await.expect("get");
    let ready = m.status.expect("status").conditions.into_iter().find(|c| c.type_ == "Ready").expect("Ready");
    assert_eq!(ready.status, "True");
    cluster::eventually(&op, Duration::from_secs(30), "every invitation Failed", || async {
        s.store.count("SELECT COUNT(*) FROM invitations WHERE state = 'Failed'").await.unwrap_or(0) == 13
    })
    .await;
    assert!(op.metric("servicehub_notifications_total{kind=\"invitation\",outcome=\"retried\"}").await >= 13.0);
    assert!(op.metric("servicehub_notifications_total{kind=\"invitation\",outcome=\"failed\"}").await >= 13.0);
    assert!(!op.logs().contains(SECRET), "the webhook secret is in the log");
}

#[tokio::test]
async fn lockbox_notifications_go_out_through_the_same_transports() {
    let s = crate::support::sqlite_unmigrated().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let env = file_env(dir.path(), "2");
    assert!(servicehub(&s, T0, &refs(&env), &["apply", "-f", "examples/"]).status.success());
    let args = [
        "lockbox",
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
    ];
    let out = servicehub(&s, T0, &refs(&env), &args);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = servicehub(&s, T0, &refs(&env), &["notify", "--once"]);
    assert!(stdout(&out).contains("delivered 1 message(s)"), "{}", stdout(&out));
    let mails = eml_files(dir.path());
    let (path, text) = mails.iter().find(|(p, _)| p.to_string_lossy().contains("lockbox_")).expect("a lockbox message");
    assert!(path.to_string_lossy().ends_with("lockbox_1_Pending.eml"), "{}", path.display());
    // What an approver needs to decide, without opening anything: the customer, who asks
    // for what and why, the deadline in UTC, and the request's page (which decides nothing
    // by being opened).
    assert!(text.contains("Subject: Approval needed: Customer Lockbox request 1 for Contoso Ltd"), "{text}");
    for line in [
        "Customer: Contoso Ltd (contoso/contoso)",
        "Requested by: eng@microsoft.com",
        "Workload: ExchangeOnline",
        "Support case: 42",
        "Reason: repair",
        "Access asked for: 2h",
        "Decide by: 2026-11-23T00:00:00Z (UTC)",
        "http://localhost:8080/lockbox/requests/1",
        "opening the link decides nothing",
    ] {
        assert!(text.contains(line), "{line:?} missing from {text}");
    }
    // Addressed to the policy's approvers: its email and the Global Administrators.
    let to = text.lines().find(|l| l.starts_with("To: ")).expect("To");
    // ... and the policy's notificationRecipients.
    for who in
        ["megan.bowen@contoso.com", "nestor.wilke@contoso.com", "joni.sherman@contoso.com", "security@contoso.com"]
    {
        assert!(to.contains(who), "{who} missing from {to}");
    }
}

/// An SMTP server on loopback offering STARTTLS with a self-signed certificate (made with
/// the `openssl` command); its mailbox and port.
fn smtp_server_self_signed(dir: &Path) -> (Arc<Mutex<Mailbox>>, u16) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl (Debian's openssl package) makes the test certificate");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let mailbox = Arc::new(Mutex::new(Mailbox::default()));
    let handler = SmtpHandler { mailbox: mailbox.clone(), rcpt: Vec::new(), data: Vec::new() };
    let mut server = mailin_embedded::Server::new(handler);
    let ssl = mailin_embedded::SslConfig::SelfSigned {
        cert_path: cert.display().to_string(),
        key_path: key.display().to_string(),
    };
    server.with_name("localhost").with_ssl(ssl).expect("tls").with_num_threads(4).with_tcp_listener(listener);
    std::thread::spawn(move || {
        let _ = server.serve();
    });
    (mailbox, port)
}

#[tokio::test]
async fn smtp_refuses_an_untrusted_certificate_a_missing_starttls_and_a_plaintext_port_for_tls() {
    use servicehub_operator::notify::message::Message;
    use servicehub_operator::notify::transport::{SmtpTls, Transport, TransportConfig};
    let dir = tempfile::tempdir().expect("tempdir");
    let (untrusted_box, untrusted) = smtp_server_self_signed(dir.path());
    let (plain_box, plain) = smtp_server();
    let m = Message {
        id: "invitation/test/scope/1".into(),
        kind: "invitation".into(),
        to: vec!["lee.gu@contoso.com".into()],
        subject: "Invitation".into(),
        text: "Hello".into(),
        html: "<p>Hello</p>".into(),
        data: serde_json::json!({}),
    };
    let from: lettre::message::Mailbox = "Services Hub <hub@contoso.example>".parse().expect("from");
    let send = |port: u16, tls: SmtpTls| {
        let m = m.clone();
        let from = from.clone();
        async move {
            let config = TransportConfig::Smtp {
                host: "localhost".into(),
                port: Some(port),
                tls,
                credentials: None,
                timeout: Duration::from_secs(5),
            };
            Transport::new(&config).expect("transport").send(&m, &from).await
        }
    };
    // A certificate no public authority signed: refused, to be retried, nothing delivered.
    let e = send(untrusted, SmtpTls::Starttls).await.expect_err("an untrusted certificate");
    assert!(!e.permanent && e.message.to_ascii_lowercase().contains("certificate"), "{e:?}");
    // STARTTLS required and not offered: refused, never sent in the clear.
    let e = send(plain, SmtpTls::Starttls).await.expect_err("no STARTTLS");
    assert!(e.message.contains("STARTTLS is not supported"), "{e:?}");
    // Implicit TLS to a plaintext port: an error within the timeout, not a hang.
    let started = std::time::Instant::now();
    assert!(send(plain, SmtpTls::Tls).await.is_err());
    assert!(started.elapsed() < Duration::from_secs(6));
    // Neither server received anything; plaintext where configured still works.
    assert!(untrusted_box.lock().expect("mailbox").received.is_empty());
    assert!(plain_box.lock().expect("mailbox").received.is_empty());
    send(plain, SmtpTls::None).await.expect("plaintext on loopback, as configured");
    assert_eq!(plain_box.lock().expect("mailbox").received.len(), 1);
}
