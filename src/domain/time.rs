//! Time as the product shows it: Unix seconds inside, RFC 3339 UTC everywhere a person or a
//! script reads it (tables, JSON, YAML, messages, status).

/// RFC 3339 UTC text of Unix seconds (the number itself for a time outside jiff's range,
/// which only a corrupted row could hold).
pub fn rfc3339(seconds: i64) -> String {
    jiff::Timestamp::from_second(seconds).map(|t| t.to_string()).unwrap_or_else(|_| seconds.to_string())
}

/// Serialize Unix seconds as RFC 3339 (`#[serde(serialize_with = "...")]`).
pub fn as_rfc3339<S: serde::Serializer>(seconds: &i64, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(&rfc3339(*seconds))
}

/// Serialize optional Unix seconds as RFC 3339, or `null`.
pub fn as_rfc3339_opt<S: serde::Serializer>(seconds: &Option<i64>, ser: S) -> Result<S::Ok, S::Error> {
    match seconds {
        Some(s) => ser.serialize_str(&rfc3339(*s)),
        None => ser.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_seconds() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(1_800_000_000), "2027-01-15T08:00:00Z");
        assert_eq!(super::rfc3339(i64::MAX), i64::MAX.to_string());
    }
}
