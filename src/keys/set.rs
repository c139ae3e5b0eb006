//! The parsed key set the request path looks keys up in.

use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, DecodingKeyKind};

use crate::backend::provider;
use crate::{AuthError, BuildError};

/// At most this many keys are tried for one token: a token without `kid` may fit several
/// keys, and each try costs a signature verification an attacker can make us pay for.
const MAX_TRIES: usize = 3;

/// A set of algorithms, as bits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct AlgSet(u16);

/// Every algorithm, as the crypto backend names them, in the crate's order.
fn all() -> impl Iterator<Item = Algorithm> {
    crate::algorithm::ALL.into_iter().map(crate::Algorithm::jwt)
}

impl AlgSet {
    fn bit(alg: Algorithm) -> u16 {
        1 << all().position(|a| a == alg).unwrap_or(15)
    }

    pub(crate) fn of(alg: Algorithm) -> AlgSet {
        AlgSet(Self::bit(alg))
    }

    pub(crate) fn from_iter(algs: impl IntoIterator<Item = Algorithm>) -> AlgSet {
        AlgSet(algs.into_iter().fold(0, |bits, alg| bits | Self::bit(alg)))
    }

    pub(crate) fn iter(self) -> impl Iterator<Item = Algorithm> {
        all().filter(move |a| self.contains(*a))
    }

    pub(crate) fn contains(self, alg: Algorithm) -> bool {
        self.0 & Self::bit(alg) != 0
    }

    pub(crate) fn union(self, other: AlgSet) -> AlgSet {
        AlgSet(self.0 | other.0)
    }

    pub(crate) fn intersect(self, other: AlgSet) -> AlgSet {
        AlgSet(self.0 & other.0)
    }

    /// The raw bits, for fingerprints that compare key sets.
    #[cfg_attr(not(feature = "remote"), allow(dead_code))]
    pub(crate) fn bits(self) -> u16 {
        self.0
    }

    pub(crate) fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The algorithms of one family that a key of that family can be used with.
    pub(crate) fn family(family: AlgorithmFamily) -> AlgSet {
        AlgSet::from_iter(all().filter(|a| a.family() == family))
    }
}

/// One usable key: its `kid`, the algorithms it may verify, and the parsed key.
#[derive(Clone)]
pub(crate) struct KeyEntry {
    pub kid: Option<Box<str>>,
    pub algs: AlgSet,
    pub key: DecodingKey,
    /// The key parsed once per algorithm it verifies (backend aws-lc-rs).
    #[cfg(feature = "aws-lc-rs")]
    prepared: std::sync::Arc<[(Algorithm, super::prepared::Prepared)]>,
}

impl KeyEntry {
    pub(crate) fn new(kid: Option<String>, algs: AlgSet, key: DecodingKey) -> KeyEntry {
        // Fail closed whoever built the entry: an HMAC secret never verifies an algorithm whose
        // hash is longer than it (RFC 7518 §3.2), so such a token finds no key.
        let algs = super::algs_for_secret(algs, &key);
        #[cfg(feature = "aws-lc-rs")]
        let prepared = algs
            .iter()
            .filter_map(|alg| super::prepared::Prepared::new(alg, &key).map(|p| (alg, p)))
            .collect();
        KeyEntry {
            kid: kid.map(String::into_boxed_str),
            algs,
            key,
            #[cfg(feature = "aws-lc-rs")]
            prepared,
        }
    }

    /// Whether the backend accepts this key for every algorithm it is meant for (an RSA
    /// exponent of 1 or an EC point off its curve parse as DER but no backend verifies with
    /// them: such keys are refused when loaded, not per request).
    pub(crate) fn is_usable(&self) -> bool {
        #[cfg(feature = "aws-lc-rs")]
        return self.prepared.len() == self.algs.iter().count();
        #[cfg(not(feature = "aws-lc-rs"))]
        self.algs
            .iter()
            .all(|alg| super::validate::accepts(alg, &self.key))
    }

    /// Whether this key's signature over `message` is `signature` under `alg`.
    fn verifies(&self, alg: Algorithm, message: &[u8], signature: &[u8]) -> bool {
        #[cfg(feature = "aws-lc-rs")]
        if let Some((_, prepared)) = self.prepared.iter().find(|(a, _)| *a == alg) {
            return prepared.verify(message, signature);
        }
        // The rust-crypto backend, or a key aws-lc-rs refused to parse (which then fails here
        // too): jsonwebtoken's own verifier.
        match (provider().verifier_factory)(&alg, &self.key) {
            Ok(verifier) => verifier.verify(message, &signature.to_vec()).is_ok(),
            Err(_) => false,
        }
    }

    pub(crate) fn family(&self) -> AlgorithmFamily {
        self.key.family()
    }
}

/// The keys of one layer.
#[derive(Clone, Default)]
pub(crate) struct KeySet {
    entries: Vec<KeyEntry>,
}

impl KeySet {
    pub(crate) fn new(entries: Vec<KeyEntry>) -> KeySet {
        KeySet { entries }
    }

    /// The union of the algorithms the keys verify.
    pub(crate) fn algorithms(&self) -> AlgSet {
        self.entries
            .iter()
            .fold(AlgSet::default(), |s, e| s.union(e.algs))
    }

    /// Verifies `signature` over `signing_input` with the keys that fit `kid` and `alg`.
    ///
    /// A key with a `kid` serves only tokens naming that `kid` (whatever their algorithm: a
    /// token naming a key is never handed to another); a key without one serves tokens whose
    /// `kid` no key claims, and tokens without `kid`.
    pub(crate) fn verify(
        &self,
        alg: Algorithm,
        kid: Option<&str>,
        signing_input: &[u8],
        signature: &[u8],
    ) -> Result<(), AuthError> {
        let named = |e: &KeyEntry| kid.is_some() && e.kid.as_deref() == kid;
        let any_named = self.entries.iter().any(named);
        let candidates = self.entries.iter().filter(|e| {
            e.algs.contains(alg)
                && if any_named {
                    named(e)
                } else {
                    e.kid.is_none() || kid.is_none()
                }
        });
        let mut tried = 0;
        for entry in candidates.take(MAX_TRIES) {
            tried += 1;
            if entry.verifies(alg, signing_input, signature) {
                return Ok(());
            }
        }
        Err(if tried == 0 {
            AuthError::UnknownKey
        } else {
            AuthError::InvalidSignature
        })
    }
}

/// Refuses RSA moduli under 2048 bits (RFC 7518 §3.3) and EC points on a curve the
/// algorithm does not use.
pub(crate) fn check_strength(alg: Algorithm, key: &DecodingKey) -> Result<(), BuildError> {
    let invalid = |reason: String| BuildError::InvalidKey { kid: None, reason };
    match (alg.family(), key.kind()) {
        (AlgorithmFamily::Rsa, DecodingKeyKind::RsaModulusExponent { n, .. }) => rsa_bits(n),
        (AlgorithmFamily::Rsa, DecodingKeyKind::SecretOrDer(der)) => {
            let (n, _) = (provider().key_utils.rsa_pub_components_from_public_key)(der)
                .map_err(|e| invalid(e.to_string()))?;
            rsa_bits(&n)
        }
        (AlgorithmFamily::Ec, DecodingKeyKind::SecretOrDer(point)) => {
            let (want, alg) = if alg == Algorithm::ES384 {
                (97, crate::Algorithm::ES384)
            } else {
                (65, crate::Algorithm::ES256)
            };
            if point.len() == want && point.first() == Some(&4) {
                Ok(())
            } else {
                Err(BuildError::KeyAlgorithmMismatch { alg })
            }
        }
        (AlgorithmFamily::Ed, DecodingKeyKind::SecretOrDer(x)) if x.len() != 32 => {
            Err(invalid("not an Ed25519 public key".into()))
        }
        _ => Ok(()),
    }
}

fn rsa_bits(n: &[u8]) -> Result<(), BuildError> {
    let bits = match n.iter().position(|b| *b != 0) {
        Some(i) => (n.len() - i) * 8 - n[i].leading_zeros() as usize,
        None => 0,
    };
    if bits < 2048 {
        Err(BuildError::WeakRsaKey { bits })
    } else {
        Ok(())
    }
}
