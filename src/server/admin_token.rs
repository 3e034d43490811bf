//! The bearer token of the admin endpoints (`admin.token`): at least
//! [`MIN_ADMIN_TOKEN_BYTES`] long, kept only as its SHA-256 digest, and
//! compared over digests in constant time, so the time a comparison takes
//! tells neither the token's content nor its length. Not for CDS Hooks
//! callers, who authenticate with JWTs (see `crate::auth`).

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

/// The least length of `admin.token`, in bytes.
pub const MIN_ADMIN_TOKEN_BYTES: usize = 32;

/// An `admin.token` too short to be used (its length, never its content).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "admin.token is {length} bytes long; it must be at least {MIN_ADMIN_TOKEN_BYTES} \
     (use a long random secret, e.g. `openssl rand -hex 32`), or leave it unset to turn the admin endpoints off"
)]
pub struct AdminTokenTooShort {
    /// The configured token's length, in bytes.
    pub length: usize,
}

/// A configured admin token, by its digest.
#[derive(Clone)]
pub struct AdminToken {
    digest: [u8; 32],
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(..)")
    }
}

impl AdminToken {
    /// The token `admin.token` sets: `None` when it is unset or empty (the admin endpoints
    /// are off), an error naming the setting when it is shorter than
    /// [`MIN_ADMIN_TOKEN_BYTES`].
    pub fn from_setting(
        token: Option<&SecretString>,
    ) -> Result<Option<AdminToken>, AdminTokenTooShort> {
        let Some(token) = token.map(|t| t.expose_secret()).filter(|t| !t.is_empty()) else {
            return Ok(None);
        };
        if token.len() < MIN_ADMIN_TOKEN_BYTES {
            return Err(AdminTokenTooShort {
                length: token.len(),
            });
        }
        Ok(Some(AdminToken {
            digest: Sha256::digest(token.as_bytes()).into(),
        }))
    }

    /// Whether `presented` is the token. Both sides are 32-byte digests, compared without
    /// stopping at the first difference.
    pub fn matches(&self, presented: &str) -> bool {
        let presented: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let difference = presented
            .iter()
            .zip(&self.digest)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        std::hint::black_box(difference) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn an_admin_token_matches_itself_only_whatever_length_is_presented() {
        let token = AdminToken::from_setting(Some(&TOKEN.into()))
            .unwrap()
            .unwrap();
        assert!(token.matches(TOKEN));
        for other in [
            "",
            "0",
            &TOKEN[..31],
            &format!("{TOKEN}0"),
            &TOKEN.replace('f', "e"),
        ] {
            assert!(!token.matches(other), "{other:?}");
        }
        assert_eq!(format!("{token:?}"), "AdminToken(..)", "never printed");
    }

    #[test]
    fn an_unset_or_empty_admin_token_is_off_and_a_short_one_is_refused() {
        assert!(AdminToken::from_setting(None).unwrap().is_none());
        assert!(
            AdminToken::from_setting(Some(&"".into()))
                .unwrap()
                .is_none()
        );
        let message = AdminToken::from_setting(Some(&TOKEN[..31].into()))
            .unwrap_err()
            .to_string();
        assert!(message.contains("admin.token"), "{message}");
        assert!(!message.contains(&TOKEN[..31]), "the token is never quoted");
    }
}
