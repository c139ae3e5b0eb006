//! What the replicated store keeps in Redis: the key names beside [`RedisRevocation`]'s
//! records, the scripts that write a record and its stream entry together, and reading a
//! record's key back.
//!
//! [`RedisRevocation`]: super::RedisRevocation

/// The stream of revocations.
pub(super) fn stream(prefix: &str) -> String {
    format!("{prefix}feed")
}

/// The epoch: a random value set once per Redis dataset (see `Feed`).
pub(super) fn epoch(prefix: &str) -> String {
    format!("{prefix}epoch")
}

/// `SCAN`'s pattern for every key under `prefix`: the prefix with its glob characters escaped.
pub(super) fn pattern(prefix: &str) -> String {
    let mut pattern = String::with_capacity(prefix.len() + 1);
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('*');
    pattern
}

/// A revocation record, named by its key.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Record {
    /// `<prefix>jti:<jti>`.
    Jti(String),
    /// `<prefix>sub:<length of iss>:<iss>:<sub>` (`iss` empty: none).
    Subject { iss: String, sub: String },
}

/// The record `key` names, if it is one under `prefix` (the stream, the epoch and keys that
/// are not UTF-8, which no token can name, are not).
pub(super) fn record(prefix: &str, key: &[u8]) -> Option<Record> {
    let rest = key.strip_prefix(prefix.as_bytes())?;
    if let Some(jti) = rest.strip_prefix(b"jti:") {
        return String::from_utf8(jti.to_vec()).ok().map(Record::Jti);
    }
    let rest = rest.strip_prefix(b"sub:")?;
    let colon = rest.iter().position(|b| *b == b':')?;
    let len: usize = std::str::from_utf8(&rest[..colon]).ok()?.parse().ok()?;
    let rest = &rest[colon + 1..];
    if rest.get(len) != Some(&b':') {
        return None;
    }
    Some(Record::Subject {
        iss: String::from_utf8(rest[..len].to_vec()).ok()?,
        sub: String::from_utf8(rest[len + 1..].to_vec()).ok()?,
    })
}

/// Revokes a `jti` and appends it to the stream, atomically; returns the instant it is kept
/// until. The expiry only rises (`EXPIRETIME` is negative for a missing key).
///
/// KEYS: record, stream. ARGV: jti, `EXAT`, `MINID`.
pub(super) const REVOKE_JTI: &str = r"
local keep = math.max(tonumber(ARGV[2]), redis.call('EXPIRETIME', KEYS[1]))
redis.call('SET', KEYS[1], 1, 'EXAT', keep)
redis.call('XADD', KEYS[2], 'MINID', '~', ARGV[3], '*', 't', 'j', 'jti', ARGV[1], 'until', keep)
return keep
";

/// Marks a `jti` used if it is not yet, and then appends it to the stream, atomically;
/// returns the instant it is kept until, or 0 if it was already used.
///
/// KEYS: record, stream. ARGV: jti, `EXAT`, `MINID`.
pub(super) const USE_ONCE: &str = r"
if not redis.call('SET', KEYS[1], 1, 'NX', 'EXAT', ARGV[2]) then
  return 0
end
redis.call('XADD', KEYS[2], 'MINID', '~', ARGV[3], '*', 't', 'j', 'jti', ARGV[1], 'until', ARGV[2])
return tonumber(ARGV[2])
";

/// Raises a subject's "not before" and its expiry (never lowers either) and appends the
/// result to the stream, atomically; returns both.
///
/// KEYS: record, stream. ARGV: not before, `EXAT`, `MINID`, iss (empty: none), sub.
pub(super) const REVOKE_SUBJECT: &str = r"
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
local before = math.max(cur, tonumber(ARGV[1]))
local keep = math.max(tonumber(ARGV[2]), redis.call('EXPIRETIME', KEYS[1]))
redis.call('SET', KEYS[1], before, 'EXAT', keep)
redis.call('XADD', KEYS[2], 'MINID', '~', ARGV[3], '*',
  't', 's', 'iss', ARGV[4], 'sub', ARGV[5], 'before', before, 'until', keep)
return {before, keep}
";

/// Sets the epoch if there is none, and returns the one in place.
///
/// KEYS: epoch. ARGV: a new random epoch.
pub(super) const ADOPT_EPOCH: &str = r"
redis.call('SET', KEYS[1], ARGV[1], 'NX')
return redis.call('GET', KEYS[1])
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_keys_read_back() {
        assert_eq!(
            record("jwt:", b"jwt:jti:abc:def"),
            Some(Record::Jti("abc:def".into()))
        );
        assert_eq!(
            record("jwt:", b"jwt:sub:15:https://id.test:al:ice"),
            Some(Record::Subject {
                iss: "https://id.test".into(),
                sub: "al:ice".into()
            })
        );
        assert_eq!(
            record("jwt:", b"jwt:sub:0::bob"),
            Some(Record::Subject {
                iss: String::new(),
                sub: "bob".into()
            })
        );
        for other in [
            &b"jwt:feed"[..],
            b"jwt:epoch",
            b"jwt:sub:99:short:x",
            b"jwt:sub:x:a:b",
            b"other:jti:a",
            b"jwt:jti:\xff",
        ] {
            assert_eq!(record("jwt:", other), None, "{other:?}");
        }
    }

    #[test]
    fn the_pattern_matches_the_prefix_literally() {
        assert_eq!(pattern("jwt:"), "jwt:*");
        assert_eq!(pattern("t[1]*?\\:"), "t\\[1\\]\\*\\?\\\\:*");
    }
}
