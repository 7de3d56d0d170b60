//! Invitation tokens: 256 random bits, URL-safe base64 without padding (43 characters). The
//! store keeps only the SHA-256 hash, so a copy of the database cannot accept invitations.

use base64::Engine;
use sha2::{Digest, Sha256};

/// A fresh token and its hash.
pub struct Token {
    /// What goes into the message; never stored or logged.
    pub secret: String,
    /// What the store keeps (lowercase hex SHA-256 of the secret).
    pub hash: String,
}

impl Token {
    /// 256 bits from the operating system's CSPRNG (through `rand`'s thread generator).
    pub fn generate() -> Token {
        let bytes: [u8; 32] = rand::random();
        let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let hash = hash(&secret);
        Token { secret, hash }
    }
}

/// The hash under which a token is stored.
pub fn hash(secret: &str) -> String {
    Sha256::digest(secret.trim().as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_256_bit_url_safe_and_distinct() {
        let a = Token::generate();
        let b = Token::generate();
        assert_eq!(a.secret.len(), 43);
        assert!(a.secret.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'), "{}", a.secret);
        assert_ne!(a.secret, b.secret);
        assert_eq!(a.hash, hash(&a.secret));
        assert_eq!(a.hash.len(), 64);
        assert!(!a.hash.contains(&a.secret));
    }

    #[test]
    fn the_hash_is_sha256_hex() {
        // echo -n abc | sha256sum
        assert_eq!(hash("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
