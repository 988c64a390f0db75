//! Writing a packet of known size straight into a buffer's spare capacity.
//!
//! Every encoder knows a packet's exact size before it writes a byte
//! (`encoded_len` and the encoder share one computation). [`write_packet`]
//! reserves that size once and hands the encoder an [`Out`]: a cursor over
//! the reserved, not yet initialised bytes, whose position lives in a
//! register. Only when the encoder is done does the buffer's length move,
//! once.
//!
//! Why not `BufMut::put_*` on the `BytesMut`: each call updates the buffer's
//! length in memory and re-checks its capacity, and every byte written
//! through the buffer's raw pointer may alias that length, so the calls form
//! one chain through memory; and whether `BytesMut::extend_from_slice` is
//! inlined at each of the dozen call sites of a PUBLISH is up to the
//! optimiser (in the release profile it was not: a call and a `memcpy` per
//! field). `cargo bench --bench codec_loop` measured a small PUBLISH at
//! 10.7 ns (3.1.1) and 51 ns (5.0) with `put_*`, against 13.1 and 30.4 ns
//! for rumqttc; docs/benchmarks.md has the figures with `Out`.
//!
//! The one `unsafe` block of the crate is the commit in [`write_packet`]
//! (`BytesMut::set_len`: `BufMut::advance_mut` would check the capacity
//! again, and `chunk_mut` whether it must grow; a small PUBLISH is ~135
//! instructions, and these were 11 of them). It is sound because an `Out` moves its position forward only over bytes
//! it has just written (and otherwise only back, or not at all when it
//! overwrites a byte), so every byte before the position has been written.

use bytes::buf::UninitSlice;
use bytes::BytesMut;

/// Room reserved past a packet, so an inline string (at most
/// [`crate::small::INLINE`] bytes) can be written as its whole fixed-size
/// block even when it is the last field.
const SLACK: usize = crate::small::INLINE;

/// A cursor over reserved bytes; see the module documentation.
pub(crate) struct Out<'a> {
    chunk: &'a mut UninitSlice,
    /// The position. A packet is at most 268,435,460 bytes (plus
    /// [`SLACK`]), and a `u32` tells the compiler that `at + n` cannot
    /// wrap: each write is then one bounds check instead of two.
    at: u32,
}

/// Appends a packet of `len` bytes to `buf`: reserves `len` (plus
/// [`SLACK`]) once, lets `write` fill it through an [`Out`], then commits
/// the bytes written. On error nothing is appended.
#[inline(always)]
pub(crate) fn write_packet<E>(
    buf: &mut BytesMut,
    len: usize,
    write: impl FnOnce(&mut Out<'_>) -> Result<(), E>,
) -> Result<(), E> {
    buf.reserve(len + SLACK);
    let mut out = Out {
        chunk: UninitSlice::uninit(&mut buf.spare_capacity_mut()[..len + SLACK]),
        at: 0,
    };
    write(&mut out)?;
    let written = out.at as usize;
    debug_assert_eq!(written, len, "encoded_len must match the output");
    let new_len = buf.len() + written;
    // SAFETY: every byte of the spare capacity before an `Out`'s position
    // has been written (see the module documentation), so the `written`
    // bytes after the buffer's length are initialised, and they lie within
    // its capacity: `written` is at most the `len + SLACK` bytes of spare
    // capacity `Out` was given (every write is bounds-checked against them).
    #[allow(unsafe_code)]
    unsafe {
        buf.set_len(new_len)
    };
    Ok(())
}

impl Out<'_> {
    #[inline(always)]
    pub(crate) fn put_u8(&mut self, v: u8) {
        self.chunk.write_byte(self.at as usize, v);
        self.at += 1;
    }

    #[inline(always)]
    pub(crate) fn put_u16(&mut self, v: u16) {
        let at = self.at as usize;
        self.chunk[at..at + 2].copy_from_slice(&v.to_be_bytes());
        self.at += 2;
    }

    #[inline(always)]
    pub(crate) fn put_u32(&mut self, v: u32) {
        let at = self.at as usize;
        self.chunk[at..at + 4].copy_from_slice(&v.to_be_bytes());
        self.at += 4;
    }

    /// How many bytes have been written.
    #[inline(always)]
    pub(crate) fn position(&self) -> usize {
        self.at as usize
    }

    /// Overwrites the byte written at `pos` (`pos < position()`).
    #[inline(always)]
    pub(crate) fn patch_u8(&mut self, pos: usize, v: u8) {
        debug_assert!(pos < self.position());
        self.chunk.write_byte(pos.min(self.position()), v);
    }

    /// Moves back to `pos` (at most the current position), so what follows
    /// is written again from there.
    #[inline(always)]
    pub(crate) fn rewind(&mut self, pos: usize) {
        debug_assert!(pos <= self.position());
        self.at = pos.min(self.position()) as u32;
    }

    /// Copies `s`. Up to 32 bytes this is two overlapping fixed-size copies
    /// (what `memcpy` does for small sizes, without the call).
    #[inline(always)]
    pub(crate) fn put_slice(&mut self, s: &[u8]) {
        let n = s.len();
        let at = self.position();
        let d = &mut self.chunk[at..at + n];
        if (16..=32).contains(&n) {
            d[..16].copy_from_slice(first::<16>(s));
            d[n - 16..].copy_from_slice(first::<16>(&s[n - 16..]));
        } else if (8..16).contains(&n) {
            d[..8].copy_from_slice(first::<8>(s));
            d[n - 8..].copy_from_slice(first::<8>(&s[n - 8..]));
        } else if (4..8).contains(&n) {
            d[..4].copy_from_slice(first::<4>(s));
            d[n - 4..].copy_from_slice(first::<4>(&s[n - 4..]));
        } else {
            d.copy_from_slice(s);
        }
        // `d` fits in the chunk, so the new position fits in a `u32`.
        self.at = (at + n) as u32;
    }

    /// Writes the whole `block` but moves forward by `len` only: the bytes
    /// past `len` are overwritten by the next field (or lie past the packet,
    /// in the slack). `len <= block.len()`.
    #[inline(always)]
    pub(crate) fn put_block(&mut self, block: &[u8; SLACK], len: usize) {
        debug_assert!(len <= SLACK);
        let at = self.position();
        self.chunk[at..at + SLACK].copy_from_slice(block);
        self.at += len.min(SLACK) as u32;
    }
}

/// The first `N` bytes of `s` as an array reference (`s` has at least `N`).
#[inline(always)]
fn first<const N: usize>(s: &[u8]) -> &[u8; N] {
    s[..N].try_into().expect("the caller checked the length")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_slice_length_is_copied_exactly() {
        let src: alloc::vec::Vec<u8> = (0..=80).collect();
        for n in 0..=80 {
            let mut buf = BytesMut::from(&b"xy"[..]);
            write_packet::<()>(&mut buf, n + 3, |o| {
                o.put_u8(0xAA);
                o.put_slice(&src[..n]);
                o.put_u16(0xBBCC);
                Ok(())
            })
            .unwrap();
            let mut want = alloc::vec![b'x', b'y', 0xAA];
            want.extend_from_slice(&src[..n]);
            want.extend_from_slice(&[0xBB, 0xCC]);
            assert_eq!(&buf[..], &want[..], "length {n}");
        }
    }

    #[test]
    fn patched_and_rewritten_bytes_are_what_is_committed() {
        let mut buf = BytesMut::new();
        write_packet::<()>(&mut buf, 4, |o| {
            o.put_u8(0);
            o.put_u16(0xAAAA);
            o.patch_u8(0, 7);
            let at = o.position();
            o.put_u16(0xBBBB);
            o.rewind(at);
            o.put_u8(9);
            Ok(())
        })
        .unwrap();
        assert_eq!(&buf[..], &[7, 0xAA, 0xAA, 9]);
    }

    #[test]
    fn a_block_moves_by_its_length_and_errors_append_nothing() {
        let mut block = [0xEE; SLACK];
        block[..3].copy_from_slice(b"abc");
        let mut buf = BytesMut::new();
        write_packet::<()>(&mut buf, 5, |o| {
            o.put_block(&block, 3);
            o.put_u16(7);
            Ok(())
        })
        .unwrap();
        assert_eq!(&buf[..], b"abc\0\x07");
        let r = write_packet(&mut buf, 4, |o| {
            o.put_u32(1);
            Err("no")
        });
        assert_eq!(r, Err("no"));
        assert_eq!(&buf[..], b"abc\0\x07");
    }
}
