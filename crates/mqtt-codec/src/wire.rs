//! Primitive data types of section 1.5: integers, variable byte integers,
//! UTF-8 strings and binary data, read from a shared `Bytes` without copies.

use crate::error::{DecodeError, EncodeError};
use crate::topic::TopicName;
use crate::types::PacketType;
use alloc::string::String;
use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Largest value of a variable byte integer (and of the remaining length).
pub const MAX_VARIABLE_INTEGER: u32 = 268_435_455;

/// A cursor over the body of one packet.
pub(crate) struct Reader {
    buf: Bytes,
    pos: usize,
    packet: PacketType,
}

impl Reader {
    #[inline]
    pub(crate) fn new(buf: Bytes, packet: PacketType) -> Self {
        Self {
            buf,
            pos: 0,
            packet,
        }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
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
        let b = *self.buf.get(self.pos).ok_or_else(|| self.eof())?;
        self.pos += 1;
        Ok(b)
    }

    #[inline]
    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        let s = self.take_slice(2)?;
        Ok(u16::from_be_bytes([s[0], s[1]]))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        let s = self.take_slice(4)?;
        Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }

    pub(crate) fn variable_integer(&mut self) -> Result<u32, DecodeError> {
        match read_variable_integer(&self.buf[self.pos..]) {
            VarInt::Value(v, n) => {
                self.pos += n;
                Ok(v)
            }
            VarInt::Incomplete => Err(self.eof()),
            VarInt::Malformed => Err(DecodeError::MalformedVariableInteger),
        }
    }

    #[inline]
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
    #[inline]
    pub(crate) fn topic_name(&mut self) -> Result<TopicName, DecodeError> {
        let n = self.u16()? as usize;
        if self.remaining() < n {
            return Err(self.eof());
        }
        let t = TopicName::from_wire(&self.buf, self.pos, n)?;
        self.pos += n;
        Ok(t)
    }

    /// Everything left, taking the buffer (no copy, no new reference).
    #[inline]
    pub(crate) fn into_rest(mut self) -> Bytes {
        self.buf.advance(self.pos);
        self.buf
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

    /// A sub-reader over the next `n` bytes (for properties).
    pub(crate) fn sub(&mut self, n: usize) -> Result<Reader, DecodeError> {
        let b = self.take_bytes(n)?;
        Ok(Reader::new(b, self.packet))
    }
}

/// Checks that `b` is UTF-8 without U+0000.
pub(crate) fn validate_utf8(b: &[u8]) -> Result<&str, DecodeError> {
    let s = core::str::from_utf8(b).map_err(|_| DecodeError::InvalidUtf8)?;
    if b.contains(&0) {
        return Err(DecodeError::NullCharacter);
    }
    Ok(s)
}

pub(crate) enum VarInt {
    Value(u32, usize),
    Incomplete,
    Malformed,
}

/// Reads a variable byte integer from the start of `b` [MQTT-1.5.5].
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
pub(crate) fn variable_integer_len(v: usize) -> usize {
    match v {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

pub(crate) fn put_variable_integer(buf: &mut BytesMut, mut v: usize) {
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
pub(crate) fn put_binary(buf: &mut BytesMut, b: &[u8]) {
    buf.put_u16(b.len() as u16);
    buf.put_slice(b);
}
