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

    /// The URL with the password replaced by `***`.
    pub fn redacted(&self) -> String {
        match ::url::Url::parse(&self.raw) {
            Ok(mut u) if u.password().is_some() => {
                let _ = u.set_password(Some("***"));
                u.to_string()
            }
            Ok(_) => self.raw.clone(),
            // Unparseable URLs may still hold a secret after the scheme: show only the scheme.
            Err(_) => format!("{}://***", self.raw.split("://").next().unwrap_or("?")),
        }
    }
}

impl std::str::FromStr for StoreUrl {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let backend = if s.starts_with("sqlite:") {
            Backend::Sqlite
        } else if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            Backend::Postgres
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
        let s: StoreUrl = "sqlite://servicehub.db".parse().expect("url");
        assert_eq!(s.backend(), Backend::Sqlite);
        assert_eq!(s.to_string(), "sqlite://servicehub.db");
        assert!("mysql://x".parse::<StoreUrl>().is_err());
    }
}
