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
        Ok(())
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
    fn media_types() {
        assert!(media_type_eq("at+jwt", "application/at+JWT"));
        assert!(media_type_eq("AT+JWT", "at+jwt"));
        assert!(!media_type_eq("jwt", "at+jwt"));
    }
}
