//! What the replicated store keeps in Redis: the key names beside [`RedisRevocation`]'s
//! records, the scripts that write a record and its numbered stream entry together, and
//! reading a record's key back.
//!
//! [`RedisRevocation`]: super::RedisRevocation

use std::sync::LazyLock;

use redis::Script;

/// The keys that depend on the prefix alone, formatted once when the store is built.
pub(super) struct Keys {
    /// `<prefix>feed`: the stream of revocations.
    pub(super) stream: String,
    /// `<prefix>epoch`: a random value set once per Redis dataset (see `Feed`).
    pub(super) epoch: String,
    /// `<prefix>seq`: the sequence counter, the number of entries ever appended to the stream
    /// of this dataset. Every write script raises it by one and puts the new value in its
    /// entry, atomically, so the stream's entries carry 1, 2, 3, … with none left out, and
    /// the counter never falls unless Redis lost data (see `Feed`).
    pub(super) seq: String,
    /// `<prefix>restoring`: the restore marker, present while a dataset is new or servers are
    /// restoring it, naming the one server that writes back, if any (see [`MARKER`] and
    /// `Feed`).
    pub(super) restoring: String,
    /// `<prefix>incomplete`: present, without expiry, from the moment a server claims the
    /// restore marker to write back until a running server reads the records and finds
    /// nothing missing: a write-back is under way or was cut short, and the records may lack
    /// revocations (see [`MARKER`] and `Feed`). Unlike the marker, it outlives anything that
    /// stops every server at once (a Redis stall longer than the marker's life), so no server
    /// starts on records it may lack.
    pub(super) incomplete: String,
    /// `SCAN`'s pattern for every key under the prefix (see [`pattern`]).
    pub(super) pattern: String,
}

impl Keys {
    pub(super) fn new(prefix: &str) -> Keys {
        Keys {
            stream: format!("{prefix}feed"),
            epoch: format!("{prefix}epoch"),
            seq: format!("{prefix}seq"),
            restoring: format!("{prefix}restoring"),
            incomplete: format!("{prefix}incomplete"),
            pattern: pattern(prefix),
        }
    }
}

/// `SCAN`'s pattern for every key under `prefix`: the prefix with its glob characters escaped.
fn pattern(prefix: &str) -> String {
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
#[derive(Debug, PartialEq, Eq, Hash)]
pub(super) enum Record {
    /// `<prefix>jti:<jti>`.
    Jti(String),
    /// `<prefix>sub:<length of iss>:<iss>:<sub>` (`iss` empty: none).
    Subject { iss: String, sub: String },
}

/// The record `key` names, if it is one under `prefix` (the stream, the epoch, the counter,
/// the marker, the `incomplete` record and keys that are not UTF-8, which no token can name,
/// are not).
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

/// The end of each write script: raises the counter (`KEYS[3]`, or `$counter`) and appends an
/// entry with `$fields` and the counter's new value to the stream (`KEYS[2]`, or `$stream`),
/// trimmed to the entries of the last `ARGV[3]` (or `$window`) milliseconds. The trim point is
/// read from Redis's clock (`TIME`), the clock stream ids come from, so a writer's own clock
/// never decides which entries go: the entry just added (its id at least Redis's now) always
/// stays.
macro_rules! append {
    ($fields:literal) => {
        append!("KEYS[2]", "KEYS[3]", "ARGV[3]", $fields)
    };
    ($stream:literal, $counter:literal, $window:literal, $fields:literal) => {
        concat!(
            "local now = redis.call('TIME')\n",
            "local seq = redis.call('INCR', ",
            $counter,
            ")\n",
            "local minid = string.format('%d-0', now[1] * 1000 - tonumber(",
            $window,
            "))\n",
            "redis.call('XADD', ",
            $stream,
            ", 'MINID', '~', minid, '*', 'seq', seq, ",
            $fields,
            ")\n"
        )
    };
}

/// The expiry a write script gives a record (`KEYS[1]`): the later of `$exat` and the
/// record's own, so it only rises. `EXPIRETIME` is -2 for a missing key and -1 for one without
/// expiry, which is later than any date: such a record stays without expiry, and `keep` is
/// then the latest `EXAT` (`MAX_EXAT`, as the snapshot reads a record without expiry).
/// `$value` is the value to store.
macro_rules! keep_and_set {
    ($value:literal, $exat:literal) => {
        concat!(
            "local current = redis.call('EXPIRETIME', KEYS[1])\n",
            "local keep = math.max(tonumber(",
            $exat,
            "), current)\n",
            "if current == -1 then\n",
            "  keep = 253402300799\n",
            "  redis.call('SET', KEYS[1], ",
            $value,
            ")\n",
            "else\n",
            "  redis.call('SET', KEYS[1], ",
            $value,
            ", 'EXAT', keep)\n",
            "end\n"
        )
    };
}

/// The record part of a subject's revocation: raises the record's (`KEYS[1]`) "not before" to
/// `ARGV[1]` and its expiry to `ARGV[2]` (see [`REVOKE_SUBJECT`]), leaving `before` and `keep`.
macro_rules! raise_subject {
    () => {
        concat!(
            "local kind = redis.call('TYPE', KEYS[1]).ok\n",
            "local cur = 0\n",
            "if kind == 'string' then\n",
            "  cur = tonumber(redis.call('GET', KEYS[1])) or 99999999999999\n",
            "elseif kind ~= 'none' then cur = 99999999999999; redis.call('DEL', KEYS[1]) end\n",
            "local before = math.max(cur, tonumber(ARGV[1]))\n",
            keep_and_set!("before", "ARGV[2]"),
        )
    };
}

/// Revokes a `jti` and appends it to the stream, atomically; returns the instant it is kept
/// until. The expiry only rises, and a record without expiry keeps none.
///
/// KEYS: record, stream, counter. ARGV: jti, `EXAT`, trim window (ms).
pub(super) const REVOKE_JTI: &str = concat!(
    keep_and_set!("1", "ARGV[2]"),
    append!("'t', 'j', 'jti', ARGV[1], 'until', keep"),
    "return keep\n"
);

/// Returns -1 unless the stream still holds the last entry the caller applied (number
/// `$applied`, id `$id`; an empty id: none known), or lost it only to trimming.
/// Trimming (`MINID`) removes the oldest entries only, so an entry trimmed away leaves a
/// stream whose first entry is numbered above it; a rewind (an older backup, a lagging
/// replica, with the epoch kept) leaves older entries in front of the gap, or none at all.
/// The number is checked too: after a rewind, an entry written under the same id is another
/// one. A counter alone does not tell: new writes after a rewind raise it again.
macro_rules! entry_kept {
    ($stream:literal, $applied:literal, $id:literal) => {
        concat!(
            "local function seq_of(entry)\n",
            "  if entry then\n",
            "    for i = 1, #entry[2], 2 do\n",
            "      if entry[2][i] == 'seq' then return tonumber(entry[2][i + 1]) end\n",
            "    end\n",
            "  end\n",
            "end\n",
            "if ",
            $id,
            " ~= '' then\n",
            "  local applied = tonumber(",
            $applied,
            ")\n",
            "  local entry = redis.call('XRANGE', ",
            $stream,
            ", ",
            $id,
            ", ",
            $id,
            ")[1]\n",
            "  if seq_of(entry) ~= applied then\n",
            "    local first = seq_of(redis.call('XRANGE', ",
            $stream,
            ", '-', '+', 'COUNT', 1)[1])\n",
            "    if entry or not first or first <= applied then return -1 end\n",
            "  end\n",
            "end\n"
        )
    };
}

/// Returns 1 when the stream still holds the last entry the caller applied, or lost it only to
/// trimming (see [`entry_kept`]), else -1; writes nothing. The feed runs it with each read.
///
/// KEYS: stream. ARGV: the last number applied, its id.
pub(super) const ENTRY_KEPT: &str = concat!(
    "#!lua flags=no-writes\n",
    entry_kept!("KEYS[1]", "ARGV[1]", "ARGV[2]"),
    "return 1\n"
);

/// Returns -1 unless Redis still holds everything the caller's copy was read from: the epoch
/// the caller follows, neither the restore marker nor the `incomplete` record, a counter no
/// lower than the number of the last entry the caller applied, and that entry (see
/// [`entry_kept`]).
///
/// The key and argument positions are the including script's: counter, stream, epoch,
/// marker, `incomplete`; epoch, last number applied, its id.
macro_rules! dataset_kept {
    ($counter:literal, $stream:literal, $epoch:literal, $marker:literal, $incomplete:literal,
     $followed:literal, $applied:literal, $id:literal) => {
        concat!(
            "if redis.call('GET', ",
            $epoch,
            ") ~= ",
            $followed,
            " or redis.call('EXISTS', ",
            $marker,
            ", ",
            $incomplete,
            ") > 0\n",
            "  or (tonumber(redis.call('GET', ",
            $counter,
            ") or '0') or 0) < tonumber(",
            $applied,
            ") then\n",
            "  return -1\n",
            "end\n",
            entry_kept!($stream, $applied, $id)
        )
    };
}

/// Returns 1 when Redis still holds everything the caller's copy was read from (see
/// [`dataset_kept`]), else -1; writes nothing.
///
/// KEYS: counter, stream, epoch, marker, `incomplete`. ARGV: epoch, the last number applied,
/// its id.
pub(super) const DATASET_KEPT: &str = concat!(
    "#!lua flags=no-writes\n",
    dataset_kept!(
        "KEYS[1]", "KEYS[2]", "KEYS[3]", "KEYS[4]", "KEYS[5]", "ARGV[1]", "ARGV[2]", "ARGV[3]"
    ),
    "return 1\n"
);

/// Marks a `jti` used if it is not yet, and then appends it to the stream, atomically;
/// returns the instant it is kept until, or 0 if it was already used. Returns -1, touching
/// nothing, unless Redis still holds everything the caller's copy was read from (see
/// [`dataset_kept`]): Redis may then lack the record of a use another server holds.
///
/// KEYS: record, stream, counter, epoch, marker, `incomplete`. ARGV: jti, `EXAT`, trim window
/// (ms), epoch, the last number applied, its id.
pub(super) const USE_ONCE: &str = concat!(
    dataset_kept!(
        "KEYS[3]", "KEYS[2]", "KEYS[4]", "KEYS[5]", "KEYS[6]", "ARGV[4]", "ARGV[5]", "ARGV[6]"
    ),
    "if not redis.call('SET', KEYS[1], 1, 'NX', 'EXAT', ARGV[2]) then\n",
    "  return 0\n",
    "end\n",
    append!("'t', 'j', 'jti', ARGV[1], 'until', ARGV[2]"),
    "return tonumber(ARGV[2])\n"
);

/// Raises a subject's "not before" and its expiry (never lowers either; a record without
/// expiry keeps none) and appends the
/// result to the stream, atomically; returns both. A record that holds no number, or is not a
/// string at all (written by another tool), revokes every token of the subject, as the
/// snapshot reads it, and is replaced by one that says so.
///
/// KEYS: record, stream, counter. ARGV: not before, `EXAT`, trim window (ms), iss (empty:
/// none), sub.
pub(super) const REVOKE_SUBJECT: &str = concat!(
    raise_subject!(),
    append!("'t', 's', 'iss', ARGV[4], 'sub', ARGV[5], 'before', before, 'until', keep"),
    "return {before, keep}\n"
);

/// Writes back a revoked `jti`'s record, as [`REVOKE_JTI`] writes it, without a stream entry
/// (see [`WRITTEN_BACK`]); returns the instant it is kept until.
///
/// KEYS: record. ARGV: `EXAT`.
pub(super) const RESTORE_JTI: &str = concat!(keep_and_set!("1", "ARGV[1]"), "return keep\n");

/// Writes back a subject's record, as [`REVOKE_SUBJECT`] writes it, without a stream entry
/// (see [`WRITTEN_BACK`]); returns its "not before" and the instant it is kept until.
///
/// KEYS: record. ARGV: not before, `EXAT`.
pub(super) const RESTORE_SUBJECT: &str = concat!(raise_subject!(), "return {before, keep}\n");

/// Appends a `w` entry ("records written back") to the stream, numbered like every entry: a
/// follower that reads it reads the records again (its revocations are not in the stream).
/// A write-back sends one after each batch of records, in the same pipeline, so Redis applies
/// it after them; the marker's `take` appends one too (`n` 0), as the write-back begins.
///
/// KEYS: stream, counter. ARGV: trim window (ms), records in the batch.
pub(super) const WRITTEN_BACK: &str = concat!(
    append!("KEYS[1]", "KEYS[2]", "ARGV[1]", "'t', 'w', 'n', ARGV[2]"),
    "return seq\n"
);

/// The restore marker's owner-checked steps, each against the epoch the caller follows
/// (`'epoch'` when Redis holds another or none: nothing is done). The marker is absent (no
/// restore), `free` (a restore is under way and nobody writes back), or `<owner>:<until>` (the
/// owner writes back; its claim lapses at `until`, milliseconds by Redis's clock, and the key
/// itself one hold later, so that the marker outlives a lapsed owner long enough for a waiting
/// server to take it over). Any other value (an older version's `1`) counts as `free`.
///
/// - `keep`: a server restoring says so. Renews the caller's own claim (`'mine'`); answers
///   `'other'` while another owner's claim runs, touching nothing; otherwise makes the marker
///   `free` for one hold at least (`'free'`).
/// - `take`: as `keep`, but claims the marker for the caller where `keep` would free it; and,
///   in the same step, sets the `incomplete` record (without expiry) and appends a `w` entry
///   (see [`WRITTEN_BACK`]), so every server following the feed reads the records again, and
///   finishes the restore should the writer stop.
/// - `extend`: renews the caller's own claim (`'mine'`), or answers `'lost'`, touching nothing.
/// - `release`: turns the caller's own claim into `free` for one hold (`'free'`: the servers
///   waiting for it take their turn), or answers `'lost'`, touching nothing.
/// - `done`: the caller read the records and found nothing missing. Answers `'other'` while
///   another owner's claim runs (a write-back is under way), touching nothing; otherwise
///   deletes the `incomplete` record, turns the caller's own claim, if any, into `free` for one
///   hold, and answers `'done'`.
///
/// Flagged `allow-oom`, as [`ADOPT_EPOCH`]: a Redis at its `maxmemory` (with `noeviction`)
/// refuses every write of a script without the flag, and a restore that finds nothing missing
/// must still hold and release the marker to end; these steps write a few bytes.
///
/// KEYS: epoch, marker, `incomplete`, stream, counter. ARGV: epoch, owner token (hex), hold
/// (ms), step, trim window (ms).
pub(super) const MARKER: &str = concat!(
    r"#!lua flags=allow-oom
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 'epoch' end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local hold = tonumber(ARGV[3])
local step = ARGV[4]
local v = redis.call('GET', KEYS[2])
local owner, untl = nil, nil
if v then owner, untl = string.match(v, '^(%x+):(%d+)$') end
local function free()
  redis.call('SET', KEYS[2], 'free', 'PX', string.format('%d', hold))
end
local function claim()
  redis.call('SET', KEYS[2], string.format('%s:%d', ARGV[2], now + hold),
    'PX', string.format('%d', 2 * hold))
  if step == 'take' then
    redis.call('SET', KEYS[3], '1')
",
    append!("KEYS[4]", "KEYS[5]", "ARGV[5]", "'t', 'w', 'n', 0"),
    r"
  end
end
if step == 'done' then
  if owner and owner ~= ARGV[2] and tonumber(untl) > now then return 'other' end
  redis.call('DEL', KEYS[3])
  if owner == ARGV[2] then free() end
  return 'done'
end
if owner == ARGV[2] then
  if step == 'release' then
    free()
    return 'free'
  end
  claim()
  return 'mine'
end
if step == 'extend' or step == 'release' then return 'lost' end
if owner and tonumber(untl) > now then return 'other' end
if step == 'take' then
  claim()
  return 'mine'
end
if owner or redis.call('PTTL', KEYS[2]) < hold then free() end
return 'free'
"
);

/// The head of a snapshot, read at once: the counter (0 if none), the stream's last id (empty
/// if the stream has no entry), the epoch (empty if none), how many of the restore marker
/// and the `incomplete` record are present, and the last entry's number (0 if none). A script because a transaction (`MULTI`) is
/// refused whole by a Redis at its `maxmemory`, while a script flagged `no-writes` runs there.
///
/// KEYS: counter, stream, epoch, marker, `incomplete`.
pub(super) const SNAPSHOT_HEAD: &str = r"#!lua flags=no-writes
local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)[1]
local id, seq = '', 0
if last then
  id = last[1]
  for i = 1, #last[2], 2 do
    if last[2][i] == 'seq' then seq = tonumber(last[2][i + 1]) or 0 end
  end
end
return {tonumber(redis.call('GET', KEYS[1]) or '0') or 0, id,
  redis.call('GET', KEYS[3]) or '', redis.call('EXISTS', KEYS[4], KEYS[5]), seq}
";

/// Sets the epoch if there is none, and returns the one in place. A new epoch means a new
/// (or emptied) dataset: the restore marker is set with it, in the same step, so no server
/// sees the new epoch without it: claimed by the caller for one hold, with the `incomplete`
/// record set (as `MARKER`'s `take`; the new epoch itself sends every follower to read the
/// records), when it gives an owner token (a running server that will write back), else
/// `free` for one hold (a starting server, which has nothing to write back).
///
/// Flagged `allow-oom` (see [`MARKER`]).
///
/// KEYS: epoch, marker, `incomplete`. ARGV: a new random epoch, hold (ms), owner token or
/// empty.
pub(super) const ADOPT_EPOCH: &str = r"#!lua flags=allow-oom
if redis.call('SET', KEYS[1], ARGV[1], 'NX') and not redis.call('GET', KEYS[2]) then
  local hold = tonumber(ARGV[2])
  if ARGV[3] ~= '' then
    local t = redis.call('TIME')
    local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    redis.call('SET', KEYS[2], string.format('%s:%d', ARGV[3], now + hold),
      'PX', string.format('%d', 2 * hold))
    redis.call('SET', KEYS[3], '1')
  else
    redis.call('SET', KEYS[2], 'free', 'PX', string.format('%d', hold))
  end
end
return redis.call('GET', KEYS[1])
";

/// Each script as a [`Script`], hashed once (the hash names it in `EVALSHA`).
macro_rules! hashed {
    ($($name:ident = $text:ident;)*) => {
        $(
            #[doc = concat!("[`", stringify!($text), "`], hashed once.")]
            pub(super) static $name: LazyLock<Script> = LazyLock::new(|| Script::new($text));
        )*
    };
}

hashed! {
    REVOKE_JTI_SCRIPT = REVOKE_JTI;
    USE_ONCE_SCRIPT = USE_ONCE;
    DATASET_KEPT_SCRIPT = DATASET_KEPT;
    REVOKE_SUBJECT_SCRIPT = REVOKE_SUBJECT;
    RESTORE_JTI_SCRIPT = RESTORE_JTI;
    RESTORE_SUBJECT_SCRIPT = RESTORE_SUBJECT;
    WRITTEN_BACK_SCRIPT = WRITTEN_BACK;
    MARKER_SCRIPT = MARKER;
    SNAPSHOT_HEAD_SCRIPT = SNAPSHOT_HEAD;
    ADOPT_EPOCH_SCRIPT = ADOPT_EPOCH;
}

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
            b"jwt:seq",
            b"jwt:restoring",
            b"jwt:incomplete",
            b"jwt:sub:99:short:x",
            b"jwt:sub:x:a:b",
            b"other:jti:a",
            b"jwt:jti:\xff",
        ] {
            assert_eq!(record("jwt:", other), None, "{other:?}");
        }
    }

    #[test]
    fn a_record_without_expiry_is_kept_until_the_latest_exat() {
        let latest = super::super::MAX_EXAT.to_string();
        for script in [REVOKE_JTI, REVOKE_SUBJECT, RESTORE_JTI, RESTORE_SUBJECT] {
            assert!(script.contains(&latest));
        }
    }

    #[test]
    fn the_pattern_matches_the_prefix_literally() {
        assert_eq!(pattern("jwt:"), "jwt:*");
        assert_eq!(pattern("t[1]*?\\:"), "t\\[1\\]\\*\\?\\\\:*");
    }
}
