//! The transports a message can go by: SMTP (lettre), a signed webhook, or `.eml` files.
//! Each is idempotent by the message id as far as its medium allows: a file is rewritten in
//! place, an SMTP message and a webhook delivery carry the id as Message-ID / delivery id so
//! the receiver recognises a re-send.

use super::message::{self, Message};
use hmac::{Hmac, Mac};
use lettre::message::Mailbox;
use std::path::PathBuf;
use std::time::Duration;

/// How SMTP connections are secured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS, which is required (port 587 by default).
    Starttls,
    /// TLS from the first byte (port 465 by default).
    Tls,
    /// No encryption: only for a relay on loopback or inside the pod network (port 25 by default).
    None,
}

/// Which transport, with its settings.
#[derive(Clone)]
pub enum TransportConfig {
    /// One `.eml` file per message in a directory.
    File {
        /// The directory (created if missing).
        dir: PathBuf,
    },
    /// An SMTP relay.
    Smtp {
        /// Host name.
        host: String,
        /// Port (default by `tls`).
        port: Option<u16>,
        /// Connection security.
        tls: SmtpTls,
        /// User name and password, if the relay wants them.
        credentials: Option<(String, String)>,
        /// Per-command timeout.
        timeout: Duration,
    },
    /// An HTTP endpoint that receives a signed JSON document.
    Webhook {
        /// Where to POST.
        url: url::Url,
        /// The HMAC-SHA256 key.
        secret: String,
        /// Whole-request timeout.
        timeout: Duration,
    },
}

impl std::fmt::Debug for TransportConfig {
    /// Never prints credentials or the webhook secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TransportConfig::File { dir } => write!(f, "file:{}", dir.display()),
            TransportConfig::Smtp { host, port, tls, credentials, .. } => {
                let auth = if credentials.is_some() { " (with credentials)" } else { "" };
                write!(f, "smtp:{host}:{}/{tls:?}{auth}", port.map_or("default".into(), |p| p.to_string()))
            }
            TransportConfig::Webhook { url, .. } => write!(f, "webhook:{url}"),
        }
    }
}

/// Why an attempt failed; `permanent` failures are not retried (a refused recipient, a 4xx).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendError {
    /// Retrying cannot help.
    pub permanent: bool,
    /// What happened (never contains credentials or the token).
    pub message: String,
}

impl SendError {
    fn transient(message: impl Into<String>) -> SendError {
        SendError { permanent: false, message: message.into() }
    }
    fn permanent(message: impl Into<String>) -> SendError {
        SendError { permanent: true, message: message.into() }
    }
}

/// The header carrying the webhook signature: `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`.
pub const SIGNATURE_HEADER: &str = "X-Servicehub-Signature";
/// The header carrying the delivery id (the message's idempotency key).
pub const DELIVERY_HEADER: &str = "X-Servicehub-Delivery";

/// A ready transport.
pub enum Transport {
    /// `.eml` files.
    File(PathBuf),
    /// SMTP, on pooled connections with `TCP_NODELAY` (see [`super::smtp`]).
    Smtp(super::smtp::Client),
    /// Webhook.
    Webhook {
        /// HTTP client with the timeout.
        client: reqwest::Client,
        /// Where to POST.
        url: url::Url,
        /// HMAC key.
        secret: String,
    },
}

/// rustls needs one process-wide crypto provider; ring is the one kube already uses.
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The file name (without `.eml`) for message `id`, one per id: letters, digits, `-` and `.`
/// stay, `/` becomes `_`, every other byte `%XX` (so `lee+ops@x` and `lee_ops@x` differ).
/// A name too long for a file system ends in a hash of the whole id instead.
pub fn file_name(id: &str) -> String {
    const MAX: usize = 200;
    let mut name = String::with_capacity(id.len());
    for b in id.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' => name.push(b as char),
            b'/' => name.push('_'),
            _ => name.push_str(&format!("%{b:02X}")),
        }
    }
    if name.len() <= MAX {
        return name;
    }
    use sha2::Digest;
    let hash = sha2::Sha256::digest(id.as_bytes());
    let hex: String = hash.iter().take(12).map(|b| format!("{b:02x}")).collect();
    // Keep the end (the issue number), which people and tests look for.
    let tail: String = name.chars().rev().take(24).collect::<Vec<_>>().into_iter().rev().collect();
    format!("{}-{hex}-{tail}", &name[..MAX - 24 - 26])
}

/// Write `bytes` to a new file at `tmp` that only its owner can read, then rename it to
/// `path`, on one blocking thread (one hand-off per message, not one per system call).
async fn write_private(tmp: &std::path::Path, path: &std::path::Path, bytes: Vec<u8>) -> Result<(), SendError> {
    let (tmp, path) = (tmp.to_owned(), path.to_owned());
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        // A temporary file left by a crash is replaced; removing first every time cost an
        // unlink per message (a tenth of file delivery's time).
        let file = match crate::files::create_private(&tmp) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                std::fs::remove_file(&tmp).and_then(|()| crate::files::create_private(&tmp))
            }
            file => file,
        };
        file.and_then(|mut f| f.write_all(&bytes))
            .map_err(|e| SendError::transient(format!("{}: {e}", tmp.display())))?;
        std::fs::rename(&tmp, &path).map_err(|e| SendError::transient(format!("{}: {e}", path.display())))
    })
    .await
    .map_err(|e| SendError::transient(e.to_string()))?
}

impl Transport {
    /// Build a transport from its settings.
    pub fn new(config: &TransportConfig) -> Result<Transport, String> {
        install_crypto();
        Ok(match config {
            TransportConfig::File { dir } => {
                crate::files::private_dir(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
                Transport::File(dir.clone())
            }
            TransportConfig::Smtp { host, port, tls, credentials, timeout } => {
                if host.trim().is_empty() {
                    return Err("--smtp-host: the SMTP relay's host name is empty".into());
                }
                Transport::Smtp(super::smtp::Client::new(host, *port, *tls, credentials.clone(), *timeout, 64))
            }
            TransportConfig::Webhook { url, secret, timeout } => {
                if secret.is_empty() {
                    return Err("the webhook transport needs a signing secret (SERVICEHUB_WEBHOOK_SECRET)".into());
                }
                let client = reqwest::Client::builder().timeout(*timeout).build().map_err(|e| e.to_string())?;
                Transport::Webhook { client, url: url.clone(), secret: secret.clone() }
            }
        })
    }

    /// Deliver one message.
    pub async fn send(&self, m: &Message, from: &Mailbox) -> Result<(), SendError> {
        match self {
            Transport::File(dir) => {
                let raw = message::rfc5322(m, from).map_err(SendError::permanent)?.formatted();
                let name = file_name(&m.id);
                let path = dir.join(format!("{name}.eml"));
                let tmp = dir.join(format!(".{name}.eml.tmp"));
                // Written whole, then renamed: a re-send replaces the file, never half-writes it.
                // The file carries a live token: readable by its owner only.
                write_private(&tmp, &path, raw).await
            }
            Transport::Smtp(client) => {
                let msg = message::rfc5322(m, from).map_err(SendError::permanent)?;
                match client.send(msg.envelope(), &msg.formatted()).await {
                    Ok(()) => Ok(()),
                    Err(f) if f.permanent => Err(SendError::permanent(f.message)),
                    Err(f) => Err(SendError::transient(f.message)),
                }
            }
            Transport::Webhook { client, url, secret } => {
                let body = serde_json::to_vec(m).map_err(|e| SendError::permanent(e.to_string()))?;
                let t = jiff::Timestamp::now().as_second();
                let res = client
                    .post(url.clone())
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .header(DELIVERY_HEADER, &m.id)
                    .header(SIGNATURE_HEADER, signature(secret, t, &body))
                    .body(body)
                    .send()
                    .await
                    // Without the URL: it may carry credentials.
                    .map_err(|e| SendError::transient(format!("webhook: {}", e.without_url())))?;
                let status = res.status();
                match status.as_u16() {
                    200..=299 => Ok(()),
                    408 | 429 | 500..=599 => Err(SendError::transient(format!("webhook answered {status}"))),
                    _ => Err(SendError::permanent(format!("webhook answered {status}"))),
                }
            }
        }
    }
}

/// The webhook signature header value for `body` sent at `t`.
pub fn signature(secret: &str, t: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    format!("t={t},v1={hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_stale_temporary_file_is_replaced_and_ends_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let (tmp, path) = (dir.path().join(".m.eml.tmp"), dir.path().join("m.eml"));
        write_private(&tmp, &path, b"first".to_vec()).await.expect("new file");
        assert_eq!(std::fs::read(&path).expect("read"), b"first");
        assert!(!tmp.exists(), "renamed into place");
        // A crash left a temporary file behind, readable by others.
        std::fs::write(&tmp, b"half").expect("stale");
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        write_private(&tmp, &path, b"second".to_vec()).await.expect("replaced");
        assert_eq!(std::fs::read(&path).expect("read"), b"second");
        assert_eq!(std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn file_names_are_one_per_message_id() {
        let ids = [
            "invitation/m1/ws/lee+ops@contoso.com/1",
            "invitation/m1/ws/lee_ops@contoso.com/1",
            "invitation/m1/ws/lee.ops@contoso.com/1",
            "invitation/m1/ws/lee%2Bops@contoso.com/1",
            "invitation/m1_ws/lee+ops@contoso.com/1",
        ];
        let names: std::collections::BTreeSet<String> = ids.iter().map(|i| file_name(i)).collect();
        assert_eq!(names.len(), ids.len(), "{names:?}");
        assert_eq!(file_name("invitation/abc-1/def/1"), "invitation_abc-1_def_1");
        assert_eq!(file_name("x/lee+ops@contoso.com"), "x_lee%2Bops%40contoso.com");
        // Long ids (a 254-character address in a membership id) still fit a file name, stay
        // apart, and keep their issue number at the end.
        let long = |c: char| {
            format!("invitation/{}/supportContact/{}@contoso.com/ws/7", "u".repeat(36), c.to_string().repeat(240))
        };
        let (a, b) = (file_name(&long('a')), file_name(&long('b')));
        assert!(a.len() <= 200 && b.len() <= 200, "{} {}", a.len(), b.len());
        assert_ne!(a, b);
        assert!(a.ends_with("_7"), "{a}");
    }

    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_and_body() {
        // Expected value from Python's hmac module: hmac.new(b"key", b"1.{}", sha256).hexdigest().
        let s = signature("key", 1, b"{}");
        assert_eq!(s, "t=1,v1=1ba6b8171186efc613e8bcc0cbdab2748f24984d7c5a84faa2637afa0e40d224");
    }

    #[test]
    fn debug_output_never_shows_secrets() {
        let c = TransportConfig::Smtp {
            host: "smtp.example".into(),
            port: Some(587),
            tls: SmtpTls::Starttls,
            credentials: Some(("user".into(), "hunter2".into())),
            timeout: Duration::from_secs(5),
        };
        let w = TransportConfig::Webhook {
            url: "https://hooks.example/x".parse().expect("url"),
            secret: "s3cret".into(),
            timeout: Duration::from_secs(5),
        };
        let shown = format!("{c:?} {w:?}");
        assert!(!shown.contains("hunter2") && !shown.contains("s3cret") && shown.contains("smtp.example"), "{shown}");
    }
}
