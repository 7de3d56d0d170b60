//! Store URLs, with the password kept out of logs and `Debug` output.

use super::{Backend, StoreError};

/// A store URL: `sqlite://PATH` or `postgres://USER[:PASSWORD]@HOST[:PORT]/DB[?...]`.
/// `Display` and `Debug` redact the password; only [`StoreUrl::expose`] returns it.
#[derive(Clone, PartialEq, Eq)]
pub struct StoreUrl {
    raw: String,
    backend: Backend,
}

impl StoreUrl {
    /// The backend the URL names.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The full URL including any password. Only for handing to the database driver.
    pub fn expose(&self) -> &str {
        &self.raw
    }

    /// The URL with the password, and the value of every secret-bearing query parameter
    /// (`password=`, `sslpassword=`, ...), replaced by `***`.
    pub fn redacted(&self) -> String {
        match ::url::Url::parse(&self.raw) {
            Ok(mut u) => {
                let secret_password = u.password().is_some();
                let secret_query = u.query_pairs().any(|(k, _)| secret_parameter(&k));
                if !secret_password && !secret_query {
                    // Shown as written (the parser would normalize it).
                    return self.raw.clone();
                }
                if secret_password {
                    let _ = u.set_password(Some("***"));
                }
                if secret_query {
                    let pairs: Vec<(String, String)> = u
                        .query_pairs()
                        .map(|(k, v)| {
                            let v = if secret_parameter(&k) { "***".to_owned() } else { v.into_owned() };
                            (k.into_owned(), v)
                        })
                        .collect();
                    u.query_pairs_mut().clear().extend_pairs(pairs);
                }
                u.to_string()
            }
            // Unparseable URLs may still hold a secret after the scheme: show only the scheme.
            Err(_) => format!("{}://***", self.raw.split("://").next().unwrap_or("?")),
        }
    }

    /// The file of a SQLite URL (`sqlite://PATH`, `sqlite:PATH`, without its `?...`
    /// options), or `None` for PostgreSQL and in-memory databases.
    pub fn sqlite_file(&self) -> Option<std::path::PathBuf> {
        if self.backend != Backend::Sqlite {
            return None;
        }
        let rest = self.raw.strip_prefix("sqlite://").or_else(|| self.raw.strip_prefix("sqlite:"))?;
        let path = rest.split('?').next().unwrap_or_default();
        (!path.is_empty() && path != ":memory:").then(|| std::path::PathBuf::from(path))
    }

    /// `text` (a driver's error message, say) with every secret of this URL replaced by
    /// `***`, in case the driver quoted the URL or one of its parameters.
    pub fn scrub(&self, text: &str) -> String {
        let mut secrets: Vec<String> = Vec::new();
        if let Ok(u) = ::url::Url::parse(&self.raw) {
            if let Some(p) = u.password() {
                // As written in the URL and as decoded.
                secrets.push(p.to_owned());
                secrets.extend(::url::form_urlencoded::parse(format!("p={p}").as_bytes()).map(|(_, v)| v.into_owned()));
            }
            secrets.extend(u.query_pairs().filter(|(k, _)| secret_parameter(k)).map(|(_, v)| v.into_owned()));
        }
        let mut out = text.replace(&self.raw, &self.redacted());
        for s in secrets.iter().filter(|s| s.len() >= 3) {
            out = out.replace(s.as_str(), "***");
        }
        out
    }
}

/// Query parameters of a database URL whose values are secrets (libpq's `password` and
/// `sslpassword`, and anything else named like a password, secret or token).
fn secret_parameter(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    ["password", "secret", "token", "passphrase"].iter().any(|w| n.contains(w))
}

impl std::str::FromStr for StoreUrl {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let backend = if s.starts_with("sqlite:") {
            Backend::Sqlite
        } else if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            Backend::Postgres
        } else if !s.contains("://") {
            // A bare path: the likeliest meaning is a SQLite file.
            return Err(StoreError::InvalidUrl(format!(
                "{s:?} has no scheme: did you mean sqlite://{s}? (or postgres://USER@HOST/DB)"
            )));
        } else {
            let scheme = s.split("://").next().unwrap_or_default();
            return Err(StoreError::InvalidUrl(format!(
                "unsupported scheme {scheme:?}: use sqlite://PATH or postgres://USER@HOST/DB"
            )));
        };
        Ok(StoreUrl { raw: s.to_owned(), backend })
    }
}

impl std::fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl std::fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StoreUrl({})", self.redacted())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_never_shows() {
        let u: StoreUrl = "postgres://svc:s3cr3t@db.example:5432/hub?sslmode=require".parse().expect("url");
        assert_eq!(u.backend(), Backend::Postgres);
        for shown in [u.to_string(), format!("{u:?}"), u.redacted()] {
            assert!(!shown.contains("s3cr3t"), "{shown}");
            assert!(shown.contains("svc:***@db.example"), "{shown}");
        }
        assert!(u.expose().contains("s3cr3t"));
        // A password given as a parameter is as secret as one given before the host.
        let q: StoreUrl =
            "postgres://svc@db.example/hub?sslmode=require&password=s3cr3t&sslpassword=k3y%21".parse().expect("url");
        for shown in [q.to_string(), format!("{q:?}"), q.scrub(&format!("error connecting to {}", q.expose()))] {
            assert!(!shown.contains("s3cr3t") && !shown.contains("k3y"), "{shown}");
            assert!(shown.contains("sslmode=require"), "{shown}");
        }
        assert!(q.to_string().contains("password=***"), "{q}");
        assert_eq!(q.scrub("bad password s3cr3t for k3y!"), "bad password *** for ***");
        let s: StoreUrl = "sqlite://servicehub.db".parse().expect("url");
        assert_eq!(s.backend(), Backend::Sqlite);
        assert_eq!(s.to_string(), "sqlite://servicehub.db");
        assert!("mysql://x".parse::<StoreUrl>().is_err());
    }
}
