//! A vector of slots with generations, keyed by typed handles: a handle to
//! a removed entry never reaches the entry that reuses its slot.

use std::marker::PhantomData;

/// A typed handle into a [`Slab`]: a slot and the generation it was made in.
pub(crate) trait Key: Copy + Eq {
    /// The handle of `slot` in `generation`.
    fn from_parts(slot: u32, generation: u32) -> Self;
    /// Its slot.
    fn slot(self) -> u32;
    /// The generation of the slot it was handed out in.
    fn generation(self) -> u32;
}

#[derive(Debug)]
struct Entry<T> {
    generation: u32,
    value: Option<T>,
}

/// Values keyed by `K`; every lookup checks the key's generation.
#[derive(Debug)]
pub(crate) struct Slab<K, T> {
    entries: Vec<Entry<T>>,
    free: Vec<u32>,
    len: usize,
    _key: PhantomData<K>,
}

impl<K, T> Default for Slab<K, T> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
            free: Vec::new(),
            len: 0,
            _key: PhantomData,
        }
    }
}

impl<K: Key, T> Slab<K, T> {
    /// Inserts the value `make(key)` returns, and returns its key.
    pub fn insert(&mut self, make: impl FnOnce(K) -> T) -> K {
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.entries.push(Entry {
                    generation: 0,
                    value: None,
                });
                (self.entries.len() - 1) as u32
            }
        };
        let entry = &mut self.entries[slot as usize];
        let key = K::from_parts(slot, entry.generation);
        entry.value = Some(make(key));
        self.len += 1;
        key
    }

    fn entry(&self, key: K) -> Option<&Entry<T>> {
        self.entries
            .get(key.slot() as usize)
            .filter(|e| e.generation == key.generation())
    }

    /// The value of `key`, if it is still there.
    pub fn get(&self, key: K) -> Option<&T> {
        self.entry(key)?.value.as_ref()
    }

    /// The value of `key`, if it is still there.
    pub fn get_mut(&mut self, key: K) -> Option<&mut T> {
        self.entries
            .get_mut(key.slot() as usize)
            .filter(|e| e.generation == key.generation())?
            .value
            .as_mut()
    }

    /// Removes the value of `key`; the slot's next key has a new generation.
    pub fn remove(&mut self, key: K) -> Option<T> {
        let entry = self
            .entries
            .get_mut(key.slot() as usize)
            .filter(|e| e.generation == key.generation())?;
        let v = entry.value.take()?;
        entry.generation = entry.generation.wrapping_add(1);
        self.free.push(key.slot());
        self.len -= 1;
        Some(v)
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Every value with its key.
    pub fn iter(&self) -> impl Iterator<Item = (K, &T)> {
        self.entries.iter().enumerate().filter_map(|(i, e)| {
            e.value
                .as_ref()
                .map(|v| (K::from_parts(i as u32, e.generation), v))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    struct K(u32, u32);
    impl Key for K {
        fn from_parts(slot: u32, generation: u32) -> Self {
            K(slot, generation)
        }
        fn slot(self) -> u32 {
            self.0
        }
        fn generation(self) -> u32 {
            self.1
        }
    }

    #[test]
    fn a_stale_key_does_not_reach_the_value_that_reuses_its_slot() {
        let mut slab: Slab<K, &str> = Slab::default();
        let a = slab.insert(|_| "a");
        assert_eq!(slab.remove(a), Some("a"));
        let b = slab.insert(|_| "b");
        assert_eq!(a.slot(), b.slot());
        assert_ne!(a, b);
        assert_eq!(slab.get(a), None);
        assert_eq!(slab.remove(a), None);
        assert_eq!(slab.get(b), Some(&"b"));
        assert_eq!(slab.len(), 1);
        assert_eq!(slab.iter().map(|(k, _)| k).collect::<Vec<_>>(), vec![b]);
    }
}
