//! [`MqttString`]: the UTF-8 string of the 5.0 string properties.

use crate::small::SmallBytes;
use alloc::string::String;
use bytes::Bytes;
use core::borrow::Borrow;
use core::fmt;
use core::hash::{Hash, Hasher};
use core::ops::Deref;

/// An immutable UTF-8 string, as the 5.0 string properties carry (Content
/// Type, Response Topic, Reason String, User Properties, ...).
///
/// Strings up to 32 bytes are stored inline; longer ones decoded from a
/// packet share its buffer. Decoding one therefore never allocates, where a
/// `String` would allocate and copy. It dereferences to `str` and converts
/// from `&str` and `String`, so most code reads and builds it as a string:
///
/// ```
/// use mqtt_codec::{MqttString, Properties};
/// let mut p = Properties::default();
/// p.content_type = Some("text/plain".into());
/// p.user_properties.push(("site".into(), String::from("pi").into()));
/// assert_eq!(p.content_type.as_deref(), Some("text/plain"));
/// assert!(p.user_properties[0].1 == "pi");
/// let owned: String = MqttString::from("x").into();
/// assert_eq!(owned, "x");
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct MqttString(SmallBytes);

impl MqttString {
    /// The empty string.
    pub const fn new() -> Self {
        Self(SmallBytes::EMPTY)
    }

    /// Wraps bytes already checked to be UTF-8.
    pub(crate) fn from_checked(b: SmallBytes) -> Self {
        Self(b)
    }

    /// The string slice. Checks the bytes are UTF-8 on every call (the
    /// crate forbids `unsafe`): a pass over the bytes, fast for ASCII.
    #[inline]
    pub fn as_str(&self) -> &str {
        // Only UTF-8 ever gets in (constructors take `str`, the decoder
        // validates); the fallback is unreachable.
        core::str::from_utf8(self.0.as_slice()).unwrap_or_default()
    }

    /// The string's bytes (no UTF-8 check: cheaper than `as_str().as_bytes()`).
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_slice()
    }

    /// Length in bytes.
    #[inline]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the string is empty.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends the two-byte length and the string (length checked by the caller).
    #[inline(always)]
    pub(crate) fn put_binary(&self, buf: &mut crate::out::Out<'_>) {
        self.0.put_binary(buf)
    }

    /// The string as `Bytes` (a copy when stored inline).
    pub fn to_bytes(&self) -> Bytes {
        self.0.to_bytes()
    }
}

impl Default for MqttString {
    fn default() -> Self {
        Self::new()
    }
}

impl Deref for MqttString {
    type Target = str;
    #[inline]
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for MqttString {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<[u8]> for MqttString {
    fn as_ref(&self) -> &[u8] {
        self.0.as_slice()
    }
}

impl Borrow<str> for MqttString {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

// Hashes like `str`, as `Borrow<str>` requires.
impl Hash for MqttString {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl From<&str> for MqttString {
    fn from(s: &str) -> Self {
        Self(SmallBytes::copy_from(s.as_bytes()))
    }
}

impl From<&String> for MqttString {
    fn from(s: &String) -> Self {
        Self::from(s.as_str())
    }
}

impl From<String> for MqttString {
    fn from(s: String) -> Self {
        Self(SmallBytes::from_bytes(Bytes::from(s)))
    }
}

impl From<MqttString> for String {
    fn from(s: MqttString) -> Self {
        String::from(s.as_str())
    }
}

impl PartialEq<str> for MqttString {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for MqttString {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for MqttString {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<MqttString> for str {
    fn eq(&self, other: &MqttString) -> bool {
        self == other.as_str()
    }
}

impl PartialEq<MqttString> for &str {
    fn eq(&self, other: &MqttString) -> bool {
        *self == other.as_str()
    }
}

impl PartialEq<MqttString> for String {
    fn eq(&self, other: &MqttString) -> bool {
        self == other.as_str()
    }
}

impl fmt::Debug for MqttString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for MqttString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn short_and_long_strings_behave_alike() {
        for s in ["", "pi", "application/octet-stream", &"x".repeat(100)] {
            let a = MqttString::from(s);
            let b = MqttString::from(s.to_string());
            assert_eq!(a, b);
            assert_eq!(a, s);
            assert_eq!(a.as_str(), s);
            assert_eq!(a.len(), s.len());
            assert_eq!(a.to_string(), s);
            assert_eq!(String::from(b), s);
        }
    }

    #[test]
    fn looks_up_by_str_in_a_map() {
        let mut m = std::collections::HashMap::new();
        m.insert(MqttString::from("key"), 1);
        assert_eq!(m.get("key"), Some(&1));
    }
}
