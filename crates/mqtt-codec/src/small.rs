//! Short byte strings kept inline, longer ones shared.
//!
//! Most topic names and string properties are a few dozen bytes. Keeping
//! them inline makes decoding them a fixed-size copy instead of another
//! reference to the packet's buffer (an atomic increment now and an atomic
//! decrement when the packet is dropped), and cloning them a plain copy.

use crate::out::Out;
use bytes::Bytes;
use core::cmp::Ordering;
use core::hash::{Hash, Hasher};

/// Longest value stored inline. With the length byte and the enum tag the
/// type is 40 bytes, 8 more than a `Bytes`.
pub(crate) const INLINE: usize = 32;

/// The inline block, 8-byte aligned so moving a value is four word moves.
#[derive(Clone, Copy)]
#[repr(align(8))]
pub(crate) struct Block(pub(crate) [u8; INLINE]);

/// Bytes stored inline up to [`INLINE`] long, as a shared `Bytes` beyond.
///
/// An inline value may carry unrelated bytes after `len` (the decoder copies
/// a fixed-size block); every method looks only at the first `len`.
#[derive(Clone)]
pub(crate) enum SmallBytes {
    Inline { len: u8, buf: Block },
    Shared(Bytes),
}

impl SmallBytes {
    /// The empty value.
    pub(crate) const EMPTY: Self = Self::Inline {
        len: 0,
        buf: Block([0; INLINE]),
    };

    /// Copies `s` (inline when short).
    #[inline]
    pub(crate) fn copy_from(s: &[u8]) -> Self {
        if s.len() <= INLINE {
            let mut buf = Block([0; INLINE]);
            buf.0[..s.len()].copy_from_slice(s);
            Self::Inline {
                len: s.len() as u8,
                buf,
            }
        } else {
            Self::Shared(Bytes::copy_from_slice(s))
        }
    }

    /// Takes `b`, copying it inline when short.
    pub(crate) fn from_bytes(b: Bytes) -> Self {
        if b.len() <= INLINE {
            Self::copy_from(&b)
        } else {
            Self::Shared(b)
        }
    }

    /// The value at `src[start..start + len]`, where `whole` is the `Bytes`
    /// `src` borrows from: inline by a fixed-size copy when `src` has
    /// [`INLINE`] bytes from `start`, otherwise inline by an exact copy, and
    /// a shared slice of `whole` when longer than [`INLINE`].
    #[inline(always)]
    pub(crate) fn from_wire(whole: &Bytes, start: usize, len: usize) -> Self {
        if len > INLINE {
            return Self::Shared(whole.slice(start..start + len));
        }
        if let Some(block) = whole.get(start..start + INLINE) {
            let mut buf = Block([0; INLINE]);
            buf.0.copy_from_slice(block);
            return Self::Inline {
                len: len as u8,
                buf,
            };
        }
        // Near the end of the packet: the block that ends with the value,
        // shifted down in registers (an exact `memcpy` into a block, read
        // back right away, stalls on store-to-load forwarding).
        match (start + len).checked_sub(INLINE) {
            Some(from) => Self::Inline {
                len: len as u8,
                buf: shifted(&whole[from..start + len], INLINE - len),
            },
            None => Self::copy_from(&whole[start..start + len]),
        }
    }

    /// The value's bytes. (An inline length is at most [`INLINE`]; the
    /// `min` tells the compiler so, and the slice needs no bounds check.)
    #[inline]
    pub(crate) fn as_slice(&self) -> &[u8] {
        match self {
            Self::Inline { len, buf } => &buf.0[..usize::from(*len).min(INLINE)],
            Self::Shared(b) => b,
        }
    }

    /// The value's length, read without making a slice.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        match self {
            Self::Inline { len, .. } => usize::from(*len),
            Self::Shared(b) => b.len(),
        }
    }

    /// Writes the two-byte length and the bytes (the length must fit: the
    /// caller checked it). An inline value is written as its whole block
    /// (one fixed-size copy) and the cursor moves by its length.
    #[inline(always)]
    pub(crate) fn put_binary(&self, out: &mut Out<'_>) {
        match self {
            Self::Inline { len, buf } => {
                out.put_u16(u16::from(*len));
                out.put_block(&buf.0, usize::from(*len));
            }
            Self::Shared(b) => {
                out.put_u16(b.len() as u16);
                out.put_slice(b);
            }
        }
    }

    /// The value as `Bytes` (a copy when inline).
    pub(crate) fn to_bytes(&self) -> Bytes {
        match self {
            Self::Inline { .. } => Bytes::copy_from_slice(self.as_slice()),
            Self::Shared(b) => b.clone(),
        }
    }
}

/// [`scan`] bit: a U+0000 byte.
pub(crate) const NUL: u8 = 0x01;
/// [`scan`] bit: a `+` or `#`.
pub(crate) const WILDCARD: u8 = 0x02;
/// [`scan`] bit: a byte above 0x7F (the string needs the UTF-8 validator).
pub(crate) const NON_ASCII: u8 = 0x80;

/// Which of U+0000, the wildcards and non-ASCII bytes the `len` bytes of
/// `block` from `from` hold, as the bits [`NUL`], [`WILDCARD`] and
/// [`NON_ASCII`]. The loop has a fixed length and compares byte indices,
/// so it compiles to a few 16-byte vector operations without a branch (a
/// loop over the exact bytes ran at a quarter of that width and cost about
/// 5 ns for a 27-byte topic).
#[inline(always)]
fn scan_window(block: &[u8; INLINE], from: usize, len: usize) -> u8 {
    const INDEX: [u8; INLINE] = {
        let mut a = [0; INLINE];
        let mut i = 0;
        while i < INLINE {
            a[i] = i as u8;
            i += 1;
        }
        a
    };
    let (from, len) = (from.min(INLINE) as u8, len.min(INLINE) as u8);
    let mut found = 0;
    for (&i, &c) in INDEX.iter().zip(block) {
        let f = u8::from(c == 0) | (u8::from(c == b'+' || c == b'#') << 1) | (c & NON_ASCII);
        found |= if i.wrapping_sub(from) < len { f } else { 0 };
    }
    found
}

/// [`scan_window`] over any number of bytes.
pub(crate) fn scan(b: &[u8]) -> u8 {
    let mut chunks = b.chunks_exact(INLINE);
    let mut found = 0;
    for chunk in &mut chunks {
        found |= scan_window(chunk.try_into().expect("chunks_exact"), 0, INLINE);
    }
    let rest = chunks.remainder();
    let mut last = [0; INLINE];
    last[..rest.len()].copy_from_slice(rest);
    found | scan_window(&last, 0, rest.len())
}

/// [`scan`] of `whole[start..start + len]`; a value of up to [`INLINE`]
/// bytes is scanned in the fixed-size window of the packet that holds it
/// (the one that starts with it, or near the end the one that ends with it).
#[inline(always)]
pub(crate) fn scan_wire(whole: &[u8], start: usize, len: usize) -> u8 {
    let window = |from: usize| -> &[u8; INLINE] {
        whole[from..from + INLINE]
            .try_into()
            .expect("a window of INLINE bytes")
    };
    let (block, from) = if len > INLINE {
        return scan(&whole[start..start + len]);
    } else if start + INLINE <= whole.len() {
        (window(start), 0)
    } else if start + len >= INLINE {
        (window(start + len - INLINE), INLINE - len)
    } else {
        return scan(&whole[start..start + len]);
    };
    scan_window(block, from, len)
}

/// The 32 bytes of `block` moved down by `by` bytes (the top `by` bytes of
/// the result are zero), computed as two 128-bit integers.
#[inline(always)]
fn shifted(block: &[u8], by: usize) -> Block {
    let word = |i: usize| {
        let mut w = [0; 16];
        w.copy_from_slice(&block[i..i + 16]);
        u128::from_le_bytes(w)
    };
    let (lo, hi) = (word(0), word(16));
    let bits = (by * 8) as u32;
    let (lo, hi) = match bits {
        0 => (lo, hi),
        1..=127 => ((lo >> bits) | (hi << (128 - bits)), hi >> bits),
        128..=255 => (hi >> (bits - 128), 0),
        _ => (0, 0),
    };
    let mut buf = Block([0; INLINE]);
    buf.0[..16].copy_from_slice(&lo.to_le_bytes());
    buf.0[16..].copy_from_slice(&hi.to_le_bytes());
    buf
}

impl core::fmt::Debug for SmallBytes {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Debug::fmt(self.as_slice(), f)
    }
}

impl PartialEq for SmallBytes {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for SmallBytes {}

impl PartialOrd for SmallBytes {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for SmallBytes {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_slice().cmp(other.as_slice())
    }
}

impl Hash for SmallBytes {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_slice().hash(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The flags a byte-by-byte look at `b` finds.
    fn naive(b: &[u8]) -> u8 {
        b.iter().fold(0, |f, &c| {
            f | match c {
                0 => NUL,
                b'+' | b'#' => WILDCARD,
                0x80.. => NON_ASCII,
                _ => 0,
            }
        })
    }

    /// Every value position and length in a packet of 40 bytes (both
    /// windows, values of up to 40 bytes), with a U+0000, a wildcard or a
    /// non-ASCII byte just outside the value, at its edges and inside:
    /// only the bytes of the value count.
    #[test]
    fn a_scan_sees_exactly_the_bytes_of_the_value() {
        let size: usize = 40;
        // Miri (CI runs the unit tests under it) takes every fifth case.
        let step = if cfg!(miri) { 5 } else { 1 };
        for start in (0..=size).step_by(step) {
            for len in (0..=size - start).step_by(step) {
                let spots = [
                    start.wrapping_sub(1),
                    start,
                    start + len / 2,
                    start + len.max(1) - 1,
                    start + len,
                ];
                for spot in spots.into_iter().filter(|&p| p < size) {
                    for byte in [0, b'+', b'#', 0xC3] {
                        let mut whole = alloc::vec![b'a'; size];
                        whole[spot] = byte;
                        let value = &whole[start..start + len];
                        assert_eq!(
                            scan_wire(&whole, start, len),
                            naive(value),
                            "start {start}, length {len}, {byte:#x} at {spot}"
                        );
                        assert_eq!(scan(value), naive(value));
                    }
                }
            }
        }
    }

    #[test]
    fn forty_bytes() {
        assert_eq!(core::mem::size_of::<SmallBytes>(), 40);
    }

    #[test]
    fn equal_whatever_the_storage() {
        let long = [b'a'; INLINE + 1];
        let whole = Bytes::from(long.to_vec());
        for len in [0, 1, INLINE - 1, INLINE, INLINE + 1] {
            let exact = SmallBytes::copy_from(&long[..len]);
            let block = SmallBytes::from_wire(&whole, 0, len);
            let shared = SmallBytes::Shared(Bytes::copy_from_slice(&long[..len]));
            assert_eq!(exact, block);
            assert_eq!(exact, shared);
            assert_eq!(block.as_slice(), &long[..len]);
            assert_eq!(exact.cmp(&shared), Ordering::Equal);
        }
        // Trailing bytes copied with the block do not count.
        let a = SmallBytes::from_wire(
            &Bytes::from_static(b"topic/a-and-then-some-payload-bytes-here"),
            0,
            5,
        );
        let b = SmallBytes::copy_from(b"topic");
        assert_eq!(a, b);
        assert!(matches!(a, SmallBytes::Inline { .. }));
    }

    #[test]
    fn values_near_the_end_are_shifted_into_place() {
        let whole = Bytes::from((0..40u8).collect::<alloc::vec::Vec<_>>());
        for start in 0..=40 {
            for len in 0..=(40 - start).min(INLINE) {
                let v = SmallBytes::from_wire(&whole, start, len);
                assert_eq!(v.as_slice(), &whole[start..start + len], "{start}+{len}");
            }
        }
    }

    #[test]
    fn long_values_share_the_buffer() {
        let whole = Bytes::from(vec![b'x'; 100]);
        let s = SmallBytes::from_wire(&whole, 10, 50);
        match &s {
            SmallBytes::Shared(b) => assert_eq!(b.as_ptr(), whole[10..].as_ptr()),
            SmallBytes::Inline { .. } => panic!("50 bytes must be shared"),
        }
    }
}
