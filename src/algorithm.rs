//! The JWS algorithms the crate verifies and signs with.

use std::fmt;

/// A JWS signature algorithm (RFC 7518 §3.1; `EdDSA` with Ed25519, RFC 8037 §3.1).
///
/// Algorithms come from configuration only: a token's `alg` header merely picks among the ones
/// its keys allow (RFC 8725 §3.1). `none` is not an algorithm here.
///
/// ```
/// use tower_jwt_auth::Algorithm;
///
/// assert_eq!(Algorithm::ES256.name(), "ES256");
/// assert_eq!(Algorithm::PS384.to_string(), "PS384");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[allow(clippy::upper_case_acronyms)]
pub enum Algorithm {
    /// HMAC with SHA-256.
    HS256,
    /// HMAC with SHA-384.
    HS384,
    /// HMAC with SHA-512.
    HS512,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256.
    PS256,
    /// RSASSA-PSS with SHA-384.
    PS384,
    /// RSASSA-PSS with SHA-512.
    PS512,
    /// ECDSA on P-256 with SHA-256.
    ES256,
    /// ECDSA on P-384 with SHA-384.
    ES384,
    /// EdDSA with Ed25519.
    EdDSA,
}

/// Every algorithm, in declaration order.
pub(crate) const ALL: [Algorithm; 12] = [
    Algorithm::HS256,
    Algorithm::HS384,
    Algorithm::HS512,
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

impl Algorithm {
    /// The algorithm's `alg` name (RFC 7518 §3.1).
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::HS256 => "HS256",
            Algorithm::HS384 => "HS384",
            Algorithm::HS512 => "HS512",
            Algorithm::RS256 => "RS256",
            Algorithm::RS384 => "RS384",
            Algorithm::RS512 => "RS512",
            Algorithm::PS256 => "PS256",
            Algorithm::PS384 => "PS384",
            Algorithm::PS512 => "PS512",
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
            Algorithm::EdDSA => "EdDSA",
        }
    }

    /// The same algorithm as the crypto backend names it.
    pub(crate) fn jwt(self) -> jsonwebtoken::Algorithm {
        use jsonwebtoken::Algorithm as J;
        match self {
            Algorithm::HS256 => J::HS256,
            Algorithm::HS384 => J::HS384,
            Algorithm::HS512 => J::HS512,
            Algorithm::RS256 => J::RS256,
            Algorithm::RS384 => J::RS384,
            Algorithm::RS512 => J::RS512,
            Algorithm::PS256 => J::PS256,
            Algorithm::PS384 => J::PS384,
            Algorithm::PS512 => J::PS512,
            Algorithm::ES256 => J::ES256,
            Algorithm::ES384 => J::ES384,
            Algorithm::EdDSA => J::EdDSA,
        }
    }
}

/// The algorithm named `name`, exactly and case-sensitively (RFC 7518 §3.1, RFC 8037 §3.1):
/// `none`, `None` and `NONE` are no algorithm.
pub(crate) fn from_name(name: &str) -> Option<Algorithm> {
    ALL.into_iter().find(|a| a.name() == name)
}

/// The crate's name for a backend algorithm.
pub(crate) fn from_jwt(alg: jsonwebtoken::Algorithm) -> Algorithm {
    ALL.into_iter()
        .find(|a| a.jwt() == alg)
        .unwrap_or(Algorithm::HS256)
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_match_the_backend() {
        for alg in ALL {
            assert_eq!(format!("{:?}", alg.jwt()), alg.name());
            assert_eq!(from_name(alg.name()), Some(alg));
            assert_eq!(from_jwt(alg.jwt()), alg);
        }
    }
}
