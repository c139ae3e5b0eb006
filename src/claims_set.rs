//! The claims set read once for two readers: the policy's registered claims and the
//! application's claims type.
//!
//! Parsing the payload once for the policy and again for the application doubled the JSON
//! work of every request. Here the application's `Deserialize` drives a single parse, and a
//! wrapper around its map access reads each registered claim (RFC 7519 §4.1) with the strict
//! rules of [`validation`](crate::validation) first, then replays the value to the
//! application. Every other member goes straight to the application.
//!
//! The replay answers a type hint only where its answer is certainly serde_json's (a string
//! for `str`, a number for `u64`, `Some` for `Option`, a unit variant for an enum, …); any
//! other hint (`u128`, bytes, a `RawValue`, a map keyed by numbers, a claims type that is not
//! read as a map) fails the pass. So does a pass in which the policy refused anything, the
//! application's visitor did not read every member or a replayed value, or any error was
//! raised inside a member (noted on the way, since the application may swallow it), whatever
//! that visitor made of it. When the single pass fails for any reason, the caller parses
//! twice as before, so which path ran never changes a result, only its cost. Five review
//! rounds and a 300 000-document differential campaign went into this; the test module keeps
//! a regression case for every divergence they found.

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess,
    Unexpected, Visitor,
};

use crate::token::{CowStr, MemberSet};
use crate::validation::{AudienceCheck, ClaimsPolicy, Registered};

/// Reads `payload` (already checked to be UTF-8) into `C` and the registered claims in one
/// pass. An error means only that this pass did not succeed; see the module docs.
pub(crate) fn read<'a, C: DeserializeOwned>(
    policy: &ClaimsPolicy,
    payload: &'a str,
) -> Result<(C, Registered<'a>), serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(payload);
    let mut tee = Tee {
        policy,
        registered: Registered::default(),
        seen: MemberSet::default(),
        failed: Cell::new(false),
        finished: false,
    };
    let claims = C::deserialize(Object {
        de: &mut de,
        tee: &mut tee,
    })?;
    de.end()?;
    if tee.failed.get() || !tee.finished {
        return Err(de::Error::custom("claims set not read to the end"));
    }
    Ok((claims, tee.registered))
}

/// Reads only the registered claims, refusing wrong types and duplicate members.
pub(crate) fn registered<'a>(
    policy: &ClaimsPolicy,
    payload: &'a str,
) -> Result<Registered<'a>, serde_json::Error> {
    read::<IgnoredAny>(policy, payload).map(|(_, registered)| registered)
}

/// What the single pass has learnt so far.
struct Tee<'p, 'de> {
    policy: &'p ClaimsPolicy,
    registered: Registered<'de>,
    seen: MemberSet<'de>,
    /// Something failed: the policy refused a member, or a replayed value or name met an
    /// error — even if the application's visitor swallowed it and went on.
    failed: Cell<bool>,
    /// Every member was read: the application's visitor asked until there were none left.
    finished: bool,
}

impl<'de> Tee<'_, 'de> {
    /// Takes note of a member name; refuses a name seen before (RFC 7519 §4: we reject
    /// duplicates rather than keep the last one).
    // The `Cow` itself: a borrowed name is kept by `MemberSet` without copying.
    #[allow(clippy::ptr_arg)]
    fn key<E: de::Error>(&mut self, name: &Cow<'de, str>) -> Result<(), E> {
        if !self.seen.insert(name) {
            return Err(E::custom("duplicate claim"));
        }
        if let Some(i) = self.policy.required.iter().position(|c| c == name) {
            self.registered.required_seen |= 1 << i;
        }
        Ok(())
    }

    /// Reads the value of a registered claim into the policy's view and returns it for the
    /// application; `None` for a member the policy does not read.
    fn value<A: MapAccess<'de>>(
        &mut self,
        name: &str,
        map: &mut A,
    ) -> Result<Option<Replay<'de>>, A::Error> {
        let r = &mut self.registered;
        let value = match name {
            "exp" | "nbf" | "iat" => {
                let date = map.next_value::<Number>()?;
                let slot = match name {
                    "exp" => &mut r.exp,
                    "nbf" => &mut r.nbf,
                    _ => &mut r.iat,
                };
                *slot = Some(date.as_f64());
                Replay::Number(date)
            }
            "iss" | "sub" | "jti" => {
                let text = map.next_value::<CowStr<'de>>()?.0;
                let slot = match name {
                    "iss" => &mut r.iss,
                    "sub" => &mut r.sub,
                    _ => &mut r.jti,
                };
                *slot = Some(text.clone());
                Replay::Str(text)
            }
            "aud" => {
                let aud = map.next_value::<Audience<'de>>()?.0;
                let expected = &self.policy.audiences;
                let matches = |a: &Cow<'_, str>| expected.iter().any(|e| e == a);
                let hit = match &aud {
                    Replay::Str(a) => matches(a),
                    Replay::Strs(list) => list.iter().any(matches),
                    Replay::Number(_) => false,
                };
                r.aud = if hit {
                    AudienceCheck::Match
                } else {
                    AudienceCheck::NoMatch
                };
                aud
            }
            _ => return Ok(None),
        };
        Ok(Some(value))
    }
}

/// The top-level claims object: whatever the application asks for, it is read as a map.
struct Object<'t, 'p, 'de> {
    de: &'t mut serde_json::Deserializer<serde_json::de::StrRead<'de>>,
    tee: &'t mut Tee<'p, 'de>,
}

impl<'de> Object<'_, '_, 'de> {
    fn object<V: Visitor<'de>>(
        self,
        visitor: V,
        ignore: bool,
    ) -> Result<V::Value, serde_json::Error> {
        self.de.deserialize_map(ObjectVisitor {
            inner: visitor,
            tee: self.tee,
            ignore,
        })
    }
}

impl<'de> Deserializer<'de> for Object<'_, '_, 'de> {
    type Error = serde_json::Error;

    // A claims set is a JSON object (RFC 7519 §7.2 step 10), which serde_json hands to
    // `visit_map` for these hints (a struct also from an array, which a claims set is not).
    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        self.object(visitor, false)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        self.object(visitor, false)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.object(visitor, false)
    }

    // serde_json skips the value, then calls `visit_unit`.
    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        self.object(visitor, true)
    }

    // Any other hint (a newtype, an `Option`, an enum, …) is the two-pass path's to answer.
    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: V,
    ) -> Result<V::Value, Self::Error> {
        Err(unreplayed())
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Self::Error> {
        Err(unreplayed())
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _: usize, _: V) -> Result<V::Value, Self::Error> {
        Err(unreplayed())
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: usize,
        _: V,
    ) -> Result<V::Value, Self::Error> {
        Err(unreplayed())
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: V,
    ) -> Result<V::Value, Self::Error> {
        Err(unreplayed())
    }

    refuse!(serde_json::Error: deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32
        deserialize_i64 deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32
        deserialize_u64 deserialize_u128 deserialize_f32 deserialize_f64 deserialize_char
        deserialize_str deserialize_string deserialize_bytes deserialize_byte_buf
        deserialize_option deserialize_unit deserialize_seq deserialize_identifier);
}

struct ObjectVisitor<'t, 'p, 'de, V> {
    inner: V,
    tee: &'t mut Tee<'p, 'de>,
    /// Read every member for the policy, then tell the application `visit_unit`.
    ignore: bool,
}

impl<'de, V: Visitor<'de>> Visitor<'de> for ObjectVisitor<'_, '_, 'de, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(f)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        let mut members = Members {
            map,
            tee: self.tee,
            pending: None,
            awaiting_value: false,
        };
        if self.ignore {
            while members.next_key::<IgnoredAny>()?.is_some() {
                members.next_value::<IgnoredAny>()?;
            }
            return self.inner.visit_unit();
        }
        self.inner.visit_map(members)
    }
}

/// The members of the claims object, each key seen by the policy first.
struct Members<'t, 'p, 'de, A> {
    map: A,
    tee: &'t mut Tee<'p, 'de>,
    /// The value of the last key when the policy has already read it.
    pending: Option<Replay<'de>>,
    /// A key was handed out and its value not yet asked for.
    awaiting_value: bool,
}

impl<'de, A: MapAccess<'de>> Members<'_, '_, 'de, A> {
    /// The next member name, after the policy has seen it and read its value when it is a
    /// registered claim.
    fn read_key(&mut self) -> Result<Option<Cow<'de, str>>, A::Error> {
        if self.awaiting_value {
            // serde_json would refuse this use of its map; the replay must not be laxer.
            return Err(de::Error::custom("a member's value was skipped"));
        }
        let Some(CowStr(name)) = self.map.next_key::<CowStr<'de>>()? else {
            self.tee.finished = true;
            return Ok(None);
        };
        self.tee.key::<A::Error>(&name)?;
        self.pending = self.tee.value(name.as_ref(), &mut self.map)?;
        self.awaiting_value = true;
        Ok(Some(name))
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Members<'_, '_, 'de, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        // Whatever the application's visitor does with an error (it may swallow it and go
        // on), a pass that saw one, or that the visitor left unfinished, is not taken.
        let read = self.read_key();
        if read.is_err() {
            self.tee.failed.set(true);
        }
        match read? {
            Some(name) => seed
                .deserialize(ReplayedKey::new(name, &self.tee.failed))
                .map(Some),
            None => Ok(None),
        }
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, A::Error> {
        self.awaiting_value = false;
        match self.pending.take() {
            Some(value) => seed.deserialize(Replayed::new(value, &self.tee.failed)),
            None => {
                // Any error serde_json raises inside this value is noted, even if the
                // application swallows it and goes on from a point the policy never saw.
                let value = self.map.next_value_seed(Noted::new(seed, &self.tee.failed));
                noted(&self.tee.failed, value)
            }
        }
    }

    fn size_hint(&self) -> Option<usize> {
        self.map.size_hint()
    }
}

/// A value the policy has read, kept to be handed to the application.
enum Replay<'de> {
    Str(Cow<'de, str>),
    /// `aud` as an array of strings (RFC 7519 §4.1.3).
    Strs(Vec<Cow<'de, str>>),
    Number(Number),
}

/// A JSON number as serde_json reported it. Any kind is a valid NumericDate (RFC 7519 §2).
#[derive(Clone, Copy)]
enum Number {
    U64(u64),
    I64(i64),
    F64(f64),
}

impl Number {
    fn as_f64(self) -> f64 {
        match self {
            Number::U64(n) => n as f64,
            Number::I64(n) => n as f64,
            Number::F64(n) => n,
        }
    }
}

impl<'de> de::Deserialize<'de> for Number {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Number;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a NumericDate")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Number, E> {
                Ok(Number::U64(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Number, E> {
                Ok(Number::I64(v))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Number, E> {
                if v.is_finite() {
                    Ok(Number::F64(v))
                } else {
                    Err(E::custom("not finite"))
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// `aud`: a string or an array of strings (RFC 7519 §4.1.3); anything else is refused.
struct Audience<'de>(Replay<'de>);

impl<'de> de::Deserialize<'de> for Audience<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(AudienceVisitor).map(Audience)
    }
}

struct AudienceVisitor;

impl<'de> Visitor<'de> for AudienceVisitor {
    type Value = Replay<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string or an array of strings")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Replay<'de>, E> {
        Ok(Replay::Str(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Replay<'de>, E> {
        Ok(Replay::Str(Cow::Owned(v.to_owned())))
    }

    fn visit_seq<S: SeqAccess<'de>>(self, mut seq: S) -> Result<Replay<'de>, S::Error> {
        let mut list = Vec::new();
        while let Some(aud) = seq.next_element::<CowStr<'de>>()? {
            list.push(aud.0);
        }
        Ok(Replay::Strs(list))
    }
}

/// Hands a replayed value to the application exactly as serde_json's value deserializer
/// would, for every type hint whose answer is certain; any other hint is an error.
///
/// The application may swallow an error (e.g. with `unwrap_or_default`) or not read the value
/// at all, where serde_json would then have been left in another state than the replay is.
/// So every error leaving it is noted in `failed`, and so is a value dropped unread.
struct Replayed<'t, 'de, E> {
    /// Taken when read.
    value: Option<Replay<'de>>,
    failed: &'t Cell<bool>,
    error: PhantomData<E>,
}

impl<'t, 'de, E> Replayed<'t, 'de, E> {
    fn new(value: Replay<'de>, failed: &'t Cell<bool>) -> Self {
        Replayed {
            value: Some(value),
            failed,
            error: PhantomData,
        }
    }
}

impl<E> Drop for Replayed<'_, '_, E> {
    fn drop(&mut self) {
        if self.value.is_some() {
            self.failed.set(true);
        }
    }
}

/// The error that sends a token down the two-pass path: this hint is not replayed.
fn unreplayed<E: de::Error>() -> E {
    E::custom("not replayed")
}

/// Passes `result` on, noting in `failed` when it is an error.
fn noted<T, E>(failed: &Cell<bool>, result: Result<T, E>) -> Result<T, E> {
    if result.is_err() {
        failed.set(true);
    }
    result
}

/// Hints that are refused outright (each method drops its visitor).
macro_rules! refuse {
    ($error:ty: $($method:ident)*) => {
        $(fn $method<V: Visitor<'de>>(self, _: V) -> Result<V::Value, $error> {
            Err(unreplayed())
        })*
    };
}
use refuse;

/// Hints answered by one of the replaying deserializer's readers, errors noted.
macro_rules! hints {
    ($reader:ident: $($method:ident($($arg:ident: $ty:ty),*))*) => {
        $(fn $method<V: Visitor<'de>>(self, $(_: $ty,)* visitor: V) -> Result<V::Value, E> {
            let failed = self.failed;
            noted(failed, self.$reader(visitor))
        })*
    };
}

/// `Option` as `Some` (a replayed value or name is never `null`) and newtypes as themselves,
/// as serde_json answers both; its `RawValue` asks by a private name for the raw text, which
/// is gone.
macro_rules! option_and_newtype {
    () => {
        fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, E> {
            let failed = self.failed;
            noted(failed, visitor.visit_some(self))
        }

        fn deserialize_newtype_struct<V: Visitor<'de>>(
            self,
            name: &'static str,
            visitor: V,
        ) -> Result<V::Value, E> {
            let failed = self.failed;
            if name.starts_with("$serde_json") {
                failed.set(true);
                return Err(unreplayed());
            }
            noted(failed, visitor.visit_newtype_struct(self))
        }
    };
}

impl<'de, E: de::Error> Replayed<'_, 'de, E> {
    fn number<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value, E> {
        match self.value.take() {
            Some(Replay::Number(Number::U64(n))) => visitor.visit_u64(n),
            Some(Replay::Number(Number::I64(n))) => visitor.visit_i64(n),
            Some(Replay::Number(Number::F64(n))) => visitor.visit_f64(n),
            _ => Err(unreplayed()),
        }
    }

    /// A string as serde_json hands it to `visit_*str`: borrowed when it had no escapes.
    fn text<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value, E> {
        match self.value.take() {
            Some(Replay::Str(Cow::Borrowed(s))) => visitor.visit_borrowed_str(s),
            Some(Replay::Str(Cow::Owned(s))) => visitor.visit_str(&s),
            _ => Err(unreplayed()),
        }
    }

    /// An `aud` array, element by element; like serde_json's, its size is not hinted and
    /// elements left unread are an error.
    fn array<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value, E> {
        let Some(Replay::Strs(list)) = self.value.take() else {
            return Err(unreplayed());
        };
        let mut elements = Elements {
            list: list.into_iter(),
            failed: self.failed,
            error: PhantomData,
        };
        let value = visitor.visit_seq(&mut elements)?;
        if elements.list.len() > 0 {
            return Err(E::custom("array not read to the end"));
        }
        Ok(value)
    }

    fn any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, E> {
        match self.value {
            Some(Replay::Str(_)) => self.text(visitor),
            Some(Replay::Strs(_)) => self.array(visitor),
            Some(Replay::Number(_)) => self.number(visitor),
            None => Err(unreplayed()),
        }
    }

    /// serde_json's `UnitVariantAccess`: the variant named by a string, read with this
    /// deserializer's rules; only a unit variant.
    fn variant<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, E> {
        match self.value {
            Some(Replay::Str(_)) => visitor.visit_enum(UnitVariant(self)),
            _ => Err(unreplayed()),
        }
    }

    fn ignored<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value, E> {
        self.value = None;
        visitor.visit_unit()
    }

    fn unsupported<V: Visitor<'de>>(self, _: V) -> Result<V::Value, E> {
        Err(unreplayed())
    }
}

impl<'de, E: de::Error> Deserializer<'de> for Replayed<'_, 'de, E> {
    type Error = E;

    hints!(any: deserialize_any());
    // serde_json: a number for any numeric hint but the 128-bit ones (parsed apart, so not
    // replayed) and `f32` (parsed apart under its `float_roundtrip` feature).
    hints!(number: deserialize_i8() deserialize_i16() deserialize_i32() deserialize_i64()
        deserialize_u8() deserialize_u16() deserialize_u32() deserialize_u64() deserialize_f64());
    // serde_json: `char`, `string` and `identifier` are read as `str`.
    hints!(text: deserialize_char() deserialize_str() deserialize_string() deserialize_identifier());
    // serde_json reads a struct from an array too (and from an object, which this is not).
    hints!(array: deserialize_seq() deserialize_tuple(len: usize)
        deserialize_tuple_struct(name: &'static str, len: usize)
        deserialize_struct(name: &'static str, fields: &'static [&'static str]));
    hints!(ignored: deserialize_ignored_any());
    hints!(unsupported: deserialize_bool() deserialize_i128() deserialize_u128() deserialize_f32()
        deserialize_bytes() deserialize_byte_buf() deserialize_unit() deserialize_map()
        deserialize_unit_struct(name: &'static str));

    // A replayed value is never `null`.
    option_and_newtype!();

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, E> {
        let failed = self.failed;
        noted(failed, self.variant(visitor))
    }
}

/// The elements of a replayed `aud` array.
struct Elements<'t, 'de, E> {
    list: std::vec::IntoIter<Cow<'de, str>>,
    failed: &'t Cell<bool>,
    error: PhantomData<E>,
}

impl<'de, E: de::Error> SeqAccess<'de> for Elements<'_, 'de, E> {
    type Error = E;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, E> {
        match self.list.next() {
            Some(s) => seed
                .deserialize(Replayed::new(Replay::Str(s), self.failed))
                .map(Some),
            None => Ok(None),
        }
    }
}

/// A unit variant named by a replayed string.
struct UnitVariant<'t, 'de, E>(Replayed<'t, 'de, E>);

impl<'t, 'de, E: de::Error> de::EnumAccess<'de> for UnitVariant<'t, 'de, E> {
    type Error = E;
    type Variant = Self;

    fn variant_seed<S: DeserializeSeed<'de>>(mut self, seed: S) -> Result<(S::Value, Self), E> {
        let failed = self.0.failed;
        // The name is handed on; reading it is what reads the value.
        let Some(name) = self.0.value.take() else {
            return Err(unreplayed());
        };
        let variant = seed.deserialize(Replayed::<E>::new(name, failed))?;
        Ok((variant, self))
    }
}

impl<'de, E: de::Error> de::VariantAccess<'de> for UnitVariant<'_, 'de, E> {
    type Error = E;

    fn unit_variant(self) -> Result<(), E> {
        Ok(())
    }

    // serde_json's errors for a string that names anything but a unit variant, noted.
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, _: T) -> Result<T::Value, E> {
        self.0.failed.set(true);
        Err(E::invalid_type(Unexpected::UnitVariant, &"newtype variant"))
    }

    fn tuple_variant<V: Visitor<'de>>(self, _: usize, _: V) -> Result<V::Value, E> {
        self.0.failed.set(true);
        Err(E::invalid_type(Unexpected::UnitVariant, &"tuple variant"))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, E> {
        self.0.failed.set(true);
        Err(E::invalid_type(Unexpected::UnitVariant, &"struct variant"))
    }
}

/// A member name handed to the application as serde_json's map-key deserializer would.
struct ReplayedKey<'t, 'de, E> {
    /// Taken when read; a name dropped unread is noted in `failed`, as for [`Replayed`].
    name: Option<Cow<'de, str>>,
    failed: &'t Cell<bool>,
    error: PhantomData<E>,
}

impl<'t, 'de, E: de::Error> ReplayedKey<'t, 'de, E> {
    fn new(name: Cow<'de, str>, failed: &'t Cell<bool>) -> Self {
        ReplayedKey {
            name: Some(name),
            failed,
            error: PhantomData,
        }
    }

    fn any<V: Visitor<'de>>(mut self, visitor: V) -> Result<V::Value, E> {
        match self.name.take() {
            Some(name) => Replayed::new(Replay::Str(name), self.failed).text(visitor),
            None => Err(unreplayed()),
        }
    }

    fn unsupported<V: Visitor<'de>>(self, _: V) -> Result<V::Value, E> {
        Err(unreplayed())
    }
}

impl<E> Drop for ReplayedKey<'_, '_, E> {
    fn drop(&mut self) {
        if self.name.is_some() {
            self.failed.set(true);
        }
    }
}

impl<'de, E: de::Error> Deserializer<'de> for ReplayedKey<'_, 'de, E> {
    type Error = E;

    // serde_json's map-key deserializer forwards these to `deserialize_any`.
    hints!(any: deserialize_any() deserialize_char() deserialize_str() deserialize_string()
        deserialize_unit() deserialize_seq() deserialize_map() deserialize_identifier()
        deserialize_ignored_any() deserialize_unit_struct(name: &'static str)
        deserialize_tuple(len: usize) deserialize_tuple_struct(name: &'static str, len: usize)
        deserialize_struct(name: &'static str, fields: &'static [&'static str]));
    // It parses numbers and booleans out of a name, and reads bytes raw: not replayed.
    hints!(unsupported: deserialize_bool() deserialize_i8() deserialize_i16() deserialize_i32()
        deserialize_i64() deserialize_i128() deserialize_u8() deserialize_u16() deserialize_u32()
        deserialize_u64() deserialize_u128() deserialize_f32() deserialize_f64() deserialize_bytes()
        deserialize_byte_buf());

    // Names cannot be `null`.
    option_and_newtype!();

    // serde_json reads an enum in a name with its value deserializer.
    fn deserialize_enum<V: Visitor<'de>>(
        mut self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, E> {
        let failed = self.failed;
        let Some(name) = self.name.take() else {
            return Err(unreplayed());
        };
        noted(
            failed,
            Replayed::new(Replay::Str(name), failed).variant(visitor),
        )
    }
}

/// Wraps the application's seed for a member the policy does not read, so that every error
/// serde_json raises anywhere inside that value is noted even if the application swallows it
/// (e.g. `serde_with::DefaultOnError`): serde_json may then go on past bytes that are not
/// JSON, which the policy's own pass would refuse.
struct Noted<'t, T> {
    inner: T,
    failed: &'t Cell<bool>,
}

impl<'t, T> Noted<'t, T> {
    fn new(inner: T, failed: &'t Cell<bool>) -> Self {
        Noted { inner, failed }
    }

    fn wrap<U>(&self, inner: U) -> Noted<'t, U> {
        Noted::new(inner, self.failed)
    }

    fn note<R, E>(&self, result: Result<R, E>) -> Result<R, E> {
        noted(self.failed, result)
    }
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Noted<'_, S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        let failed = self.failed;
        noted(failed, self.inner.deserialize(Noted::new(d, failed)))
    }
}

/// Forwards deserializer hints, wrapping the visitor.
macro_rules! forward_hints {
    ($($method:ident($($arg:ident: $ty:ty),*))*) => {
        $(fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, D::Error> {
            let visitor = self.wrap(visitor);
            let failed = self.failed;
            noted(failed, self.inner.$method($($arg,)* visitor))
        })*
    };
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Noted<'_, D> {
    type Error = D::Error;

    forward_hints! {
        deserialize_any() deserialize_bool() deserialize_i8() deserialize_i16()
        deserialize_i32() deserialize_i64() deserialize_i128() deserialize_u8()
        deserialize_u16() deserialize_u32() deserialize_u64() deserialize_u128()
        deserialize_f32() deserialize_f64() deserialize_char() deserialize_str()
        deserialize_string() deserialize_option()
        deserialize_unit() deserialize_unit_struct(name: &'static str)
        deserialize_newtype_struct(name: &'static str) deserialize_seq()
        deserialize_tuple(len: usize) deserialize_tuple_struct(name: &'static str, len: usize)
        deserialize_map()
        deserialize_struct(name: &'static str, fields: &'static [&'static str])
        deserialize_enum(name: &'static str, variants: &'static [&'static str])
        deserialize_identifier() deserialize_ignored_any()
    }

    // serde_json reads a string as bytes without refusing raw control characters, which its
    // skipping of the same member (the policy's pass) refuses: not taken in one pass.
    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.failed.set(true);
        let visitor = self.wrap(visitor);
        self.inner.deserialize_bytes(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.failed.set(true);
        let visitor = self.wrap(visitor);
        self.inner.deserialize_byte_buf(visitor)
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

/// Forwards visits of plain values.
macro_rules! forward_visits {
    ($($method:ident($ty:ty))*) => {
        $(fn $method<E: de::Error>(self, v: $ty) -> Result<V::Value, E> {
            self.inner.$method(v)
        })*
    };
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Noted<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(f)
    }

    forward_visits! {
        visit_bool(bool) visit_i8(i8) visit_i16(i16) visit_i32(i32) visit_i64(i64)
        visit_i128(i128) visit_u8(u8) visit_u16(u16) visit_u32(u32) visit_u64(u64)
        visit_u128(u128) visit_f32(f32) visit_f64(f64) visit_char(char) visit_str(&str)
        visit_borrowed_str(&'de str) visit_string(String) visit_bytes(&[u8])
        visit_borrowed_bytes(&'de [u8]) visit_byte_buf(Vec<u8>)
    }

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        let d = self.wrap(d);
        self.inner.visit_some(d)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        let d = self.wrap(d);
        self.inner.visit_newtype_struct(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        let seq = self.wrap(seq);
        self.inner.visit_seq(seq)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        let map = self.wrap(map);
        self.inner.visit_map(map)
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        let data = self.wrap(data);
        self.inner.visit_enum(data)
    }
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Noted<'_, A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        let seed = self.wrap(seed);
        let result = self.inner.next_element_seed(seed);
        self.note(result)
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Noted<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        let seed = self.wrap(seed);
        let result = self.inner.next_key_seed(seed);
        self.note(result)
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, A::Error> {
        let seed = self.wrap(seed);
        let result = self.inner.next_value_seed(seed);
        self.note(result)
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'t, 'de, A: de::EnumAccess<'de>> de::EnumAccess<'de> for Noted<'t, A> {
    type Error = A::Error;
    type Variant = Noted<'t, A::Variant>;

    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Self::Variant), A::Error> {
        let failed = self.failed;
        let seed = self.wrap(seed);
        let (value, variant) = noted(failed, self.inner.variant_seed(seed))?;
        Ok((value, Noted::new(variant, failed)))
    }
}

impl<'de, A: de::VariantAccess<'de>> de::VariantAccess<'de> for Noted<'_, A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        let failed = self.failed;
        noted(failed, self.inner.unit_variant())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, A::Error> {
        let failed = self.failed;
        let seed = self.wrap(seed);
        noted(failed, self.inner.newtype_variant_seed(seed))
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        let failed = self.failed;
        let visitor = self.wrap(visitor);
        noted(failed, self.inner.tuple_variant(len, visitor))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        let failed = self.failed;
        let visitor = self.wrap(visitor);
        noted(failed, self.inner.struct_variant(fields, visitor))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::Value;
    use std::collections::BTreeMap;

    #[derive(Debug, PartialEq, Deserialize)]
    struct Typed {
        sub: Option<String>,
        exp: Option<u64>,
        iat: Option<f64>,
        aud: Option<Aud>,
        #[serde(default)]
        roles: Vec<String>,
    }
    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(untagged)]
    enum Aud {
        One(String),
        Many(Vec<String>),
    }

    fn policy() -> ClaimsPolicy {
        ClaimsPolicy {
            audiences: vec!["api".into()],
            required: vec!["roles".into()],
            ..ClaimsPolicy::default()
        }
    }

    /// The single pass gives the application exactly what serde_json gives it.
    fn same<C: DeserializeOwned + PartialEq + fmt::Debug>(json: &str) {
        let (once, _) = read::<C>(&policy(), json).unwrap_or_else(|e| panic!("{json}: {e}"));
        let direct: C = serde_json::from_str(json).unwrap();
        assert_eq!(once, direct, "{json}");
    }

    #[test]
    fn replays_registered_claims_faithfully() {
        let docs = [
            r#"{"sub":"alice","exp":1700000000,"nbf":-5,"iat":1.5,"aud":["x","api"],"roles":[]}"#,
            r#"{"sub":"al\"ice","iss":"https://id","jti":"j\u00e9","aud":"api","x":{"y":[1]}}"#,
            r#"{}"#,
        ];
        for doc in docs {
            same::<Value>(doc);
        }

        same::<Typed>(docs[0]);
        same::<Typed>(r#"{"sub":"bob","aud":"api","exp":5}"#);

        #[derive(Debug, PartialEq, Deserialize)]
        enum Iss {
            #[serde(rename = "https://id")]
            Id,
        }
        #[derive(Debug, PartialEq, Deserialize)]
        struct WithEnum {
            iss: Iss,
        }
        same::<WithEnum>(docs[1]);

        #[derive(Debug, PartialEq, Deserialize)]
        struct Flattened {
            sub: String,
            #[serde(flatten)]
            rest: std::collections::BTreeMap<String, Value>,
        }
        same::<Flattened>(docs[0]);
        same::<Flattened>(docs[1]);
    }

    #[test]
    fn registered_claims_are_read_on_the_way() {
        let p = policy();
        let (_, r) = read::<IgnoredAny>(
            &p,
            r#"{"exp":10,"nbf":-1,"iat":2.5,"iss":"i","sub":"s","jti":"j","aud":["api"],"roles":1}"#,
        )
        .unwrap();
        assert_eq!((r.exp, r.nbf, r.iat), (Some(10.0), Some(-1.0), Some(2.5)));
        assert_eq!(
            (r.iss.as_deref(), r.sub.as_deref(), r.jti.as_deref()),
            (Some("i"), Some("s"), Some("j"))
        );
        assert_eq!(r.aud, AudienceCheck::Match);
        assert_eq!(r.required_seen, 1);
    }

    #[test]
    fn what_the_policy_refuses_fails_the_single_pass() {
        for doc in [
            r#"{"exp":"10"}"#,
            r#"{"iss":1}"#,
            r#"{"aud":[1]}"#,
            r#"{"aud":{}}"#,
            r#"{"sub":"a","sub":"a"}"#,
            r#"{"x":1,"x":2}"#,
            r#"[]"#,
            r#"{"exp":1} x"#,
        ] {
            assert!(read::<Value>(&policy(), doc).is_err(), "{doc}");
            assert!(registered(&policy(), doc).is_err(), "{doc}");
        }
    }

    fn json_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            any::<u64>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            (-1e12f64..1e12).prop_map(Value::from),
            "[a-z\\\\\"é]{0,6}".prop_map(Value::from),
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
        ];
        leaf.prop_recursive(2, 8, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                proptest::collection::vec(("[a-z]{1,3}", inner), 0..3)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        /// Whenever the single pass succeeds, it agrees with the two passes it replaces:
        /// the same registered claims and the same application claims.
        #[test]
        fn one_pass_agrees_with_two(
            members in proptest::collection::vec(
                (
                    proptest::sample::select(vec![
                        "exp", "nbf", "iat", "iss", "sub", "jti", "aud", "roles", "x",
                    ]),
                    json_value(),
                ),
                0..6,
            ),
        ) {
            let body: Vec<String> = members
                .iter()
                .map(|(k, v)| format!("{k:?}:{v}"))
                .collect();
            let doc = format!("{{{}}}", body.join(","));
            // Typed claims ask for specific hints (strings, numbers, options, sequences, an
            // untagged enum); `agrees` panics on any single pass that differs.
            agrees::<Typed>(&doc);
            agrees::<BTreeMap<String, Value>>(&doc);
            let p = policy();
            if let Ok((once, reg)) = read::<Value>(&p, &doc) {
                let two = registered(&p, &doc).expect("the registered claims alone parse too");
                proptest::prop_assert_eq!(format!("{reg:?}"), format!("{two:?}"));
                let direct: Value = serde_json::from_str(&doc).expect("serde_json parses it");
                proptest::prop_assert_eq!(once, direct);
            } else {
                // Either the policy refuses it or serde_json does; never a silent difference.
                let policy_ok = registered(&p, &doc).is_ok();
                let serde_ok = serde_json::from_str::<Value>(&doc).is_ok();
                proptest::prop_assert!(!(policy_ok && serde_ok), "{}", doc);
            }
        }
    }

    /// The invariant: a single pass that succeeds agrees with the two passes it replaces.
    fn agrees<C: DeserializeOwned + PartialEq + fmt::Debug>(json: &str) -> bool {
        let p = ClaimsPolicy {
            require_exp: false,
            ..policy()
        };
        match read::<C>(&p, json) {
            Ok((once, reg)) => {
                let two = registered(&p, json).expect("two passes accept it too");
                assert_eq!(format!("{reg:?}"), format!("{two:?}"), "{json}");
                let direct: C = serde_json::from_str(json).expect("serde_json accepts it too");
                assert_eq!(once, direct, "{json}");
                true
            }
            Err(_) => false,
        }
    }

    /// A key type that takes a number when asked for one, and a name otherwise.
    #[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
    enum Key {
        Num(u64),
        Name(String),
    }

    impl<'de> Deserialize<'de> for Key {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl Visitor<'_> for V {
                type Value = Key;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a key")
                }
                fn visit_u64<E: de::Error>(self, v: u64) -> Result<Key, E> {
                    Ok(Key::Num(v))
                }
                fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
                    Ok(Key::Name(v.to_owned()))
                }
            }
            d.deserialize_u64(V)
        }
    }

    /// Asks for a string but takes a number too: serde_json refuses a number here.
    #[derive(Debug, PartialEq)]
    struct Lenient(String);

    impl Lenient {
        /// Takes text or a number, as text.
        fn visitor() -> impl for<'de> Visitor<'de, Value = String> {
            struct V;
            impl Visitor<'_> for V {
                type Value = String;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("text")
                }
                fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
                    Ok(v.to_string())
                }
                fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
                    Ok(v.to_owned())
                }
            }
            V
        }
    }

    impl<'de> Deserialize<'de> for Lenient {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_str(Lenient::visitor()).map(Lenient)
        }
    }

    /// Asks for bytes but takes only text: serde_json hands strings over as bytes here.
    #[derive(Debug, PartialEq)]
    struct TextOnly(String);

    impl<'de> Deserialize<'de> for TextOnly {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl Visitor<'_> for V {
                type Value = TextOnly;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("text")
                }
                fn visit_str<E: de::Error>(self, v: &str) -> Result<TextOnly, E> {
                    Ok(TextOnly(v.to_owned()))
                }
            }
            d.deserialize_bytes(V)
        }
    }

    /// A claims visitor that swallows errors, or stops before the last value.
    #[derive(Debug, PartialEq)]
    struct Careless(usize);

    impl<'de> Deserialize<'de> for Careless {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Careless;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("claims")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Careless, A::Error> {
                    let mut n = 0;
                    loop {
                        match map.next_key::<String>() {
                            Ok(Some(k)) if k == "last" => return Ok(Careless(n)),
                            Ok(Some(_)) => {
                                n += 1;
                                let _ = map.next_value::<IgnoredAny>();
                            }
                            Ok(None) => return Ok(Careless(n)),
                            Err(_) => continue,
                        }
                    }
                }
            }
            d.deserialize_map(V)
        }
    }

    #[test]
    fn type_hints_are_honoured_as_serde_json_honours_them() {
        // Each of these once succeeded in one pass with a result serde_json does not give.
        assert!(!agrees::<BTreeMap<Key, Value>>(r#"{"5":1}"#));
        assert!(!agrees::<BTreeMap<Key, Value>>(r#"{"exp":1}"#));
        #[derive(Debug, PartialEq, Deserialize)]
        struct LenientExp {
            exp: Lenient,
        }
        assert!(!agrees::<LenientExp>(r#"{"exp":1700000000}"#));
        #[derive(Debug, PartialEq, Deserialize)]
        #[serde(tag = "iat")]
        enum Tagged {
            Zero {},
            One {},
        }
        assert!(!agrees::<Tagged>(r#"{"iat":1}"#));
        #[derive(Debug, PartialEq, Deserialize)]
        struct Bytes {
            sub: TextOnly,
        }
        assert!(!agrees::<Bytes>(r#"{"sub":"a"}"#));
        // A visitor that swallows the policy's error, or leaves a value unread.
        assert!(!agrees::<Careless>(r#"{"nbf":"9999999999","sub":"a"}"#));
        assert!(!agrees::<Careless>(r#"{"sub":"a","last":1}"#));
        assert!(agrees::<Careless>(r#"{"sub":"a","exp":1}"#));
        // And the shapes that do take the single pass still do.
        assert!(agrees::<BTreeMap<String, Value>>(
            r#"{"exp":1,"aud":["api"],"sub":"a\u00e9","x":[{}]}"#
        ));
        #[derive(Debug, PartialEq, Deserialize)]
        struct Usual {
            sub: String,
            exp: u64,
            aud: Vec<String>,
            iat: Option<f64>,
        }
        assert!(agrees::<Usual>(
            r#"{"sub":"s","exp":5,"aud":["api","b"],"iat":-1.5}"#
        ));
    }

    fn lenient<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(
        d: D,
    ) -> Result<T, D::Error> {
        Ok(T::deserialize(d).unwrap_or_default())
    }

    /// Asks for a string, takes a map: serde_json refuses a claims object here.
    #[derive(Debug, PartialEq)]
    struct StrOrMap(usize);

    impl<'de> Deserialize<'de> for StrOrMap {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = StrOrMap;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("text")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StrOrMap, A::Error> {
                    let mut n = 0;
                    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {
                        n += 1;
                    }
                    Ok(StrOrMap(n))
                }
            }
            d.deserialize_str(V)
        }
    }

    /// An enum whose variant is asked for as a number but taken as text.
    #[derive(Debug, PartialEq)]
    struct NumberedVariant(String);

    impl<'de> Deserialize<'de> for NumberedVariant {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = NumberedVariant;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("an enum")
                }
                fn visit_enum<A: de::EnumAccess<'de>>(
                    self,
                    data: A,
                ) -> Result<Self::Value, A::Error> {
                    struct Seed;
                    impl<'de> DeserializeSeed<'de> for Seed {
                        type Value = String;
                        fn deserialize<D: Deserializer<'de>>(
                            self,
                            d: D,
                        ) -> Result<String, D::Error> {
                            d.deserialize_u64(Lenient::visitor())
                        }
                    }
                    let (name, variant) = data.variant_seed(Seed)?;
                    de::VariantAccess::unit_variant(variant)?;
                    Ok(NumberedVariant(name))
                }
            }
            d.deserialize_enum("NumberedVariant", &["A"], V)
        }
    }

    /// Records the size hint of an `aud` array.
    #[derive(Debug, PartialEq)]
    struct SizeHint(Option<usize>);

    impl<'de> Deserialize<'de> for SizeHint {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = SizeHint;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("an array")
                }
                fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<SizeHint, A::Error> {
                    let hint = seq.size_hint();
                    while seq.next_element::<IgnoredAny>()?.is_some() {}
                    Ok(SizeHint(hint))
                }
            }
            d.deserialize_seq(V)
        }
    }

    #[test]
    fn swallowed_errors_wrong_top_level_hints_and_variants_fail_the_pass() {
        #[derive(Debug, PartialEq, Deserialize)]
        struct LenientFloat {
            #[serde(deserialize_with = "lenient")]
            exp: f32,
        }
        assert!(!agrees::<LenientFloat>(r#"{"exp":1700000000}"#));
        #[derive(Debug, PartialEq, Deserialize)]
        struct LenientAud {
            #[serde(default, deserialize_with = "lenient")]
            aud: u64,
        }
        assert!(!agrees::<LenientAud>(r#"{"aud":["x"]}"#));
        #[derive(Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
        struct LenientKey(#[serde(deserialize_with = "lenient")] u64);
        assert!(!agrees::<BTreeMap<LenientKey, Value>>(r#"{"5":1}"#));
        assert!(!agrees::<BTreeMap<LenientKey, Value>>(r#"{"x":1}"#));
        assert!(!agrees::<StrOrMap>(r#"{"a":1}"#));
        #[derive(Debug, PartialEq, Deserialize)]
        struct Variant {
            sub: NumberedVariant,
        }
        assert!(!agrees::<Variant>(r#"{"sub":"A"}"#));
        #[derive(Debug, PartialEq, Deserialize)]
        struct Hinted {
            aud: SizeHint,
        }
        assert!(agrees::<Hinted>(r#"{"aud":["a","b"]}"#));
        assert!(agrees::<IgnoredAnyEq>(r#"{"aud":["a"],"exp":1}"#));
    }

    fn untouched<'de, D: Deserializer<'de>, T: Default>(_: D) -> Result<T, D::Error> {
        Ok(T::default())
    }

    /// Ignores its input altogether.
    #[derive(Debug, PartialEq)]
    struct Unread;

    impl<'de> Deserialize<'de> for Unread {
        fn deserialize<D: Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
            Ok(Unread)
        }
    }

    #[test]
    fn values_left_unread_or_errors_swallowed_fail_the_pass() {
        // serde_json's own error inside a member the policy does not read, swallowed by the
        // application: serde_json goes on past bytes that are not JSON, which the policy's
        // pass refuses.
        #[derive(Debug, PartialEq, Deserialize)]
        struct LenientList {
            #[serde(deserialize_with = "lenient")]
            x: Vec<u64>,
            exp: Option<u64>,
        }
        assert!(!agrees::<LenientList>(r#"{"x":[1,],"exp":5}"#));
        assert!(agrees::<LenientList>(r#"{"x":[1],"exp":5}"#));
        #[derive(Debug, PartialEq, Deserialize)]
        struct LenientNumber {
            #[serde(deserialize_with = "lenient")]
            x: u64,
        }
        assert!(!agrees::<LenientNumber>(r#"{"x":nul}}"#));
        #[derive(Debug, PartialEq, Deserialize)]
        struct LenientNested {
            #[serde(deserialize_with = "lenient")]
            x: BTreeMap<String, Option<Vec<u64>>>,
        }
        assert!(!agrees::<LenientNested>(r#"{"x":{"a":[1,]}}"#));
        assert!(agrees::<LenientNested>(r#"{"x":{"a":[1],"b":null}}"#));
        // Read as bytes, serde_json lets a raw control character through that its skipping
        // of the member refuses.
        #[derive(Debug, PartialEq, Deserialize)]
        struct Raw {
            #[serde(with = "serde_bytes_like")]
            x: Vec<u8>,
        }
        assert!(!agrees::<Raw>("{\"x\":\"a\u{1}b\"}"));
        assert!(serde_json::from_str::<Raw>("{\"x\":\"a\u{1}b\"}").is_ok());
        // A registered claim the application never reads: serde_json would be left before it.
        #[derive(Debug, PartialEq, Deserialize)]
        struct Skipped {
            #[serde(default, deserialize_with = "untouched")]
            exp: u64,
            sub: Option<String>,
        }
        assert!(!agrees::<Skipped>(r#"{"exp":5,"sub":"a"}"#));
        assert!(!agrees::<Skipped>(r#"{"sub":"a","exp":5}"#));
        #[derive(Debug, PartialEq, Deserialize)]
        struct UnreadAudience {
            aud: Vec<Unread>,
        }
        assert!(!agrees::<UnreadAudience>(r#"{"aud":["a","b"]}"#));
        #[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
        struct UnreadKey;
        impl<'de> Deserialize<'de> for UnreadKey {
            fn deserialize<D: Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
                Ok(UnreadKey)
            }
        }
        assert!(!agrees::<BTreeMap<UnreadKey, Value>>(r#"{"a":1}"#));
    }

    /// Reads a member as bytes (`deserialize_byte_buf`), as `serde_bytes` does.
    mod serde_bytes_like {
        use super::*;

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
            struct V;
            impl Visitor<'_> for V {
                type Value = Vec<u8>;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("bytes")
                }
                fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                    Ok(v.to_vec())
                }
            }
            d.deserialize_byte_buf(V)
        }
    }

    /// `IgnoredAny` with equality, to run it through `agrees`.
    #[derive(Debug, PartialEq)]
    struct IgnoredAnyEq;

    impl<'de> Deserialize<'de> for IgnoredAnyEq {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            IgnoredAny::deserialize(d).map(|_| IgnoredAnyEq)
        }
    }

    #[test]
    fn what_the_replay_cannot_do_fails_rather_than_differs() {
        // A claims type that is not read as a map.
        #[derive(Debug, Deserialize)]
        struct Wrapper(#[allow(dead_code)] Value);
        let doc = r#"{"sub":"a"}"#;
        assert!(serde_json::from_str::<Wrapper>(doc).is_ok());
        assert!(read::<Wrapper>(&policy(), doc).is_err());
        // An `exp` beyond u64 read as u128 comes back as a float, which u128 refuses.
        #[derive(Debug, Deserialize)]
        struct Wide {
            #[allow(dead_code)]
            exp: u128,
        }
        let doc = r#"{"exp":340282366920938463463374607431768211455}"#;
        assert!(serde_json::from_str::<Wide>(doc).is_ok());
        assert!(read::<Wide>(&policy(), doc).is_err());
    }
}
