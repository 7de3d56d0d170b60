//! Who acts, and how they proved it: the audit log records every write with an [`Actor`].
//!
//! The store trusts whoever can open it (the CLI, the operator); people are authenticated by
//! the console and the API. The channel says which of these a write came through, so a
//! decision taken with the CLI's `--as` is shown as "not authenticated" wherever decisions
//! are listed, and a console decision names the identity its sign-in proved.

use serde::Serialize;

/// The front door a write came through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Channel {
    /// The operator's own reconciles, expiry and delivery.
    Operator,
    /// The command line: the name is whatever `--as` said; the subject is the OS user and host.
    Cli,
    /// The web console, signed in through OpenID Connect.
    ConsoleOidc,
    /// The web console, signed in through an emailed link.
    ConsoleEmail,
    /// The JSON API with an `Authorization: Bearer` ID token.
    ApiBearer,
    /// An entry written before channels were recorded.
    Unrecorded,
}

impl Channel {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Operator => "operator",
            Channel::Cli => "cli",
            Channel::ConsoleOidc => "console-oidc",
            Channel::ConsoleEmail => "console-email",
            Channel::ApiBearer => "api-bearer",
            Channel::Unrecorded => "",
        }
    }

    /// The stored form read back; an empty or unknown value is `Unrecorded`.
    pub fn parse(s: &str) -> Channel {
        match s {
            "operator" => Channel::Operator,
            "cli" => Channel::Cli,
            "console-oidc" => Channel::ConsoleOidc,
            "console-email" => Channel::ConsoleEmail,
            "api-bearer" => Channel::ApiBearer,
            _ => Channel::Unrecorded,
        }
    }

    /// Whether the channel proved who the person is.
    pub fn authenticated(self) -> bool {
        matches!(self, Channel::ConsoleOidc | Channel::ConsoleEmail | Channel::ApiBearer)
    }

    /// How a listing of decisions shows the channel.
    pub fn describe(self) -> &'static str {
        match self {
            Channel::Operator => "operator",
            Channel::Cli => "cli (not authenticated)",
            Channel::ConsoleOidc => "console (OpenID Connect)",
            Channel::ConsoleEmail => "console (email link)",
            Channel::ApiBearer => "api (bearer token)",
            Channel::Unrecorded => "not recorded (not authenticated)",
        }
    }
}

impl std::fmt::Display for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who made a change: the name shown (an email, `operator`, `cli:<user>`), the channel, and
/// the subject the channel authenticated (OIDC `iss#sub`, the signed-in email, the OS user
/// and host for the CLI, the pod for the operator).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Actor {
    /// The name recorded as the actor.
    pub name: String,
    /// How they acted.
    pub channel: Channel,
    /// What the channel knows about them.
    pub subject: String,
}

impl Actor {
    /// The operator, on `host` (the pod name in a cluster).
    pub fn operator(host: &str) -> Actor {
        Actor { name: "operator".into(), channel: Channel::Operator, subject: host.into() }
    }

    /// The command line run by `os_user` on `host`, acting as `claimed` (`--as`) if given.
    pub fn cli(claimed: Option<&str>, os_user: &str, host: &str) -> Actor {
        let name = match claimed.map(str::trim).filter(|c| !c.is_empty()) {
            Some(c) => c.to_ascii_lowercase(),
            None => format!("cli:{os_user}"),
        };
        Actor { name, channel: Channel::Cli, subject: format!("{os_user}@{host}") }
    }

    /// A person signed in to the console or the API.
    pub fn person(email: &str, channel: Channel, subject: &str) -> Actor {
        Actor { name: email.trim().to_ascii_lowercase(), channel, subject: subject.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_round_trip_and_only_sign_ins_authenticate() {
        for c in [Channel::Operator, Channel::Cli, Channel::ConsoleOidc, Channel::ConsoleEmail, Channel::ApiBearer] {
            assert_eq!(Channel::parse(c.as_str()), c);
        }
        assert_eq!(Channel::parse(""), Channel::Unrecorded);
        assert_eq!(Channel::parse("console"), Channel::Unrecorded);
        assert!(!Channel::Cli.authenticated() && !Channel::Operator.authenticated());
        assert!(Channel::ConsoleOidc.authenticated() && Channel::ApiBearer.authenticated());
        assert!(Channel::Cli.describe().contains("not authenticated"));
    }

    #[test]
    fn the_cli_records_the_os_user_beside_the_claimed_name() {
        let a = Actor::cli(Some(" Megan.Bowen@Contoso.com "), "root", "build-7");
        assert_eq!((a.name.as_str(), a.subject.as_str()), ("megan.bowen@contoso.com", "root@build-7"));
        assert_eq!(Actor::cli(None, "lee", "laptop").name, "cli:lee");
        assert_eq!(Actor::cli(Some(""), "lee", "laptop").name, "cli:lee");
    }
}
