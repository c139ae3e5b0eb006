//! The claims policy: time claims with leeway, `iss`, `aud`, `typ`, required claims, lifetime.

use std::borrow::Cow;
use std::time::Duration;

use crate::{AuthError, Clock};

/// What the claims and the `typ` header of a verified token must satisfy.
#[derive(Debug, Clone)]
pub(crate) struct ClaimsPolicy {
    pub leeway: Duration,
    pub require_exp: bool,
    pub issuers: Vec<String>,
    pub audiences: Vec<String>,
    pub token_type: Option<String>,
    pub max_lifetime: Option<Duration>,
    /// Claim names that must be present, beyond those the settings above imply.
    pub required: Vec<String>,
    /// What "now" is for every time check.
    pub clock: Clock,
    /// The confirmation methods the layer checks (DPoP, client certificates).
    pub confirmations: Confirmations,
    /// A token bound by a method the layer does not check passes as a bearer token.
    pub bound_as_bearer: bool,
}

impl Default for ClaimsPolicy {
    fn default() -> Self {
        ClaimsPolicy {
            leeway: Duration::from_secs(60),
            require_exp: true,
            issuers: Vec::new(),
            audiences: Vec::new(),
            token_type: None,
            max_lifetime: None,
            required: Vec::new(),
            clock: Clock::system(),
            confirmations: Confirmations::NONE,
            bound_as_bearer: false,
        }
    }
}

/// The most custom claim names `require_claim` takes; they are tracked in a bit set.
pub(crate) const MAX_REQUIRED_CLAIMS: usize = 64;

impl ClaimsPolicy {
    /// Checks the header `typ` against the configured type, if any. The comparison is
    /// case-insensitive and ignores an `application/` prefix (RFC 7515 §4.1.9, RFC 9068 §4).
    pub(crate) fn check_type(&self, typ: Option<&str>) -> Result<(), AuthError> {
        let Some(want) = &self.token_type else {
            return Ok(());
        };
        match typ {
            Some(got) if media_type_eq(got, want) => Ok(()),
            _ => Err(AuthError::WrongType),
        }
    }

    /// Checks `exp`, `nbf` and `iat` at time `now`, with the leeway: all a cached token needs
    /// again.
    pub(crate) fn check_times(&self, times: Times, now: f64) -> Result<(), AuthError> {
        let Times { exp, nbf, iat } = times;
        let leeway = self.leeway.as_secs_f64();
        // RFC 7519 §4.1.4: the current time must be before `exp`.
        if exp.is_some_and(|exp| now >= exp + leeway) {
            return Err(AuthError::Expired);
        }
        // RFC 7519 §4.1.5: the current time must be after or equal to `nbf`.
        if nbf.is_some_and(|nbf| now + leeway < nbf) {
            return Err(AuthError::NotYetValid);
        }
        // A token issued in the future would outlive a subject's revocation "not before"
        // (which compares `iat`), so it is refused like one that is not yet valid. RFC 7519
        // §4.1.6 leaves the use of `iat` to the application; this is ours.
        if iat.is_some_and(|iat| iat > now + leeway) {
            return Err(AuthError::NotYetValid);
        }
        Ok(())
    }

    /// Checks registered claims against the policy at time `now`.
    pub(crate) fn check(&self, reg: &Registered<'_>, now: f64) -> Result<(), AuthError> {
        let required_all = if self.required.is_empty() {
            0
        } else {
            u64::MAX >> (64 - self.required.len())
        };
        if reg.required_seen != required_all {
            return Err(AuthError::MissingClaim);
        }
        self.check_times(reg.times, now)?;
        let Times { exp, iat, .. } = reg.times;
        if exp.is_none() && self.require_exp {
            return Err(AuthError::MissingClaim);
        }
        if let Some(max) = self.max_lifetime {
            let (Some(iat), Some(exp)) = (iat, exp) else {
                return Err(AuthError::MissingClaim);
            };
            if exp - iat > max.as_secs_f64() {
                return Err(AuthError::LifetimeTooLong);
            }
        }
        if !self.issuers.is_empty() {
            match &reg.iss {
                None => return Err(AuthError::MissingClaim),
                Some(iss) if !self.issuers.iter().any(|i| i == iss) => {
                    return Err(AuthError::WrongIssuer);
                }
                Some(_) => {}
            }
        }
        if !self.audiences.is_empty() {
            match reg.aud {
                AudienceCheck::Absent => return Err(AuthError::MissingClaim),
                AudienceCheck::NoMatch => return Err(AuthError::WrongAudience),
                AudienceCheck::Match => {}
            }
        }
        // RFC 7800 §3.1: a confirmation method binds the token to its holder's key; one this
        // layer does not check would turn it back into a bearer token.
        if !self.bound_as_bearer && !reg.cnf.within(self.confirmations) {
            return Err(AuthError::UnsupportedConfirmation);
        }
        Ok(())
    }
}

/// A set of confirmation methods, the members of a `cnf` claim (RFC 7800 §3.1): those a token
/// is bound by, or those a layer checks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Confirmations(u8);

impl Confirmations {
    /// No method: a token without `cnf` (or with an empty one), a layer that checks none.
    pub const NONE: Confirmations = Confirmations(0);
    /// `jkt`, the thumbprint of a DPoP key (RFC 9449 §6.1).
    pub const JKT: Confirmations = Confirmations(1);
    /// `x5t#S256`, the thumbprint of a client certificate (RFC 8705 §3.1).
    pub const X5T_S256: Confirmations = Confirmations(2);
    /// Any other method (RFC 7800's `jwk`, `jwe`, `kid`, `jku`, …): none is checked here.
    const OTHER: Confirmations = Confirmations(4);

    /// The method a `cnf` member name stands for.
    pub fn named(name: &str) -> Confirmations {
        match name {
            "jkt" => Confirmations::JKT,
            "x5t#S256" => Confirmations::X5T_S256,
            _ => Confirmations::OTHER,
        }
    }

    /// Both sets.
    pub fn with(self, other: Confirmations) -> Confirmations {
        Confirmations(self.0 | other.0)
    }

    /// True when every method of `self` is in `checked`.
    fn within(self, checked: Confirmations) -> bool {
        self.0 & !checked.0 == 0
    }
}

/// Case-insensitive media type comparison that treats `at+jwt` and `application/at+jwt` alike.
fn media_type_eq(a: &str, b: &str) -> bool {
    fn bare(s: &str) -> &str {
        match s.get(..12) {
            Some(p) if p.eq_ignore_ascii_case("application/") => &s[12..],
            _ => s,
        }
    }
    bare(a).eq_ignore_ascii_case(bare(b))
}

/// How the token's `aud` compares with the configured audiences.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum AudienceCheck {
    #[default]
    Absent,
    NoMatch,
    Match,
}

/// A token's NumericDates (RFC 7519 §4.1.4–6), what a cached verification re-checks.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Times {
    pub exp: Option<f64>,
    pub nbf: Option<f64>,
    pub iat: Option<f64>,
}

/// The registered claims (RFC 7519 §4.1) as read from a payload, strings borrowed from it.
#[derive(Debug, Default)]
pub(crate) struct Registered<'a> {
    pub times: Times,
    pub iss: Option<Cow<'a, str>>,
    pub sub: Option<Cow<'a, str>>,
    pub jti: Option<Cow<'a, str>>,
    pub aud: AudienceCheck,
    /// Bit `i` is set when the `i`th name of [`ClaimsPolicy::required`] is present.
    pub required_seen: u64,
    /// The confirmation methods of `cnf`.
    pub cnf: Confirmations,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> ClaimsPolicy {
        ClaimsPolicy {
            issuers: vec!["iss-a".into()],
            audiences: vec!["api".into()],
            ..ClaimsPolicy::default()
        }
    }

    fn check(p: &ClaimsPolicy, json: &str) -> Result<(), AuthError> {
        let registered =
            crate::claims_set::read(p, json).map_err(|_| AuthError::MalformedClaims)?;
        p.check(&registered, 1_000_000.0)
    }

    #[test]
    fn registered_claims() {
        use AuthError::{Expired, MalformedClaims as Bad, MissingClaim as Missing};
        let p = policy();
        for (json, want) in [
            (r#"{"exp":1000100,"iss":"iss-a","aud":"api"}"#, Ok(())),
            (r#"{"exp":1000100,"iss":"iss-a","aud":["x","api"]}"#, Ok(())),
            (
                r#"{"exp":1000100,"iss":"iss-a","aud":[]}"#,
                Err(AuthError::WrongAudience),
            ),
            (
                r#"{"exp":1000100,"iss":"iss-b","aud":"api"}"#,
                Err(AuthError::WrongIssuer),
            ),
            (r#"{"exp":1000100,"iss":"iss-a","aud":1}"#, Err(Bad)),
            (r#"{"exp":1000100,"iss":"iss-a","aud":[1]}"#, Err(Bad)),
            (r#"{"exp":1000100,"iss":1,"aud":"api"}"#, Err(Bad)),
            (r#"{"exp":1000100,"aud":"api"}"#, Err(Missing)),
            (r#"{"exp":1000100,"iss":"iss-a"}"#, Err(Missing)),
            (r#"{"exp":"1000100","iss":"iss-a","aud":"api"}"#, Err(Bad)),
            (r#"{"iss":"iss-a","aud":"api"}"#, Err(Missing)),
            (
                r#"{"exp":1,"exp":1000100,"iss":"iss-a","aud":"api"}"#,
                Err(Bad),
            ),
            // A leeway of 60 s on both sides.
            (r#"{"exp":999950,"iss":"iss-a","aud":"api"}"#, Ok(())),
            (r#"{"exp":999940,"iss":"iss-a","aud":"api"}"#, Err(Expired)),
            (
                r#"{"exp":1000100,"nbf":1000050,"iss":"iss-a","aud":"api"}"#,
                Ok(()),
            ),
            (
                r#"{"exp":1000100,"nbf":1000061,"iss":"iss-a","aud":"api"}"#,
                Err(AuthError::NotYetValid),
            ),
            ("[]", Err(Bad)),
        ] {
            assert_eq!(check(&p, json), want, "{json}");
        }
    }

    #[test]
    fn lifetime_and_required() {
        let p = ClaimsPolicy {
            max_lifetime: Some(Duration::from_secs(600)),
            required: vec!["sub".into(), "roles".into()],
            ..ClaimsPolicy::default()
        };
        let far = r#"{"exp":18446744073709551615,"iat":999900,"sub":"a","roles":[]}"#;
        for (json, want) in [
            (
                r#"{"exp":1000100,"iat":999900,"sub":"a","roles":[]}"#,
                Ok(()),
            ),
            (
                r#"{"exp":1000100,"iat":999900,"sub":"a"}"#,
                Err(AuthError::MissingClaim),
            ),
            (far, Err(AuthError::LifetimeTooLong)),
            (
                r#"{"exp":1000100,"sub":"a","roles":[]}"#,
                Err(AuthError::MissingClaim),
            ),
        ] {
            assert_eq!(check(&p, json), want, "{json}");
        }
    }

    #[test]
    fn confirmation_methods_pass_only_where_checked() {
        use AuthError::{MalformedClaims as Bad, UnsupportedConfirmation as Unchecked};
        let jkt = r#"{"exp":1000100,"cnf":{"jkt":"abc"}}"#;
        let x5t = r#"{"exp":1000100,"cnf":{"x5t#S256":"abc"}}"#;
        let both = r#"{"exp":1000100,"cnf":{"jkt":"a","x5t#S256":"b"}}"#;
        let jwk = r#"{"exp":1000100,"cnf":{"jwk":{"kty":"OKP"}}}"#;
        let empty = r#"{"exp":1000100,"cnf":{}}"#;
        let layer = |methods: Confirmations, bearer: bool| ClaimsPolicy {
            confirmations: methods,
            bound_as_bearer: bearer,
            ..ClaimsPolicy::default()
        };
        let none = layer(Confirmations::NONE, false);
        let dpop = layer(Confirmations::JKT, false);
        let all = layer(Confirmations::JKT.with(Confirmations::X5T_S256), false);
        let bearer = layer(Confirmations::NONE, true);
        for (p, json, want) in [
            (&none, r#"{"exp":1000100}"#, Ok(())),
            (&none, empty, Ok(())),
            (&none, jkt, Err(Unchecked)),
            (&none, x5t, Err(Unchecked)),
            (&none, jwk, Err(Unchecked)),
            (&dpop, jkt, Ok(())),
            (&dpop, x5t, Err(Unchecked)),
            (&dpop, both, Err(Unchecked)),
            (&all, both, Ok(())),
            (&all, jwk, Err(Unchecked)),
            (&bearer, both, Ok(())),
            (&bearer, jwk, Ok(())),
            // RFC 7800 §3.1: `cnf` is a JSON object.
            (&bearer, r#"{"exp":1000100,"cnf":"jkt"}"#, Err(Bad)),
            (&none, r#"{"exp":1000100,"cnf":null}"#, Err(Bad)),
            // A checked method's value is a string: `null` is no way to be unbound.
            (&dpop, r#"{"exp":1000100,"cnf":{"jkt":null}}"#, Err(Bad)),
            (&all, r#"{"exp":1000100,"cnf":{"x5t#S256":1}}"#, Err(Bad)),
            (&bearer, r#"{"exp":1000100,"cnf":{"jkt":null}}"#, Err(Bad)),
        ] {
            assert_eq!(check(p, json), want, "{json}");
        }
    }

    #[test]
    fn media_types() {
        assert!(media_type_eq("at+jwt", "application/at+JWT"));
        assert!(media_type_eq("AT+JWT", "at+jwt"));
        assert!(!media_type_eq("jwt", "at+jwt"));
    }
}
