//! Which crypto backend verifies and signs.
//!
//! jsonwebtoken picks a process-wide provider from its features and panics at the first
//! decode when it has both or neither. We never consult that global: the provider is chosen
//! here, at compile time, so feature unification in a workspace cannot turn into a runtime
//! panic, and an application that installs its own jsonwebtoken default is not disturbed.

#[cfg(any(feature = "aws-lc-rs", feature = "rust-crypto"))]
use jsonwebtoken::crypto::CryptoProvider;

#[cfg(not(any(feature = "aws-lc-rs", feature = "rust-crypto")))]
compile_error!(
    "tower-jwt-auth needs a crypto backend: enable the feature `aws-lc-rs` (the default, \
     fastest for RSA and ECDSA) or `rust-crypto` (pure Rust)"
);

/// The provider every verification and signature of this crate goes through.
///
/// With both features enabled (as happens when two crates in one workspace ask for different
/// ones), aws-lc-rs is chosen: deterministic, and the faster of the two.
#[cfg(feature = "aws-lc-rs")]
pub(crate) fn provider() -> &'static CryptoProvider {
    &jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER
}

#[cfg(all(feature = "rust-crypto", not(feature = "aws-lc-rs")))]
pub(crate) fn provider() -> &'static CryptoProvider {
    &jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER
}

/// The name of the backend in use, for logs and diagnostics.
pub fn backend_name() -> &'static str {
    if cfg!(feature = "aws-lc-rs") {
        "aws-lc-rs"
    } else {
        "rust-crypto"
    }
}

/// SHA-256 through [`provider`]: the `ath` of a DPoP proof, JWK and certificate thumbprints.
pub(crate) fn sha256(bytes: &[u8]) -> Option<Vec<u8>> {
    (provider().key_utils.compute_digest)(bytes, jsonwebtoken::jwk::ThumbprintHash::SHA256).ok()
}

/// HMAC-SHA-256 of `message` under the secret `key`, through [`provider`]: DPoP nonces and
/// the issuer's secret fingerprint.
#[cfg(any(feature = "issue", feature = "dpop"))]
pub(crate) fn hmac_sha256(key: &jsonwebtoken::EncodingKey, message: &[u8]) -> Option<Vec<u8>> {
    let signer = (provider().signer_factory)(&jsonwebtoken::Algorithm::HS256, key).ok()?;
    signer.try_sign(message).ok()
}

/// A compact JWS (RFC 7515 §7.1) of `header` and `claims`, signed with `key` under `alg`
/// through [`provider`]: what `TokenIssuer` and the testing kit sign with.
#[cfg(any(feature = "issue", feature = "test-util"))]
pub(crate) fn sign_compact(
    alg: crate::Algorithm,
    key: &jsonwebtoken::EncodingKey,
    header: &serde_json::Map<String, serde_json::Value>,
    claims: &serde_json::Map<String, serde_json::Value>,
) -> Result<String, String> {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let encode = |v| serde_json::to_vec(v).map_err(|e| e.to_string());
    let mut token = URL_SAFE_NO_PAD.encode(encode(header)?);
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(encode(claims)?));
    let signer = (provider().signer_factory)(&alg.jwt(), key).map_err(|e| e.to_string())?;
    let signature = signer
        .try_sign(token.as_bytes())
        .map_err(|e| e.to_string())?;
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(signature));
    Ok(token)
}
