//! Delivery benchmark: 2,000 memberships applied without delivery, then the outbox drained
//! once per transport: `.eml` files, and SMTP to a real server on loopback (mailin-embedded).
//! Prints messages per second and the cost per message; on each store.
//!
//!     cargo bench --bench notify
//!
//! Goal (issue 18): at least 500 messages/s over SMTP to a loopback server with 8 in flight.

mod support;

use servicehub_operator::engine::{self, Options};
use servicehub_operator::notify::transport::{SmtpTls, TransportConfig};
use servicehub_operator::notify::{Config, Notifier};
use servicehub_operator::plan::Context;
use servicehub_operator::validate::{self, Document, References};
use std::time::{Duration, Instant};

const MEMBERSHIPS: usize = 2_000;

fn scenario() -> Vec<Document> {
    let doc = |value: serde_json::Value| Document { file: "generated".into(), index: 1, value };
    let mut docs = vec![
        doc(serde_json::json!({
            "apiVersion": "servicehub.io/v1alpha1", "kind": "Customer",
            "metadata": { "name": "bench", "namespace": "bench" },
            "spec": {
                "displayName": "Bench Corp",
                "agreement": { "kind": "Premier", "id": "P-1", "startDate": "2025-01-01" },
                "serviceAdministrator": { "email": "sa@bench.example" },
            }
        })),
        doc(serde_json::json!({
            "apiVersion": "servicehub.io/v1alpha1", "kind": "Workspace",
            "metadata": { "name": "ws", "namespace": "bench" },
            "spec": { "customerRef": { "name": "bench" }, "displayName": "Workspace", "default": true,
                      "administrators": [{ "email": "admin@bench.example" }] }
        })),
    ];
    for m in 0..MEMBERSHIPS {
        docs.push(doc(serde_json::json!({
            "apiVersion": "servicehub.io/v1alpha1", "kind": "Membership",
            "metadata": { "name": format!("m-{m}"), "namespace": "bench" },
            "spec": {
                "customerRef": { "name": "bench" }, "workspaceRef": { "name": "ws" },
                "subject": { "kind": "User", "email": format!("user{m}@bench.example") },
                "permissions": ["Learning"],
            }
        })));
    }
    docs
}

#[derive(Clone)]
struct Sink;

impl mailin_embedded::Handler for Sink {}

fn smtp_server() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let mut server = mailin_embedded::Server::new(Sink);
    server.with_name("bench.smtp").with_num_threads(16).with_tcp_listener(listener);
    std::thread::spawn(move || {
        let _ = server.serve();
    });
    port
}

fn config(transport: TransportConfig, concurrency: usize) -> Config {
    Config {
        transport,
        from: "Services Hub <hub@bench.example>".parse().expect("from"),
        link_base: "https://hub.bench.example/accept".parse().expect("url"),
        signin_link_base: "https://hub.bench.example/signin/email".parse().expect("url"),
        actor: servicehub_operator::domain::actor::Actor::operator("bench"),
        validity: Duration::from_secs(14 * 86_400),
        max_attempts: 3,
        retry_base: Duration::from_secs(30),
        retry_cap: Duration::from_secs(3600),
        reissues: 2,
        concurrency,
    }
}

#[tokio::main]
async fn main() {
    // BENCH_SMTP_PORT points at another SMTP server on loopback instead (e.g. aiosmtpd).
    // Before the client set TCP_NODELAY (notify/smtp.rs), the message's closing "." waited
    // for the server's delayed ACK: 168 messages/s with 8 in flight, 22 with one.
    let port = std::env::var("BENCH_SMTP_PORT").ok().and_then(|p| p.parse().ok()).unwrap_or_else(smtp_server);
    let docs = validate::validate_documents(scenario(), References::InSet);
    assert!(!docs.has_errors(), "{:?}", docs.problems.first());
    support::each_store(|label, url| {
        let objects = docs.objects.clone();
        async move {
            use servicehub_operator::store::Store;
            let store = std::sync::Arc::new(
                servicehub_operator::store::sql::SqlStore::connect(url.parse().expect("url")).await.expect("store"),
            );
            store.migrate().await.expect("migrate");
            let ctx = Context {
                now: jiff::Timestamp::now(),
                actor: servicehub_operator::domain::actor::Actor::cli(None, "bench", "host"),
            };
            engine::run(store.as_ref(), &objects, &Options { dry_run: false, ctx, summaries: true })
                .await
                .expect("apply");
            let smtp = TransportConfig::Smtp {
                host: "127.0.0.1".into(),
                port: Some(port),
                tls: SmtpTls::None,
                credentials: None,
                timeout: Duration::from_secs(10),
            };
            let dir = tempfile::tempdir().expect("tempdir");
            let file = TransportConfig::File { dir: dir.path().to_path_buf() };
            let runs = [
                ("file, 8 in flight", file, 8),
                ("smtp, 8 in flight", smtp.clone(), 8),
                ("smtp, 1 in flight", smtp, 1),
            ];
            for (name, transport, concurrency) in runs {
                // Both transports drain the same queue: put it back as apply left it.
                for sql in [
                    "UPDATE outbox SET state = 'Pending', attempts = 0, next_attempt_at = 0, sent_at = NULL",
                    "UPDATE invitations SET state = 'Pending', attempts = 0, sent_at = NULL, expires_at = NULL",
                    "DELETE FROM invitation_tokens",
                ] {
                    store.execute_raw(sql).await.expect(sql);
                }
                let notifier = Notifier::new(store.clone(), config(transport, concurrency)).expect("notifier");
                let started = Instant::now();
                let report = notifier.drain(jiff::Timestamp::now().as_second()).await.expect("drain");
                let took = started.elapsed();
                println!(
                    "{label} {name}: {} messages in {:.2} s = {:.0} messages/s ({:.2} ms each; {} failed)",
                    report.sent,
                    took.as_secs_f64(),
                    report.sent as f64 / took.as_secs_f64(),
                    took.as_secs_f64() * 1000.0 / report.sent.max(1) as f64,
                    report.failed
                );
            }
        }
    })
    .await;
}
