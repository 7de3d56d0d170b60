//! SMTP delivery over lettre's SMTP client, on connections this module opens and pools.
//!
//! Why not lettre's own pooled transport: it writes a message's closing `\r\n.\r\n` as a
//! write of its own on a socket without `TCP_NODELAY`, so Nagle's algorithm holds those five
//! bytes until the server acknowledges the previous segment, and servers delay that
//! acknowledgement (40 ms on Linux): about 25 messages per second per connection, whatever
//! the network. Here every socket has `TCP_NODELAY` set before the SMTP dialogue starts;
//! lettre still speaks the protocol (EHLO, STARTTLS, AUTH, MAIL/RCPT/DATA), and TLS is
//! rustls with the webpki roots, as in lettre's transport.

use lettre::transport::smtp::authentication::{Credentials, DEFAULT_MECHANISMS};
use lettre::transport::smtp::client::{AsyncSmtpConnection, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::transport::SmtpTls;

/// A connection idle for longer is checked with `NOOP` before it is used again.
const CHECK_AFTER: Duration = Duration::from_secs(5);
/// A connection idle for longer is closed.
const IDLE_LIMIT: Duration = Duration::from_secs(60);

/// Why a message was not sent: permanent (the server refused it for good) or not.
#[derive(Debug)]
pub struct Failure {
    /// The server refused for good (5xx).
    pub permanent: bool,
    /// What happened, without credentials.
    pub message: String,
}

fn failure(e: &lettre::transport::smtp::Error) -> Failure {
    Failure { permanent: e.is_permanent(), message: format!("SMTP: {e}") }
}

fn io_failure(what: &str, e: &dyn std::fmt::Display) -> Failure {
    Failure { permanent: false, message: format!("SMTP: {what}: {e}") }
}

/// Implicit TLS over a socket this module opened: lettre takes any stream that says its
/// peer's address.
#[derive(Debug)]
struct Tls(tokio_rustls::client::TlsStream<tokio::net::TcpStream>);

impl tokio::io::AsyncRead for Tls {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Tls {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl lettre::transport::smtp::client::AsyncTokioStream for Tls {
    fn peer_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}

/// A pooled SMTP client.
pub struct Client {
    host: String,
    port: u16,
    tls: SmtpTls,
    credentials: Option<Credentials>,
    timeout: Duration,
    hello: ClientId,
    /// Idle connections, the most recently used last.
    idle: Mutex<Vec<(AsyncSmtpConnection, Instant)>>,
    /// At most this many are kept idle (the delivery concurrency).
    keep: usize,
    tls_config: Arc<rustls::ClientConfig>,
}

impl Client {
    /// A client for `host` (`port`, or the default of `tls`: 465, 587 or 25) keeping up to
    /// `keep` connections open between messages.
    pub fn new(
        host: &str,
        port: Option<u16>,
        tls: SmtpTls,
        credentials: Option<(String, String)>,
        timeout: Duration,
        keep: usize,
    ) -> Client {
        let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
        let tls_config = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
        let port = port.unwrap_or(match tls {
            SmtpTls::Tls => lettre::transport::smtp::SUBMISSIONS_PORT,
            SmtpTls::Starttls => lettre::transport::smtp::SUBMISSION_PORT,
            SmtpTls::None => lettre::transport::smtp::SMTP_PORT,
        });
        Client {
            host: host.to_owned(),
            port,
            tls,
            credentials: credentials.map(|(u, p)| Credentials::new(u, p)),
            timeout,
            hello: ClientId::default(),
            idle: Mutex::new(Vec::new()),
            keep: keep.max(1),
            tls_config: Arc::new(tls_config),
        }
    }

    /// A new connection: TCP with `TCP_NODELAY`, TLS as configured, EHLO, AUTH.
    async fn connect(&self) -> Result<AsyncSmtpConnection, Failure> {
        let tcp = tokio::time::timeout(self.timeout, tokio::net::TcpStream::connect((self.host.as_str(), self.port)))
            .await
            .map_err(|_| {
                io_failure("connect", &format!("no answer from {}:{} in {:?}", self.host, self.port, self.timeout))
            })?
            .map_err(|e| io_failure("connect", &e))?;
        tcp.set_nodelay(true).map_err(|e| io_failure("TCP_NODELAY", &e))?;
        let dialogue = async {
            let mut conn = match self.tls {
                SmtpTls::Tls => {
                    let name = rustls::pki_types::ServerName::try_from(self.host.clone())
                        .map_err(|e| io_failure("TLS server name", &e))?;
                    let tls = tokio_rustls::TlsConnector::from(self.tls_config.clone())
                        .connect(name, tcp)
                        .await
                        .map_err(|e| io_failure("TLS", &e))?;
                    AsyncSmtpConnection::connect_with_transport(Box::new(Tls(tls)), &self.hello)
                        .await
                        .map_err(|e| failure(&e))?
                }
                SmtpTls::Starttls => {
                    let mut conn = AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &self.hello)
                        .await
                        .map_err(|e| failure(&e))?;
                    let params = TlsParameters::new(self.host.clone()).map_err(|e| failure(&e))?;
                    conn.starttls(params, &self.hello).await.map_err(|e| failure(&e))?;
                    conn
                }
                SmtpTls::None => AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &self.hello)
                    .await
                    .map_err(|e| failure(&e))?,
            };
            if let Some(c) = &self.credentials {
                conn.auth(DEFAULT_MECHANISMS, c).await.map_err(|e| failure(&e))?;
            }
            Ok(conn)
        };
        tokio::time::timeout(self.timeout, dialogue)
            .await
            .map_err(|_| io_failure("greeting", &format!("no answer in {:?}", self.timeout)))?
    }

    /// An idle connection still open, or a new one.
    async fn checkout(&self) -> Result<AsyncSmtpConnection, Failure> {
        loop {
            let next = self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop();
            let Some((mut conn, since)) = next else { return self.connect().await };
            let idle = since.elapsed();
            if idle > IDLE_LIMIT || conn.has_broken() {
                conn.abort().await;
                continue;
            }
            if idle > CHECK_AFTER && !conn.test_connected().await {
                conn.abort().await;
                continue;
            }
            return Ok(conn);
        }
    }

    /// Send `raw` (the whole message) to `envelope`'s recipients. A connection is used for
    /// one message at a time and kept for the next while fewer than `keep` are idle.
    pub async fn send(&self, envelope: &lettre::address::Envelope, raw: &[u8]) -> Result<(), Failure> {
        let mut conn = self.checkout().await?;
        let sent = tokio::time::timeout(self.timeout, conn.send(envelope, raw)).await;
        match sent {
            Ok(Ok(_)) => {
                let mut idle = self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                if idle.len() < self.keep && !conn.has_broken() {
                    idle.push((conn, Instant::now()));
                }
                Ok(())
            }
            Ok(Err(e)) => {
                conn.abort().await;
                Err(failure(&e))
            }
            Err(_) => {
                conn.abort().await;
                Err(io_failure("send", &format!("no answer in {:?}", self.timeout)))
            }
        }
    }
}
