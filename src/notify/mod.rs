//! Delivery of the outbox: invitations and Lockbox notifications.
//!
//! The outbox is written in the same transaction as the change that caused each message. The
//! [`Notifier`] drains it: expire invitations whose tokens ran out (re-issuing them, within a
//! bound), then for each due entry claim an attempt (new token for an invitation), send it by
//! the configured transport and mark it sent. A crash between sending and marking re-sends
//! the message under the same id; the store keeps every token of that issue acceptable, and
//! any one of them accepts once. Failures are retried with exponential backoff and jitter;
//! after `max_attempts` (or at once for a permanent refusal) the invitation is `Failed`.
//!
//! In the cluster the worker runs on the leader only; `servicehub apply` drains after
//! applying, and `servicehub notify` on demand.

pub mod accept;
pub mod message;
pub mod smtp;
pub mod token;
pub mod transport;

use crate::store::{Claim, ClaimRequest, MembershipRef, OutboxEntry, Store, StoreError};
use futures::StreamExt;
use lettre::message::Mailbox;
use std::sync::Arc;
use std::time::Duration;
use transport::{Transport, TransportConfig};

/// Entries read per batch.
const BATCH: i64 = 100;

/// Delivery settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// The transport.
    pub transport: TransportConfig,
    /// The sender address.
    pub from: Mailbox,
    /// The acceptance page; the token is added as the `token` query parameter.
    pub link_base: url::Url,
    /// The console page that completes an emailed sign-in; the token is added as `token`.
    pub signin_link_base: url::Url,
    /// How long an invitation can be accepted after it is first sent.
    pub validity: Duration,
    /// Attempts before an invitation is `Failed`.
    pub max_attempts: u32,
    /// Delay before the first retry; it doubles per attempt, with ±20% jitter.
    pub retry_base: Duration,
    /// Longest delay between attempts.
    pub retry_cap: Duration,
    /// How many times an expired, unaccepted invitation is re-issued with a new token.
    pub reissues: u32,
    /// Messages in flight at once.
    pub concurrency: usize,
    /// Who delivers, for the audit log: the operator's worker, or the CLI (`apply`,
    /// `notify`, `serve`).
    pub actor: crate::domain::actor::Actor,
}

/// What one drain did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// Messages delivered.
    pub sent: u64,
    /// Attempts that failed and will be retried.
    pub retried: u64,
    /// Messages given up on.
    pub failed: u64,
    /// Entries with nothing left to deliver (revoked or re-issued invitations).
    pub cancelled: u64,
    /// Invitations expired for good.
    pub expired: u64,
    /// Expired invitations issued again.
    pub reissued: u64,
    /// Memberships whose invitation changed.
    #[serde(skip)]
    pub touched: Vec<MembershipRef>,
    /// Deliveries by kind and outcome (`sent`, `retried`, `failed`), for metrics.
    #[serde(skip)]
    pub by_kind: std::collections::BTreeMap<(String, &'static str), u64>,
}

impl Report {
    /// Count one delivery of `kind` ending in `outcome`.
    fn tally(&mut self, kind: &str, outcome: &'static str, touched: Option<MembershipRef>) {
        match outcome {
            "sent" => self.sent += 1,
            "retried" => self.retried += 1,
            _ => self.failed += 1,
        }
        *self.by_kind.entry((kind.to_owned(), outcome)).or_default() += 1;
        self.touched.extend(touched);
    }
}

/// Drains the outbox through one transport.
pub struct Notifier {
    store: Arc<dyn Store>,
    transport: Transport,
    config: Config,
}

impl Notifier {
    /// A notifier over `store`; fails when the transport cannot be set up.
    pub fn new(store: Arc<dyn Store>, config: Config) -> Result<Notifier, String> {
        let transport = Transport::new(&config.transport)?;
        Ok(Notifier { store, transport, config })
    }

    /// The store it drains.
    pub fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    /// Expire what ran out and deliver everything due at `now` (Unix seconds).
    pub async fn drain(&self, now: i64) -> Result<Report, StoreError> {
        let mut report = Report::default();
        loop {
            let expired =
                self.store.invitations_expire(now, i64::from(self.config.reissues), BATCH, &self.config.actor).await?;
            for e in &expired {
                if e.reissued {
                    report.reissued += 1;
                    tracing::info!(to = %e.email, issue = e.issue, "invitation expired unaccepted; issued again");
                } else {
                    report.expired += 1;
                    tracing::info!(to = %e.email, "invitation expired unaccepted; no re-issues left");
                }
            }
            report.touched.extend(expired.iter().filter_map(|e| e.membership.clone()));
            if (expired.len() as i64) < BATCH {
                break;
            }
        }
        loop {
            let due = self.store.outbox_due(now, BATCH).await?;
            // As many claimed at once as can be in flight: a crash then costs an attempt to
            // no more messages than were being sent.
            for group in due.chunks(self.config.concurrency.max(1)) {
                self.deliver_all(group, now, &mut report).await?;
            }
            if (due.len() as i64) < BATCH {
                return Ok(report);
            }
        }
    }

    /// One attempt at each entry of `due`, all sent at once. The claims are made in one
    /// transaction and the deliveries recorded in another, so a message costs a share of two
    /// commits instead of two of its own (issue 18); each entry is still claimed before it is
    /// sent (a crash mid-send is retried) and marked sent, and audited, on its own terms.
    async fn deliver_all(&self, due: &[OutboxEntry], now: i64, report: &mut Report) -> Result<(), StoreError> {
        let validity = i64::try_from(self.config.validity.as_secs()).unwrap_or(i64::MAX / 2);
        let tokens: Vec<Option<token::Token>> = due
            .iter()
            .map(|e| matches!(e.kind.as_str(), "invitation" | "signin").then(token::Token::generate))
            .collect();
        let requests: Vec<ClaimRequest<'_>> = due
            .iter()
            .zip(&tokens)
            .map(|(entry, token)| ClaimRequest {
                entry,
                retry_at: now + self.retry_after(attempt_of(entry)),
                token_hash: token.as_ref().map(|t| t.hash.as_str()),
            })
            .collect();
        let claims = self.store.outbox_claim_all(&requests, now, validity).await?;
        let mut claimed = Vec::with_capacity(due.len());
        for ((request, token), claim) in requests.iter().zip(&tokens).zip(claims) {
            match claim {
                Claim::Send { attempt, expires_at } => {
                    claimed.push((request.entry, token.as_ref(), request.retry_at, attempt, expires_at))
                }
                Claim::Cancelled => report.cancelled += 1,
                Claim::Taken => {}
            }
        }
        // Several messages in flight: an SMTP exchange waits on round trips, not on this
        // process. A failure carries when to try again, or `None` to give up.
        let outcomes: Vec<(&OutboxEntry, Result<(), Failure>)> = futures::stream::iter(claimed)
            .map(|(entry, token, retry_at, attempt, expires_at)| async move {
                let sent = match self.render(entry, token, expires_at) {
                    Ok(message) => self.transport.send(&message, &self.config.from).await.map(|()| {
                        tracing::debug!(id = %entry.key, to = ?message.to, attempt, "message sent");
                    }),
                    Err(message) => Err(transport::SendError { permanent: true, message }),
                };
                let sent = sent.map_err(|e| {
                    let give_up = e.permanent || attempt >= i64::from(self.config.max_attempts);
                    let retry = (!give_up).then_some(retry_at);
                    tracing::warn!(id = %entry.key, attempt, permanent = e.permanent, error = %e.message, retry_at = ?retry, "delivery failed");
                    (e.message, retry)
                });
                (entry, sent)
            })
            .buffer_unordered(self.config.concurrency.max(1))
            .collect()
            .await;
        let delivered: Vec<&OutboxEntry> =
            outcomes.iter().filter(|(_, r)| r.is_ok()).map(|(entry, _)| *entry).collect();
        if !delivered.is_empty() {
            let touched = self.store.outbox_sent_all(&delivered, now, &self.config.actor).await?;
            for (entry, touched) in delivered.iter().zip(touched) {
                report.tally(&entry.kind, "sent", touched);
            }
        }
        for (entry, result) in &outcomes {
            if let Err((message, retry)) = result {
                self.failed(entry, now, message, *retry, report).await?;
            }
        }
        Ok(())
    }

    async fn failed(
        &self,
        entry: &OutboxEntry,
        now: i64,
        error: &str,
        retry_at: Option<i64>,
        report: &mut Report,
    ) -> Result<(), StoreError> {
        let touched = self.store.outbox_failed(entry, now, error, retry_at, &self.config.actor).await?;
        report.tally(&entry.kind, if retry_at.is_some() { "retried" } else { "failed" }, touched);
        Ok(())
    }

    /// The message of an entry for this attempt.
    fn render(
        &self,
        entry: &OutboxEntry,
        token: Option<&token::Token>,
        expires_at: Option<i64>,
    ) -> Result<message::Message, String> {
        match (entry.kind.as_str(), token) {
            ("invitation", Some(token)) => {
                let content: message::InvitationContent =
                    serde_json::from_str(&entry.payload).map_err(|e| format!("invitation content: {e}"))?;
                let mut link = self.config.link_base.clone();
                link.query_pairs_mut().append_pair("token", &token.secret);
                let link = message::InvitationLink {
                    link: link.as_str(),
                    token: &token.secret,
                    expires_at: expires_at.unwrap_or_default(),
                };
                Ok(message::invitation(&entry.key, &content, &link))
            }
            ("signin", Some(token)) => {
                let payload: serde_json::Value =
                    serde_json::from_str(&entry.payload).map_err(|e| format!("sign-in content: {e}"))?;
                let mut link = self.config.signin_link_base.clone();
                link.query_pairs_mut().append_pair("token", &token.secret);
                let email = payload["email"].as_str().unwrap_or_default();
                Ok(message::signin(&entry.key, email, link.as_str(), expires_at.unwrap_or_default()))
            }
            ("lockbox", _) => {
                let payload: serde_json::Value =
                    serde_json::from_str(&entry.payload).map_err(|e| format!("lockbox content: {e}"))?;
                // The request's page on the console the sign-in links point at.
                let mut link = self.config.signin_link_base.clone();
                link.set_path(&format!("/lockbox/requests/{}", payload["request"]["id"]));
                link.set_query(None);
                Ok(message::lockbox(&entry.key, &payload, Some(link.as_str())))
            }
            (kind, _) => Err(format!("unknown message kind {kind:?}")),
        }
    }

    /// Seconds before retrying after attempt `attempt`: base × 2^(attempt−1), capped, ±20%.
    fn retry_after(&self, attempt: u32) -> i64 {
        let exp = self.config.retry_base.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
        let d = exp.min(self.config.retry_cap).mul_f64(rand::random_range(0.8..1.2));
        i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2).max(1)
    }
}

/// Why a message was not delivered, and when to try again (`None`: give up).
type Failure = (String, Option<i64>);

/// The number of the attempt an entry's claim makes.
fn attempt_of(entry: &OutboxEntry) -> u32 {
    u32::try_from(entry.attempts + 1).unwrap_or(u32::MAX)
}
