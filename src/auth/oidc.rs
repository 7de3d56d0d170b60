//! OpenID Connect sign-in (the `openidconnect` crate): the authorization code flow with PKCE
//! for the console, and ID-token verification for `Authorization: Bearer` on the API.
//!
//! The provider is found through its discovery document, and ID tokens are verified against
//! its JWKS: signature, issuer, audience (this client), expiry, and for sign-in the nonce of
//! the request. The verified token's claims are then mapped to a person by [`super::claims`].
//! The discovery document and keys are read again at most once a minute when a token names a
//! key the cached set lacks (the provider rotated its keys), and every hour in any case.

use super::claims::{self, ClaimRules, SignedIn};
use base64::Engine;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreIdToken, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet, EndpointNotSet, EndpointSet, IssuerUrl,
    Nonce, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
};
use std::sync::RwLock;
use std::time::{Duration, Instant};

/// How the console signs people in through a provider.
#[derive(Clone)]
pub struct Config {
    /// The issuer URL (its `/.well-known/openid-configuration` is read).
    pub issuer: url::Url,
    /// This client's id at the provider.
    pub client_id: String,
    /// This client's secret (from the environment or a Secret; never logged).
    pub client_secret: String,
    /// The callback on the console (`<base>/signin/oidc/callback`), registered at the provider.
    pub redirect: url::Url,
    /// Scopes asked for besides `openid`.
    pub scopes: Vec<String>,
    /// How claims say who the person is.
    pub rules: ClaimRules,
}

impl std::fmt::Debug for Config {
    /// Never prints the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("issuer", &self.issuer.as_str())
            .field("client_id", &self.client_id)
            .field("redirect", &self.redirect.as_str())
            .finish_non_exhaustive()
    }
}

/// Why a sign-in or a bearer token failed. The messages never contain a token or the secret.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The provider could not be reached or answered something unusable.
    #[error("the OpenID provider: {0}")]
    Provider(String),
    /// The ID token failed verification (signature, issuer, audience, expiry, nonce).
    #[error("the ID token was refused: {0}")]
    Token(String),
    /// The verified claims do not identify a person.
    #[error(transparent)]
    Claims(#[from] claims::ClaimError),
}

type Client =
    CoreClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointMaybeSet, EndpointMaybeSet>;

/// An authorization request to send the browser to.
pub struct Begun {
    /// The provider's authorization URL with every parameter.
    pub url: url::Url,
    /// The `state` parameter (the store keeps its hash).
    pub state: String,
    /// The PKCE verifier, kept until the callback.
    pub verifier: String,
    /// The nonce the ID token must carry.
    pub nonce: String,
}

/// A person the provider vouched for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// Who, from the claims.
    pub person: SignedIn,
    /// `issuer#sub`: the stable subject.
    pub subject: String,
}

/// A discovered provider.
pub struct Provider {
    config: Config,
    http: reqwest::Client,
    client: RwLock<(Client, Instant)>,
    /// When keys were last read because a token named an unknown key.
    refreshed_for_kid: RwLock<Option<Instant>>,
}

const REDISCOVER_EVERY: Duration = Duration::from_secs(3600);
const REFRESH_FOR_UNKNOWN_KEY: Duration = Duration::from_secs(60);

/// The HTTP client of the flow: no redirects (the spec's advice against SSRF through them),
/// a short timeout.
fn http_client() -> Result<reqwest::Client, Error> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| Error::Provider(e.to_string()))
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct HttpError(String);

/// The flow's HTTP client as the `openidconnect` crate calls it (a named type, so that the
/// futures it returns are `Send` for every borrow).
struct Http<'a>(&'a reqwest::Client);

impl<'c> openidconnect::AsyncHttpClient<'c> for Http<'_> {
    type Error = HttpError;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<openidconnect::HttpResponse, HttpError>> + Send + 'c>,
    >;

    fn call(&'c self, request: openidconnect::HttpRequest) -> Self::Future {
        Box::pin(send(self.0, request))
    }
}

/// One request of the flow, through reqwest.
async fn send(
    http: &reqwest::Client,
    req: openidconnect::HttpRequest,
) -> Result<openidconnect::HttpResponse, HttpError> {
    let (parts, body) = req.into_parts();
    let url = parts.uri.to_string();
    let res = http
        .request(parts.method, &url)
        .headers(parts.headers)
        .body(body)
        .send()
        .await
        .map_err(|e| HttpError(format!("{url}: {e}")))?;
    let mut out = openidconnect::http::Response::builder().status(res.status());
    for (k, v) in res.headers() {
        out = out.header(k, v);
    }
    let body = res.bytes().await.map_err(|e| HttpError(format!("{url}: {e}")))?;
    out.body(body.to_vec()).map_err(|e| HttpError(e.to_string()))
}

impl Provider {
    /// Read the provider's discovery document and keys.
    pub async fn discover(config: Config) -> Result<Provider, Error> {
        let http = http_client()?;
        let client = Self::client(&config, &http).await?;
        Ok(Provider {
            config,
            http,
            client: RwLock::new((client, Instant::now())),
            refreshed_for_kid: RwLock::new(None),
        })
    }

    async fn client(config: &Config, http: &reqwest::Client) -> Result<Client, Error> {
        let issuer = IssuerUrl::new(config.issuer.as_str().trim_end_matches('/').to_owned())
            .map_err(|e| Error::Provider(format!("issuer URL: {e}")))?;
        let call = Http(http);
        let metadata = CoreProviderMetadata::discover_async(issuer, &call)
            .await
            .map_err(|e| Error::Provider(format!("discovery at {}: {}", config.issuer, error_chain(&e))))?;
        let redirect =
            RedirectUrl::new(config.redirect.to_string()).map_err(|e| Error::Provider(format!("redirect URL: {e}")))?;
        Ok(CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(config.client_id.clone()),
            Some(ClientSecret::new(config.client_secret.clone())),
        )
        .set_redirect_uri(redirect))
    }

    fn current(&self) -> Client {
        self.client.read().unwrap_or_else(std::sync::PoisonError::into_inner).0.clone()
    }

    /// Read the discovery document and keys again.
    async fn rediscover(&self) -> Result<(), Error> {
        let client = Self::client(&self.config, &self.http).await?;
        *self.client.write().unwrap_or_else(std::sync::PoisonError::into_inner) = (client, Instant::now());
        Ok(())
    }

    /// The authorization endpoint's origin (for the console's `form-action` policy).
    pub fn authorization_origin(&self) -> Option<String> {
        let client = self.current();
        let url = url::Url::parse(client.auth_uri().as_str()).ok()?;
        Some(url.origin().ascii_serialization())
    }

    /// Start a sign-in: the URL to send the browser to, with PKCE, `state` and nonce.
    pub async fn begin(&self) -> Result<Begun, Error> {
        let stale =
            self.client.read().unwrap_or_else(std::sync::PoisonError::into_inner).1.elapsed() > REDISCOVER_EVERY;
        if stale {
            self.rediscover().await?;
        }
        let client = self.current();
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut req =
            client.authorize_url(CoreAuthenticationFlow::AuthorizationCode, CsrfToken::new_random, Nonce::new_random);
        for s in &self.config.scopes {
            req = req.add_scope(Scope::new(s.clone()));
        }
        let (url, state, nonce) = req.set_pkce_challenge(challenge).url();
        Ok(Begun {
            url,
            state: state.secret().clone(),
            verifier: verifier.secret().clone(),
            nonce: nonce.secret().clone(),
        })
    }

    /// Finish a sign-in: exchange the code (with the PKCE verifier) and verify the ID token
    /// against the request's nonce.
    pub async fn finish(&self, code: &str, verifier: &str, nonce: &str) -> Result<Verified, Error> {
        let client = self.current();
        let call = Http(&self.http);
        let response = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| Error::Provider(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(verifier.to_owned()))
            .request_async(&call)
            .await
            .map_err(|e| Error::Provider(format!("token endpoint: {}", error_chain(&e))))?;
        let token = response.id_token().ok_or_else(|| Error::Token("the token response has no id_token".into()))?;
        let expected = Nonce::new(nonce.to_owned());
        self.verify(token, &expected).await
    }

    /// Verify a bearer ID token (no nonce: it was not requested by this console).
    pub async fn verify_bearer(&self, raw: &str) -> Result<Verified, Error> {
        let token: CoreIdToken =
            raw.trim().parse().map_err(|_| Error::Token("the bearer token is not a signed JWT".into()))?;
        self.verify(&token, &NoNonce).await
    }

    async fn verify(&self, token: &CoreIdToken, nonce: &dyn NonceCheck) -> Result<Verified, Error> {
        match self.verify_with(&self.current(), token, nonce) {
            Err(Error::Token(msg)) if msg.contains("key") && self.may_refresh_keys() => {
                // The provider may have rotated its keys since they were read.
                self.rediscover().await?;
                self.verify_with(&self.current(), token, nonce)
            }
            other => other,
        }
    }

    fn may_refresh_keys(&self) -> bool {
        let mut last = self.refreshed_for_kid.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if last.is_some_and(|t| t.elapsed() < REFRESH_FOR_UNKNOWN_KEY) {
            return false;
        }
        *last = Some(Instant::now());
        true
    }

    fn verify_with(&self, client: &Client, token: &CoreIdToken, nonce: &dyn NonceCheck) -> Result<Verified, Error> {
        let verifier = client.id_token_verifier();
        let claims =
            token.claims(&verifier, |n: Option<&Nonce>| nonce.check(n)).map_err(|e| Error::Token(error_chain(&e)))?;
        let subject = format!("{}#{}", claims.issuer().as_str(), claims.subject().as_str());
        // The library verified this exact compact JWT; its payload is read again as a map so
        // that provider-specific claims (`tid`, `groups`, `upn`) reach the claim rules.
        let raw = token.to_string();
        let payload = raw.split('.').nth(1).ok_or_else(|| Error::Token("malformed JWT".into()))?;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload.trim_end_matches('='))
            .map_err(|_| Error::Token("malformed JWT payload".into()))?;
        let map: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&bytes).map_err(|_| Error::Token("malformed JWT payload".into()))?;
        Ok(Verified { person: claims::signed_in(&map, &self.config.rules)?, subject })
    }
}

/// How a token's nonce is checked.
trait NonceCheck: Send + Sync {
    fn check(&self, got: Option<&Nonce>) -> Result<(), String>;
}

impl NonceCheck for Nonce {
    fn check(&self, got: Option<&Nonce>) -> Result<(), String> {
        match got {
            Some(n) if super::session::same_secret(n.secret(), self.secret()) => Ok(()),
            Some(_) => Err("the nonce does not match this sign-in".into()),
            None => Err("the token carries no nonce".into()),
        }
    }
}

/// Bearer tokens: any nonce or none (the console did not ask for them).
struct NoNonce;

impl NonceCheck for NoNonce {
    fn check(&self, _: Option<&Nonce>) -> Result<(), String> {
        Ok(())
    }
}

/// An error with its sources, for messages.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
