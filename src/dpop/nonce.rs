//! Server-provided DPoP nonces (RFC 9449 §8, §9): stateless, so every server of a fleet that
//! shares the secret accepts the nonces any of them hands out.
//!
//! A nonce is base64url(`t` ‖ HMAC-SHA256(secret, "dpop-nonce" ‖ `t`)[..16]), `t` the issue
//! time in seconds (8 bytes, big-endian). It is current while `t` lies within
//! [`NONCE_LIFETIME`] before now (and not after it). A client learns a fresh one from the
//! `DPoP-Nonce` header of a `use_dpop_nonce` refusal and retries (§8.1).

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::EncodingKey;
use subtle::ConstantTimeEq;

/// How long a nonce stays current.
pub(crate) const NONCE_LIFETIME: Duration = Duration::from_secs(300);

/// The truncated MAC length: 128 bits, as forging one costs 2^128 guesses.
const TAG_LEN: usize = 16;

/// Makes and checks nonces with one secret.
#[derive(Clone)]
pub(crate) struct Nonces {
    key: EncodingKey,
}

impl Nonces {
    pub(crate) fn new(secret: &[u8]) -> Nonces {
        Nonces {
            key: EncodingKey::from_secret(secret),
        }
    }

    fn tag(&self, issued: u64) -> Option<Vec<u8>> {
        let mut message = Vec::with_capacity(18);
        message.extend_from_slice(b"dpop-nonce");
        message.extend_from_slice(&issued.to_be_bytes());
        let mut tag = crate::backend::hmac_sha256(&self.key, &message)?;
        tag.truncate(TAG_LEN);
        Some(tag)
    }

    /// A fresh nonce, issued at `now` (seconds since the epoch).
    pub(crate) fn issue(&self, now: u64) -> Option<String> {
        let mut bytes = now.to_be_bytes().to_vec();
        bytes.extend_from_slice(&self.tag(now)?);
        Some(URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Whether `nonce` is one of ours and still current at `now`.
    pub(crate) fn is_current(&self, nonce: &str, now: u64) -> bool {
        let Ok(bytes) = URL_SAFE_NO_PAD.decode(nonce) else {
            return false;
        };
        let Some((issued, tag)) = bytes.split_first_chunk::<8>() else {
            return false;
        };
        let issued = u64::from_be_bytes(*issued);
        let fresh = issued <= now && now - issued <= NONCE_LIFETIME.as_secs();
        let Some(expected) = self.tag(issued) else {
            return false;
        };
        fresh && tag.len() == TAG_LEN && bool::from(tag.ct_eq(&expected))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nonce_is_current_for_its_lifetime_and_only_under_its_secret() {
        let nonces = Nonces::new(b"a nonce secret of at least 32 bytes!");
        let nonce = nonces.issue(1_000).unwrap();
        assert!(nonces.is_current(&nonce, 1_000));
        assert!(nonces.is_current(&nonce, 1_300));
        assert!(!nonces.is_current(&nonce, 1_301), "expired");
        assert!(!nonces.is_current(&nonce, 999), "issued in the future");
        let other = Nonces::new(b"another secret, also 32 bytes long");
        assert!(!other.is_current(&nonce, 1_000));
        let mut forged = URL_SAFE_NO_PAD.decode(&nonce).unwrap();
        forged[7] ^= 1;
        assert!(!nonces.is_current(&URL_SAFE_NO_PAD.encode(&forged), 1_000));
        assert!(!nonces.is_current("", 1_000));
        assert!(!nonces.is_current("not base64!", 1_000));
    }
}
