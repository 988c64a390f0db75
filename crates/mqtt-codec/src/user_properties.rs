//! The User Property list (0x26) of a 5.0 packet.

use crate::string::MqttString;
use alloc::vec::Vec;
use core::ops::{Deref, DerefMut};

/// One User Property: a name and a value.
pub type UserProperty = (MqttString, MqttString);

/// The User Properties (0x26) of a packet: name-value pairs in the order
/// they were sent; a name may repeat.
///
/// A list of one pair (the common case) is kept inline, so decoding a packet
/// that carries one makes no allocation for the list; from the second pair
/// on the list is a `Vec`. It reads as a slice (`len`, `iter`, indexing)
/// and compares equal to any slice, array or `Vec` with the same pairs:
///
/// ```
/// use mqtt_codec::{MqttString, UserProperties};
/// let mut list = UserProperties::new();
/// list.push(("site".into(), "pi".into()));
/// assert_eq!(list[0].1, "pi");
/// list.push(("site".into(), "laptop".into()));
/// let values: Vec<&str> = list.iter().map(|(_, v)| v.as_str()).collect();
/// assert_eq!(values, ["pi", "laptop"]);
/// let same: UserProperties = vec![
///     (MqttString::from("site"), MqttString::from("pi")),
///     (MqttString::from("site"), MqttString::from("laptop")),
/// ]
/// .into();
/// assert_eq!(list, same);
/// ```
#[derive(Clone)]
pub struct UserProperties(Repr);

#[derive(Clone)]
enum Repr {
    /// No pair or one, inline.
    One(Option<UserProperty>),
    /// Any number of pairs.
    Many(Vec<UserProperty>),
}

impl UserProperties {
    /// The empty list (no allocation).
    pub const fn new() -> Self {
        Self(Repr::One(None))
    }

    /// Appends a pair. The first one is stored inline; the second moves the
    /// list to the heap.
    #[inline]
    pub fn push(&mut self, pair: UserProperty) {
        match &mut self.0 {
            Repr::One(slot @ None) => *slot = Some(pair),
            Repr::One(Some(_)) => self.spill(pair),
            Repr::Many(v) => v.push(pair),
        }
    }

    /// Appends an empty pair and returns it, for a decoder to fill in
    /// place.
    #[inline(always)]
    pub(crate) fn push_empty(&mut self) -> &mut UserProperty {
        let empty = (MqttString::new(), MqttString::new());
        if let Repr::One(Some(_)) = self.0 {
            self.spill(empty);
            return self.as_mut_slice().last_mut().expect("spill pushed a pair");
        }
        match &mut self.0 {
            Repr::One(slot) => slot.insert(empty),
            Repr::Many(v) => {
                v.push(empty);
                let last = v.len() - 1;
                &mut v[last]
            }
        }
    }

    #[cold]
    #[inline(never)]
    fn spill(&mut self, pair: UserProperty) {
        if let Repr::One(first) = &mut self.0 {
            let mut v = Vec::with_capacity(4);
            v.extend(first.take());
            v.push(pair);
            self.0 = Repr::Many(v);
        }
    }

    /// Removes every pair (a list on the heap keeps its capacity).
    pub fn clear(&mut self) {
        match &mut self.0 {
            Repr::One(slot) => *slot = None,
            Repr::Many(v) => v.clear(),
        }
    }

    /// The pairs as a slice.
    #[inline]
    pub fn as_slice(&self) -> &[UserProperty] {
        match &self.0 {
            Repr::One(slot) => slot.as_slice(),
            Repr::Many(v) => v,
        }
    }

    /// The pairs as a mutable slice.
    #[inline]
    pub fn as_mut_slice(&mut self) -> &mut [UserProperty] {
        match &mut self.0 {
            Repr::One(slot) => slot.as_mut_slice(),
            Repr::Many(v) => v,
        }
    }

    /// The pairs as a `Vec`.
    pub fn into_vec(self) -> Vec<UserProperty> {
        match self.0 {
            Repr::One(slot) => slot.into_iter().collect(),
            Repr::Many(v) => v,
        }
    }
}

impl Default for UserProperties {
    fn default() -> Self {
        Self::new()
    }
}

impl Deref for UserProperties {
    type Target = [UserProperty];
    #[inline]
    fn deref(&self) -> &[UserProperty] {
        self.as_slice()
    }
}

impl DerefMut for UserProperties {
    #[inline]
    fn deref_mut(&mut self) -> &mut [UserProperty] {
        self.as_mut_slice()
    }
}

impl core::fmt::Debug for UserProperties {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl PartialEq for UserProperties {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for UserProperties {}

impl PartialEq<[UserProperty]> for UserProperties {
    fn eq(&self, other: &[UserProperty]) -> bool {
        self.as_slice() == other
    }
}

impl<const N: usize> PartialEq<[UserProperty; N]> for UserProperties {
    fn eq(&self, other: &[UserProperty; N]) -> bool {
        self.as_slice() == other
    }
}

impl PartialEq<Vec<UserProperty>> for UserProperties {
    fn eq(&self, other: &Vec<UserProperty>) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl From<Vec<UserProperty>> for UserProperties {
    fn from(v: Vec<UserProperty>) -> Self {
        Self(Repr::Many(v))
    }
}

impl<const N: usize> From<[UserProperty; N]> for UserProperties {
    fn from(pairs: [UserProperty; N]) -> Self {
        pairs.into_iter().collect()
    }
}

impl From<UserProperties> for Vec<UserProperty> {
    fn from(list: UserProperties) -> Self {
        list.into_vec()
    }
}

impl Extend<UserProperty> for UserProperties {
    fn extend<I: IntoIterator<Item = UserProperty>>(&mut self, iter: I) {
        for pair in iter {
            self.push(pair);
        }
    }
}

impl FromIterator<UserProperty> for UserProperties {
    fn from_iter<I: IntoIterator<Item = UserProperty>>(iter: I) -> Self {
        let mut list = Self::new();
        list.extend(iter);
        list
    }
}

impl<'a> IntoIterator for &'a UserProperties {
    type Item = &'a UserProperty;
    type IntoIter = core::slice::Iter<'a, UserProperty>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl<'a> IntoIterator for &'a mut UserProperties {
    type Item = &'a mut UserProperty;
    type IntoIter = core::slice::IterMut<'a, UserProperty>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter_mut()
    }
}

impl IntoIterator for UserProperties {
    type Item = UserProperty;
    type IntoIter = IntoIter;
    fn into_iter(self) -> IntoIter {
        IntoIter(match self.0 {
            Repr::One(slot) => IterRepr::One(slot.into_iter()),
            Repr::Many(v) => IterRepr::Many(v.into_iter()),
        })
    }
}

/// The pairs of a [`UserProperties`], by value.
#[derive(Debug)]
pub struct IntoIter(IterRepr);

#[derive(Debug)]
enum IterRepr {
    One(core::option::IntoIter<UserProperty>),
    Many(alloc::vec::IntoIter<UserProperty>),
}

impl Iterator for IntoIter {
    type Item = UserProperty;
    fn next(&mut self) -> Option<UserProperty> {
        match &mut self.0 {
            IterRepr::One(it) => it.next(),
            IterRepr::Many(it) => it.next(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match &self.0 {
            IterRepr::One(it) => it.size_hint(),
            IterRepr::Many(it) => it.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(k: &str, v: &str) -> UserProperty {
        (k.into(), v.into())
    }

    #[test]
    fn one_pair_stays_inline_and_more_keep_their_order() {
        let mut list = UserProperties::new();
        assert!(list.is_empty());
        list.push(pair("a", "1"));
        assert!(matches!(list.0, Repr::One(Some(_))));
        assert_eq!(list, [pair("a", "1")]);
        list.push(pair("a", "2"));
        list.push(pair("b", "3"));
        assert!(matches!(list.0, Repr::Many(_)));
        assert_eq!(list, [pair("a", "1"), pair("a", "2"), pair("b", "3")]);
        let owned: Vec<_> = list.clone().into_iter().collect();
        assert_eq!(owned, list.into_vec());
    }

    #[test]
    fn lists_with_the_same_pairs_are_equal_however_stored() {
        let inline: UserProperties = [pair("k", "v")].into();
        let heap: UserProperties = alloc::vec![pair("k", "v")].into();
        assert_eq!(inline, heap);
        let mut cleared = heap.clone();
        cleared.clear();
        assert_eq!(cleared, UserProperties::new());
        assert_ne!(cleared, inline);
    }
}
