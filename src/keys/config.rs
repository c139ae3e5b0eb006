//! The keys one layer (or one tenant of it) is configured with, and their checks.

use jsonwebtoken::AlgorithmFamily;

use super::{AlgSet, Jwks, Key, KeySet, Keys};
use crate::BuildError;

/// Static keys, static JWKS documents, or one remote source.
#[derive(Default)]
pub(crate) struct KeyConfig {
    pub keys: Vec<Key>,
    pub jwks: Vec<Jwks>,
    #[cfg(feature = "remote")]
    pub remote: Option<super::remote::RemoteJwks>,
}

impl KeyConfig {
    pub(crate) fn is_empty(&self) -> bool {
        #[cfg(feature = "remote")]
        if self.remote.is_some() {
            return false;
        }
        self.keys.is_empty() && self.jwks.is_empty()
    }

    /// The key source and the algorithm allow-list (`allowed`: the configured one, if any),
    /// checked. A source discovered from an issuer adds that issuer to `issuers` when none is
    /// configured: its keys are that issuer's, for that issuer's tokens only; `issuers` naming
    /// any other issuer is a [`BuildError::IssuerMismatch`].
    pub(crate) fn build(
        self,
        allowed: Option<AlgSet>,
        issuers: &mut Vec<String>,
    ) -> Result<(Keys, AlgSet), BuildError> {
        #[cfg(feature = "remote")]
        if let Some(remote) = self.remote {
            if !self.keys.is_empty() || !self.jwks.is_empty() {
                return Err(BuildError::InvalidSetting(
                    "a remote JWKS cannot be combined with static keys in one layer",
                ));
            }
            let allowed = allowed.map_or(remote.allowed(), |a| a.intersect(remote.allowed()));
            if allowed.is_empty() {
                return Err(BuildError::NoUsableAlgorithm);
            }
            if let Some(discovered) = remote.issuer() {
                // The discovery document's `issuer` equals `discovered` exactly (OpenID Connect
                // Discovery 1.0 §4.3): these are that issuer's keys, and they must verify only
                // tokens claiming it. Any other accepted issuer (the tenant's, or one of the
                // layer's `.issuer()`s) would take tokens signed with these keys, so it is
                // refused, compared byte for byte as §4.3 compares.
                if let Some(other) = issuers.iter().find(|iss| iss.as_str() != discovered) {
                    return Err(BuildError::IssuerMismatch {
                        configured: other.clone(),
                        discovered: discovered.to_owned(),
                    });
                }
                if issuers.is_empty() {
                    issuers.push(discovered.to_owned());
                }
            }
            return Ok((Keys::Remote(remote), allowed));
        }
        let _ = &issuers;
        let mut entries = Vec::new();
        for key in self.keys {
            let entry = key.into_entry()?;
            match allowed {
                // A key for an algorithm outside the allow-list is never used.
                Some(allowed) if entry.algs.intersect(allowed).is_empty() => {}
                _ => entries.push(entry),
            }
        }
        for jwks in &self.jwks {
            jwks.check_secret_lengths(allowed)?;
            entries.extend(jwks.entries(allowed));
        }
        if entries.is_empty() {
            return Err(if allowed.is_some() {
                BuildError::NoUsableAlgorithm
            } else {
                BuildError::NoKeys
            });
        }
        let hmac = entries.iter().any(|e| e.family() == AlgorithmFamily::Hmac);
        let public = entries.iter().any(|e| e.family() != AlgorithmFamily::Hmac);
        if hmac && public {
            return Err(BuildError::MixedKeyFamilies);
        }
        let keys = KeySet::new(entries);
        let allowed = allowed.map_or(keys.algorithms(), |a| a.intersect(keys.algorithms()));
        if allowed.is_empty() {
            return Err(BuildError::NoUsableAlgorithm);
        }
        Ok((Keys::Static(keys), allowed))
    }
}
