//! Primitive data types of section 1.5: integers, variable byte integers,
//! UTF-8 strings and binary data, read from a shared `Bytes` without copies.

use crate::error::{DecodeError, EncodeError};
use crate::out::Out;
use crate::small::{SmallBytes, NON_ASCII, NUL};
use crate::string::MqttString;
use crate::topic::{TopicFilter, TopicName};
use crate::types::PacketType;
use alloc::string::String;
use bytes::Bytes;

/// Largest value of a variable byte integer (and of the remaining length).
pub const MAX_VARIABLE_INTEGER: u32 = 268_435_455;

/// A cursor over the body of one packet.
pub(crate) struct Reader<'a> {
    buf: &'a Bytes,
    pos: usize,
    /// Reads stop here: `buf.len()`, or the end of a property block.
    end: usize,
    packet: PacketType,
}

impl<'a> Reader<'a> {
    #[inline(always)]
    pub(crate) fn new(buf: &'a Bytes, packet: PacketType) -> Self {
        Self::starting_at(buf, 0, packet)
    }

    /// A reader over `buf` from `pos` (past a fixed header that stays in
    /// the buffer: one `advance` fewer than splitting it off first).
    #[inline(always)]
    pub(crate) fn starting_at(buf: &'a Bytes, pos: usize, packet: PacketType) -> Self {
        Self {
            end: buf.len(),
            buf,
            pos,
            packet,
        }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.end - self.pos
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    fn eof(&self) -> DecodeError {
        DecodeError::UnexpectedEnd(self.packet)
    }

    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes(self.packet))
        }
    }

    #[inline]
    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        if self.pos >= self.end {
            return Err(self.eof());
        }
        let b = self.buf[self.pos];
        self.pos += 1;
        Ok(b)
    }

    #[inline(always)]
    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        let s = self.take_slice(2)?;
        Ok(u16::from_be_bytes([s[0], s[1]]))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        let s = self.take_slice(4)?;
        Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }

    /// A variable byte integer inside a packet (a property length or
    /// identifier, a Subscription Identifier). It must use the fewest bytes
    /// its value needs [MQTT-1.5.5-1]: a last byte of 0 after a continuation
    /// byte (`80 00`) is malformed, as Mosquitto also treats it.
    #[inline]
    pub(crate) fn variable_integer(&mut self) -> Result<u32, DecodeError> {
        // Almost always one byte (every property identifier, most lengths).
        match self.peek_u8() {
            Some(b) if b < 0x80 => {
                self.pos += 1;
                Ok(u32::from(b))
            }
            _ => self.long_variable_integer(),
        }
    }

    fn long_variable_integer(&mut self) -> Result<u32, DecodeError> {
        let b = &self.buf[self.pos..self.end];
        match read_variable_integer(b) {
            VarInt::Value(_, n) if n > 1 && b[n - 1] == 0 => {
                Err(DecodeError::MalformedVariableInteger)
            }
            VarInt::Value(v, n) => {
                self.pos += n;
                Ok(v)
            }
            VarInt::Incomplete => Err(self.eof()),
            VarInt::Malformed => Err(DecodeError::MalformedVariableInteger),
        }
    }

    /// The next byte, not consumed.
    #[inline(always)]
    fn peek_u8(&self) -> Option<u8> {
        if self.pos < self.end {
            self.buf.get(self.pos).copied()
        } else {
            None
        }
    }

    #[inline(always)]
    fn take_slice(&mut self, n: usize) -> Result<&[u8], DecodeError> {
        if self.remaining() < n {
            return Err(self.eof());
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// `n` bytes as a shared slice of the packet (no copy).
    #[inline]
    pub(crate) fn take_bytes(&mut self, n: usize) -> Result<Bytes, DecodeError> {
        if self.remaining() < n {
            return Err(self.eof());
        }
        let b = self.buf.slice(self.pos..self.pos + n);
        self.pos += n;
        Ok(b)
    }

    /// A topic name: two-byte length, then the name, validated
    /// (empty allowed; the caller decides).
    #[inline(always)]
    pub(crate) fn topic_name(&mut self) -> Result<TopicName, DecodeError> {
        let (start, n) = self.length_prefixed()?;
        TopicName::from_wire(self.buf, start, n)
    }

    /// A topic filter: two-byte length, then the filter, validated.
    pub(crate) fn topic_filter(&mut self) -> Result<TopicFilter, DecodeError> {
        let (start, n) = self.length_prefixed()?;
        TopicFilter::from_wire(self.buf, start, n)
    }

    /// A two-byte length and the place of the value that follows: its start
    /// and length, checked to be in the packet. The reader moves past it.
    ///
    /// The callers then call the value's reader directly. (They used to pass
    /// it in as a function item, called through a `FnOnce::call_once` shim
    /// that the compiler may keep out of line, returning the topic through
    /// memory: seen in a scratch loop, 5.0 PUBLISH decode 88.5 -> 83.2 ns;
    /// `codec_loop` 88.8 -> 87.2 ns; criterion, which had inlined the shim,
    /// unchanged.)
    #[inline(always)]
    fn length_prefixed(&mut self) -> Result<(usize, usize), DecodeError> {
        let n = self.u16()? as usize;
        if self.remaining() < n {
            return Err(self.eof());
        }
        let start = self.pos;
        self.pos += n;
        Ok((start, n))
    }

    /// How far reading has come (an offset into the buffer).
    #[inline(always)]
    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    /// Binary Data: two-byte length then bytes.
    #[inline]
    pub(crate) fn binary(&mut self) -> Result<Bytes, DecodeError> {
        let n = self.u16()? as usize;
        self.take_bytes(n)
    }

    /// A UTF-8 Encoded String copied into a `String`.
    pub(crate) fn string(&mut self) -> Result<String, DecodeError> {
        let n = self.u16()? as usize;
        let s = self.take_slice(n)?;
        let s = core::str::from_utf8(s).map_err(|_| DecodeError::InvalidUtf8)?;
        if s.contains('\0') {
            return Err(DecodeError::NullCharacter);
        }
        Ok(String::from(s))
    }

    /// A UTF-8 Encoded String without a copy to the heap: inline when
    /// short, a shared slice of the packet when long.
    #[inline(always)]
    pub(crate) fn mqtt_string(&mut self) -> Result<MqttString, DecodeError> {
        let n = self.u16()? as usize;
        if self.remaining() < n {
            return Err(self.eof());
        }
        let start = self.pos;
        validate_utf8(&self.buf[start..start + n])?;
        self.pos += n;
        Ok(MqttString::from_checked(SmallBytes::from_wire(
            self.buf, start, n,
        )))
    }

    /// Limits reads to the next `n` bytes (a property block) and returns
    /// the previous limit for [`Reader::restore`].
    pub(crate) fn limit(&mut self, n: usize) -> Result<usize, DecodeError> {
        if self.remaining() < n {
            return Err(self.eof());
        }
        let previous = self.end;
        self.end = self.pos + n;
        Ok(previous)
    }

    /// Lifts the limit set by [`Reader::limit`].
    pub(crate) fn restore(&mut self, end: usize) {
        self.end = end;
    }
}

/// Checks that `b` is UTF-8 without U+0000: one pass finds U+0000 and
/// non-ASCII bytes; only a string with non-ASCII bytes goes through the
/// UTF-8 validator.
///
/// The pass looks at eight bytes at a time (the last word overlapping the
/// one before when the length is not a multiple of eight): a loop over the
/// bytes took about five instructions a byte, 200 of the ~1,300 a small
/// 5.0 PUBLISH with a content type and a user property took to decode.
#[inline]
pub(crate) fn validate_utf8(b: &[u8]) -> Result<(), DecodeError> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    let (mut zero, mut high) = (0, 0);
    let mut word = |w: u64| {
        // Non-zero exactly when some byte of `w` is 0 (the classic test:
        // a borrow can only mark bytes above a zero byte).
        zero |= w.wrapping_sub(ONES) & !w & HIGH;
        high |= w & HIGH;
    };
    let n = b.len();
    if n >= 8 {
        let mut words = b.chunks_exact(8);
        for w in &mut words {
            word(u64::from_ne_bytes(w.try_into().expect("eight bytes")));
        }
        if !words.remainder().is_empty() {
            word(u64::from_ne_bytes(
                b[n - 8..].try_into().expect("eight bytes"),
            ));
        }
    } else if n >= 4 {
        let half = |i: usize| {
            u64::from(u32::from_ne_bytes(
                b[i..i + 4].try_into().expect("four bytes"),
            ))
        };
        // Both halves in one word; neither half is zero-extended into a
        // false zero byte because each fills four bytes of its own.
        word(half(0) | (half(n - 4) << 32));
    } else {
        for &c in b {
            word(u64::from(c) | (ONES & !0xFF));
        }
    }
    check_text(
        (u8::from(zero != 0) * NUL) | (u8::from(high != 0) * NON_ASCII),
        b,
    )
}

/// The errors a [`crate::small`] scan of the string `b` that `found`
/// describes implies, in the order of the checks: invalid UTF-8 (only a
/// string with non-ASCII bytes goes through the validator), then U+0000.
#[inline(always)]
pub(crate) fn check_text(found: u8, b: &[u8]) -> Result<(), DecodeError> {
    if found & NON_ASCII != 0 && core::str::from_utf8(b).is_err() {
        return Err(DecodeError::InvalidUtf8);
    }
    if found & NUL != 0 {
        return Err(DecodeError::NullCharacter);
    }
    Ok(())
}

pub(crate) enum VarInt {
    Value(u32, usize),
    Incomplete,
    Malformed,
}

/// Reads a variable byte integer from the start of `b` [MQTT-1.5.5].
#[inline]
pub(crate) fn read_variable_integer(b: &[u8]) -> VarInt {
    let mut value: u32 = 0;
    for i in 0..4 {
        let Some(&byte) = b.get(i) else {
            return VarInt::Incomplete;
        };
        value |= u32::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return VarInt::Value(value, i + 1);
        }
    }
    VarInt::Malformed
}

/// Number of bytes the variable byte integer encoding of `v` takes.
#[inline]
pub(crate) fn variable_integer_len(v: usize) -> usize {
    match v {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

#[inline]
pub(crate) fn put_variable_integer(buf: &mut Out<'_>, mut v: usize) {
    if v < 0x80 {
        buf.put_u8(v as u8);
        return;
    }
    loop {
        let mut byte = (v % 128) as u8;
        v /= 128;
        if v > 0 {
            byte |= 0x80;
        }
        buf.put_u8(byte);
        if v == 0 {
            break;
        }
    }
}

pub(crate) fn check_field(len: usize) -> Result<(), EncodeError> {
    if len > u16::MAX as usize {
        Err(EncodeError::FieldTooLong(len))
    } else {
        Ok(())
    }
}

/// Writes a two-byte length and the bytes; the length was checked by `encoded_len`.
#[inline]
pub(crate) fn put_binary(buf: &mut Out<'_>, b: &[u8]) {
    buf.put_u16(b.len() as u16);
    buf.put_slice(b);
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    /// What `validate_utf8` must say, from the standard library.
    fn reference(b: &[u8]) -> Result<(), DecodeError> {
        match core::str::from_utf8(b) {
            Err(_) => Err(DecodeError::InvalidUtf8),
            Ok(s) if s.contains('\0') => Err(DecodeError::NullCharacter),
            Ok(_) => Ok(()),
        }
    }

    /// The word-at-a-time pass agrees with the standard library on every
    /// length up to 40 with one special byte at each place, and on strings
    /// of random bytes drawn mostly from 0x00, 0x01, 0x7F, 0x80 and "é"
    /// (the bytes where a word test could carry or borrow wrongly).
    #[test]
    fn the_word_pass_agrees_with_the_standard_library() {
        // Miri (CI runs the unit tests under it) takes every fourth length.
        let step = if cfg!(miri) { 4 } else { 1 };
        for n in (0..=40).step_by(step) {
            for spot in 0..n {
                for byte in [0x00, 0x01, 0x7F, 0x80, 0xC3, 0xFF] {
                    let mut b = alloc::vec![b'a'; n];
                    b[spot] = byte;
                    assert_eq!(validate_utf8(&b), reference(&b), "{b:?}");
                }
                let mut b = alloc::vec![b'a'; n + 1];
                b[spot..spot + 2].copy_from_slice("é".as_bytes());
                assert_eq!(validate_utf8(&b), Ok(()), "{b:?}");
            }
        }
        let rounds = if cfg!(miri) { 100 } else { 20_000 };
        let mut seed: u32 = 1;
        let mut next = || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            seed >> 8
        };
        for _ in 0..rounds {
            let n = (next() % 20) as usize;
            let b: Vec<u8> = (0..n)
                .map(|_| match next() % 8 {
                    0 => 0x00,
                    1 => 0x01,
                    2 => 0x7F,
                    3 => 0x80,
                    4 => 0xC3,
                    5 => 0xA9,
                    _ => b'a' + (next() % 26) as u8,
                })
                .collect();
            assert_eq!(validate_utf8(&b), reference(&b), "{b:?}");
        }
    }
}
