use std::borrow::Cow;

use crate::keys::KeyConfig;
use crate::token::Jws;
use crate::verify::Verifier;
use crate::{AuthError, Jwks, Key};

/// One issuer of a multi-tenant layer (several issuers behind one layer): its keys and
/// audiences.
///
/// Each [`Tenant`] is an issuer with its own keys (static or [remote](crate::remote))
/// and, optionally, its own audiences. The layer reads the token's `iss` *unverified*, only to
/// choose the tenant; the token is then verified with that tenant's keys alone and must carry
/// that very `iss`. A token from an issuer no tenant names is refused (401) without any key
/// fetch, so unknown issuers cannot make the layer contact anything. A tenant's
/// [`RemoteJwks`](crate::keys::remote::RemoteJwks) found by discovery must have been
/// discovered from that tenant's issuer (otherwise
/// [`BuildError::IssuerMismatch`](crate::BuildError::IssuerMismatch)).
///
/// ```
/// use tower_jwt_auth::{Algorithm, JwtAuthLayer, Key, Tenant};
///
/// #[derive(serde::Deserialize)]
/// struct MyClaims { sub: String }
///
/// let pem_a = std::fs::read("tests/data/rsa_2048_public.pem").unwrap();
/// let pem_b = std::fs::read("tests/data/ec_p256_public.pem").unwrap();
/// let auth = JwtAuthLayer::<MyClaims>::builder()
///     .tenant(Tenant::new("https://a.example").key(Key::pem(Algorithm::RS256, &pem_a)))
///     .tenant(
///         Tenant::new("https://b.example")
///             .key(Key::pem(Algorithm::ES256, &pem_b))
///             .audience("b-api"),
///     )
///     .audience("shared-api") // for tenants that name no audience of their own
///     .build()
///     .unwrap();
/// # let _ = auth;
/// ```
#[must_use]
pub struct Tenant {
    pub(crate) issuer: String,
    pub(crate) keys: KeyConfig,
    pub(crate) audiences: Vec<String>,
    pub(crate) error: Option<crate::BuildError>,
}

impl std::fmt::Debug for Tenant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tenant")
            .field("issuer", &self.issuer)
            .field("audiences", &self.audiences)
            .finish_non_exhaustive()
    }
}

impl Tenant {
    /// The tenant whose tokens carry `iss` = `issuer` (compared exactly).
    pub fn new(issuer: impl Into<String>) -> Tenant {
        Tenant {
            issuer: issuer.into(),
            keys: KeyConfig::default(),
            audiences: Vec::new(),
            error: None,
        }
    }

    /// Adds a key of this issuer.
    pub fn key(mut self, key: Key) -> Tenant {
        self.keys.keys.push(key);
        self
    }

    /// Adds the keys of a static JWKS document of this issuer.
    pub fn jwks(mut self, jwks: Jwks) -> Tenant {
        self.keys.jwks.push(jwks);
        self
    }

    /// Adds the keys of a JWKS document given as JSON text.
    pub fn jwks_json(self, json: &str) -> Tenant {
        match Jwks::from_json(json) {
            Ok(jwks) => self.jwks(jwks),
            Err(e) => Tenant {
                error: Some(e),
                ..self
            },
        }
    }

    /// Takes this issuer's keys from its JWKS URL or by discovery. A source discovered from an
    /// issuer must have been discovered from this tenant's issuer, compared exactly (OpenID
    /// Connect Discovery 1.0 §4.3): otherwise [`build`](crate::JwtAuthBuilder::build) fails
    /// with [`BuildError::IssuerMismatch`](crate::BuildError::IssuerMismatch), since tokens
    /// claiming this tenant's issuer would be verified with another issuer's keys.
    #[cfg(feature = "remote")]
    pub fn remote_jwks(mut self, remote: crate::keys::remote::RemoteJwks) -> Tenant {
        self.keys.remote = Some(remote);
        self
    }

    /// Accepts tokens of this issuer whose `aud` contains `audience` (instead of the layer's
    /// audiences); may be called again to accept several.
    pub fn audience(mut self, audience: impl Into<String>) -> Tenant {
        self.audiences.push(audience.into());
        self
    }
}

/// The verifiers of a layer: one, or one per issuer.
pub(crate) enum Verifiers {
    One(Verifier),
    ByIssuer(Vec<(String, Verifier)>),
}

impl Verifiers {
    /// The verifier for `jws` and its index: with tenants, the one of the issuer its payload
    /// names.
    pub(crate) fn select(&self, jws: &Jws<'_>) -> Result<(usize, &Verifier), AuthError> {
        match self {
            Verifiers::One(verifier) => Ok((0, verifier)),
            Verifiers::ByIssuer(tenants) => {
                let issuer = unverified_issuer(&jws.payload)?;
                tenants
                    .iter()
                    .position(|(iss, _)| *iss == issuer)
                    .map(|i| (i, &tenants[i].1))
                    .ok_or(AuthError::WrongIssuer)
            }
        }
    }

    /// Each verifier's configured issuers, in index order.
    pub(crate) fn issuers(&self) -> impl Iterator<Item = &[String]> {
        let all: Vec<&Verifier> = match self {
            Verifiers::One(verifier) => vec![verifier],
            Verifiers::ByIssuer(tenants) => tenants.iter().map(|(_, v)| v).collect(),
        };
        all.into_iter().map(|v| v.policy.issuers.as_slice())
    }

    /// The verifier at `index`, as [`select`](Self::select) numbers them.
    #[cfg_attr(not(feature = "cache"), allow(dead_code))]
    pub(crate) fn get(&self, index: usize) -> Option<&Verifier> {
        match self {
            Verifiers::One(verifier) => (index == 0).then_some(verifier),
            Verifiers::ByIssuer(tenants) => tenants.get(index).map(|(_, verifier)| verifier),
        }
    }
}

/// The `iss` of a payload, read without verifying anything. Used only to choose whose keys
/// verify the token; the verification then checks `iss` again, signed.
fn unverified_issuer(payload: &[u8]) -> Result<Cow<'_, str>, AuthError> {
    #[derive(serde::Deserialize)]
    struct Iss<'a> {
        #[serde(borrow)]
        iss: Option<Cow<'a, str>>,
    }
    let claims: Iss<'_> =
        serde_json::from_slice(payload).map_err(|_| AuthError::MalformedClaims)?;
    claims.iss.ok_or(AuthError::MissingClaim)
}
