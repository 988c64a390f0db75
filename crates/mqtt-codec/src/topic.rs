//! Topic names and topic filters (section 4.7), validated once and matched by
//! the rules both specifications share, plus `$share/{group}/{filter}` parsing.

use crate::error::DecodeError;
use crate::small::{scan_wire, SmallBytes, WILDCARD};
use crate::wire::check_text;
use alloc::string::String;
use bytes::Bytes;
use core::fmt;

/// Why a string is not a valid topic name or filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TopicError {
    /// Empty [MQTT-4.7.3-1].
    #[error("empty")]
    Empty,
    /// Longer than 65,535 bytes.
    #[error("longer than 65,535 bytes")]
    TooLong,
    /// A wildcard in a topic name [MQTT-4.7.0-1].
    #[error("wildcard in a topic name")]
    WildcardInName,
    /// `#` not alone in the last level [MQTT-4.7.1-2].
    #[error("'#' must be the last character and occupy a whole level")]
    MisplacedMultiLevel,
    /// `+` not alone in its level [MQTT-4.7.1-3].
    #[error("'+' must occupy a whole level")]
    MisplacedSingleLevel,
    /// U+0000 in the topic [MQTT-4.7.3-2].
    #[error("contains the null character U+0000")]
    NullCharacter,
    /// Not valid UTF-8 [MQTT-1.5.4-1].
    #[error("not valid UTF-8")]
    InvalidUtf8,
    /// `$share/` with an empty or wildcard group, or without a filter [MQTT-4.8.2-1/2].
    #[error("invalid shared subscription: '$share/{{ShareName}}/{{filter}}' needs a name without '+', '#' or '/' and a filter")]
    InvalidShare,
}

/// A validated topic name: non-empty UTF-8 without wildcards or U+0000.
///
/// Names up to 38 bytes are stored inline (decoding one is a fixed-size
/// copy, cloning one a plain copy); longer names share the buffer of the
/// packet they were decoded from.
///
/// The empty name is allowed only through [`TopicName::empty`], for a 5.0
/// PUBLISH that carries a Topic Alias instead.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicName(SmallBytes);

impl TopicName {
    /// Validates `s` as a topic name.
    pub fn new(s: impl Into<Bytes>) -> Result<Self, TopicError> {
        let b: Bytes = s.into();
        check_name(&b)?;
        Ok(Self(SmallBytes::from_bytes(b)))
    }

    /// A topic name from a `'static` string, validated.
    pub fn from_static(s: &'static str) -> Result<Self, TopicError> {
        Self::new(Bytes::from_static(s.as_bytes()))
    }

    /// The empty topic name of a 5.0 PUBLISH that uses a Topic Alias.
    pub fn empty() -> Self {
        Self(SmallBytes::EMPTY)
    }

    /// Whether this is the empty name (only with a Topic Alias).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        // Validated as UTF-8 on construction; the fallback is unreachable.
        core::str::from_utf8(self.0.as_slice()).unwrap_or_default()
    }

    /// The name's bytes.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_slice()
    }

    /// Appends the two-byte length and the name (at most 65,535 bytes by
    /// construction).
    #[inline(always)]
    pub(crate) fn put_binary(&self, buf: &mut crate::out::Out<'_>) {
        self.0.put_binary(buf)
    }

    /// The name as `Bytes` (a copy when stored inline).
    pub fn to_bytes(&self) -> Bytes {
        self.0.to_bytes()
    }

    /// Length in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the name starts with `$` (e.g. `$SYS/...`), which leading
    /// wildcards do not match [MQTT-4.7.2-1].
    pub fn is_dollar(&self) -> bool {
        self.as_bytes().first() == Some(&b'$')
    }

    /// Decoder entry point: checks UTF-8 and wildcards, empty allowed.
    ///
    /// One pass over the bytes finds U+0000, wildcards and non-ASCII bytes;
    /// only a name with non-ASCII bytes goes through the UTF-8 validator.
    /// The errors have the precedence of checking UTF-8, then U+0000, then
    /// wildcards.
    #[inline(always)]
    pub(crate) fn from_wire(whole: &Bytes, start: usize, len: usize) -> Result<Self, DecodeError> {
        let found = scan_wire(whole, start, len);
        if found != 0 {
            check_text(found, &whole[start..start + len])?;
            if found & WILDCARD != 0 {
                return Err(DecodeError::WildcardInTopicName);
            }
        }
        Ok(Self(SmallBytes::from_wire(whole, start, len)))
    }
}

fn check_name(b: &[u8]) -> Result<(), TopicError> {
    if b.is_empty() {
        return Err(TopicError::Empty);
    }
    if b.len() > u16::MAX as usize {
        return Err(TopicError::TooLong);
    }
    if b.contains(&0) {
        return Err(TopicError::NullCharacter);
    }
    // `TopicName::new` takes any `Bytes`: without this check `as_str` would
    // silently return "" for a name that is not UTF-8.
    if core::str::from_utf8(b).is_err() {
        return Err(TopicError::InvalidUtf8);
    }
    if b.iter().any(|&c| c == b'+' || c == b'#') {
        return Err(TopicError::WildcardInName);
    }
    Ok(())
}

impl fmt::Debug for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<&str> for TopicName {
    type Error = TopicError;
    fn try_from(s: &str) -> Result<Self, TopicError> {
        Self::new(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl TryFrom<String> for TopicName {
    type Error = TopicError;
    fn try_from(s: String) -> Result<Self, TopicError> {
        Self::new(Bytes::from(s))
    }
}

/// A validated topic filter, possibly a shared subscription
/// (`$share/{ShareName}/{filter}`).
///
/// Stored like a [`TopicName`]: inline up to 32 bytes (decoding one from a
/// SUBSCRIBE allocates nothing), longer ones as shared `Bytes`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicFilter {
    text: SmallBytes,
    /// Byte offset of the filter proper inside `text` (after `$share/{group}/`).
    filter_start: u16,
}

impl TopicFilter {
    /// Validates `s` as a topic filter [MQTT-4.7.1], [MQTT-4.8.2].
    pub fn new(s: impl Into<String>) -> Result<Self, TopicError> {
        let text: String = s.into();
        if !text.is_empty() && text.len() <= u16::MAX as usize && text.contains('\0') {
            return Err(TopicError::NullCharacter);
        }
        let filter_start = share_prefix_len(text.as_bytes())?;
        check_filter(&text.as_bytes()[filter_start..])?;
        Ok(Self {
            text: SmallBytes::from_bytes(Bytes::from(text)),
            filter_start: filter_start as u16,
        })
    }

    /// The filter at `whole[start..start + len]` of a packet: UTF-8
    /// [MQTT-1.5.4-1], no U+0000 [MQTT-1.5.4-2], then the rules of
    /// [`TopicFilter::new`]. One pass over the bytes finds U+0000 and
    /// wildcards; only a filter with wildcards has their places checked.
    pub(crate) fn from_wire(whole: &Bytes, start: usize, len: usize) -> Result<Self, DecodeError> {
        let b = &whole[start..start + len];
        let found = scan_wire(whole, start, len);
        check_text(found, b)?;
        let filter_start = share_prefix_len(b).map_err(DecodeError::InvalidTopicFilter)?;
        if found & WILDCARD != 0 {
            check_filter(&b[filter_start..]).map_err(DecodeError::InvalidTopicFilter)?;
        }
        Ok(Self {
            text: SmallBytes::from_wire(whole, start, len),
            filter_start: filter_start as u16,
        })
    }

    /// The filter as the client sent it (with any `$share/{group}/` prefix).
    #[inline]
    pub fn as_str(&self) -> &str {
        // Only UTF-8 ever gets in (`new` takes a `String`, the decoder
        // validates); the fallback is unreachable.
        core::str::from_utf8(self.text.as_slice()).unwrap_or_default()
    }

    /// Length in bytes (with any `$share/{group}/` prefix).
    #[inline]
    pub fn len(&self) -> usize {
        self.text.len()
    }

    /// Always `false`: a filter is never empty [MQTT-4.7.3-1].
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes the two-byte length and the filter (at most 65,535 bytes:
    /// the constructors check).
    #[inline]
    pub(crate) fn put_binary(&self, out: &mut crate::out::Out<'_>) {
        self.text.put_binary(out)
    }

    /// The filter proper: without the `$share/{group}/` prefix.
    pub fn filter(&self) -> &str {
        self.as_str()
            .get(usize::from(self.filter_start)..)
            .unwrap_or_default()
    }

    /// The share name of a shared subscription.
    pub fn share_group(&self) -> Option<&str> {
        match usize::from(self.filter_start) {
            0 => None,
            start => self.as_str().get("$share/".len()..start - 1),
        }
    }

    /// Whether this is a shared subscription.
    pub fn is_shared(&self) -> bool {
        self.filter_start != 0
    }

    /// Whether the filter proper contains `+` or `#`.
    pub fn has_wildcards(&self) -> bool {
        self.filter().contains(['+', '#'])
    }

    /// Whether `topic` matches this filter (the share prefix is ignored).
    pub fn matches(&self, topic: &str) -> bool {
        matches(self.filter(), topic)
    }
}

/// Checks the length and any `$share/{group}/` prefix of a filter and
/// returns the prefix's length (0 when not shared).
fn share_prefix_len(text: &[u8]) -> Result<usize, TopicError> {
    if text.is_empty() {
        return Err(TopicError::Empty);
    }
    if text.len() > u16::MAX as usize {
        return Err(TopicError::TooLong);
    }
    match text.strip_prefix(b"$share/") {
        Some(rest) => {
            let slash = rest
                .iter()
                .position(|&c| c == b'/')
                .ok_or(TopicError::InvalidShare)?;
            let group = &rest[..slash];
            if group.is_empty()
                || group.contains(&b'+')
                || group.contains(&b'#')
                || slash + 1 == rest.len()
            {
                return Err(TopicError::InvalidShare);
            }
            Ok("$share/".len() + slash + 1)
        }
        None => Ok(0),
    }
}

/// Checks the wildcards of a filter: `#` alone in the last level
/// [MQTT-4.7.1-2], `+` alone in its level [MQTT-4.7.1-3]. The level of the
/// first misplaced wildcard decides the error: a misplaced `#` if the level
/// has a `#`, a misplaced `+` otherwise.
fn check_filter(b: &[u8]) -> Result<(), TopicError> {
    if b.is_empty() {
        return Err(TopicError::Empty);
    }
    for (i, &c) in b.iter().enumerate() {
        if c != b'+' && c != b'#' {
            continue;
        }
        let level_start = i == 0 || b[i - 1] == b'/';
        let in_place = level_start
            && match c {
                b'#' => i + 1 == b.len(),
                _ => b.get(i + 1).is_none_or(|&n| n == b'/'),
            };
        if !in_place {
            let start = b[..i].iter().rposition(|&c| c == b'/').map_or(0, |p| p + 1);
            let end = b[i..]
                .iter()
                .position(|&c| c == b'/')
                .map_or(b.len(), |p| i + p);
            return Err(if b[start..end].contains(&b'#') {
                TopicError::MisplacedMultiLevel
            } else {
                TopicError::MisplacedSingleLevel
            });
        }
    }
    Ok(())
}

impl fmt::Debug for TopicFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for TopicFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<&str> for TopicFilter {
    type Error = TopicError;
    fn try_from(s: &str) -> Result<Self, TopicError> {
        Self::new(s)
    }
}

impl TryFrom<String> for TopicFilter {
    type Error = TopicError;
    fn try_from(s: String) -> Result<Self, TopicError> {
        Self::new(s)
    }
}

/// Whether topic name `topic` matches topic filter `filter` (both assumed
/// valid; a `$share/` prefix must already be removed).
///
/// `+` matches one level, `#` the parent level and any number of levels
/// below [MQTT-4.7.1-2]; a topic starting with `$` is not matched by a filter
/// starting with a wildcard [MQTT-4.7.2-1].
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(fl), Some(tl)) if fl == tl => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}
