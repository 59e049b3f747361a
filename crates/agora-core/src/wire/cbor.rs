//! Strict deterministic CBOR (RFC 8949 section 4.2.1, "Core Deterministic
//! Encoding Requirements") for agora's wire messages.
//!
//! Hand-written on purpose: no maintained CBOR crate rejects non-canonical
//! input on decode (ciborium and minicbor accept non-shortest heads and
//! indefinite lengths), and agora's decoders must reject everything but the
//! one deterministic encoding of a value (ARCHITECTURE section 3), so that
//! a signed or MACed message has exactly one byte representation.
//!
//! Only the items agora uses exist here: unsigned and signed integers (up to
//! 64 bits), byte strings, text strings, definite-length arrays, `false`,
//! `true` and `null`. The [`Decoder`] rejects, as RFC 8949 section 4.2.1 asks:
//!
//! - heads that are not the shortest form of their argument
//!   ("integers must be as small as possible", also for lengths);
//! - indefinite-length items ("indefinite-length items must be made into
//!   definite-length items");
//!
//! and, because agora never sends them: maps, tags, floating-point values,
//! `undefined` and other simple values. Additional information 28-30 is
//! reserved by RFC 8949 section 3 and never well-formed.
//!
//! Every byte and text string is read with an explicit maximum length, arrays
//! with an exact expected length or a maximum, and nesting is bounded
//! ([`MAX_DEPTH`]). The decoder never panics and never allocates on behalf of
//! the input: strings are borrowed from it.

use crate::DecodeError;

/// Default bound on the nesting of arrays. agora's deepest message (a bound
/// CPO inside a signed envelope field list) nests far less; the bound keeps a
/// hostile input from building deep structures.
pub const MAX_DEPTH: usize = 16;

const MAJOR_UINT: u8 = 0;
const MAJOR_NINT: u8 = 1;
const MAJOR_BYTES: u8 = 2;
const MAJOR_TEXT: u8 = 3;
const MAJOR_ARRAY: u8 = 4;
const MAJOR_TAG: u8 = 6;
const MAJOR_SIMPLE: u8 = 7;

const FALSE: u8 = 0xf4;
const TRUE: u8 = 0xf5;
const NULL: u8 = 0xf6;

/// Builds deterministic CBOR into a `Vec<u8>`. Encoding cannot fail: every
/// head is written in its shortest form and arrays are definite-length (the
/// caller writes exactly as many items as it announced).
#[derive(Debug, Default, Clone)]
pub struct Encoder {
    buf: Vec<u8>,
}

impl Encoder {
    /// An empty encoder.
    pub fn new() -> Encoder {
        Encoder { buf: Vec::new() }
    }

    /// An empty encoder with room for `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> Encoder {
        Encoder {
            buf: Vec::with_capacity(capacity),
        }
    }

    /// The bytes written so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf
    }

    /// The encoded bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// The shortest head for `major` with argument `arg` (RFC 8949 section
    /// 4.2.1: 0-23 in the initial byte, then 1, 2, 4 or 8 bytes).
    fn head(&mut self, major: u8, arg: u64) {
        let m = major << 5;
        if arg < 24 {
            self.buf.push(m | arg as u8);
        } else if let Ok(v) = u8::try_from(arg) {
            self.buf.push(m | 24);
            self.buf.push(v);
        } else if let Ok(v) = u16::try_from(arg) {
            self.buf.push(m | 25);
            self.buf.extend_from_slice(&v.to_be_bytes());
        } else if let Ok(v) = u32::try_from(arg) {
            self.buf.push(m | 26);
            self.buf.extend_from_slice(&v.to_be_bytes());
        } else {
            self.buf.push(m | 27);
            self.buf.extend_from_slice(&arg.to_be_bytes());
        }
    }

    /// An unsigned integer (major type 0).
    pub fn uint(&mut self, v: u64) -> &mut Self {
        self.head(MAJOR_UINT, v);
        self
    }

    /// A signed integer: major type 0 if `v >= 0`, else major type 1 with
    /// argument `-1 - v`.
    pub fn int(&mut self, v: i64) -> &mut Self {
        if v >= 0 {
            self.head(MAJOR_UINT, v.unsigned_abs());
        } else {
            // -1 - v for v < 0 is in 0..=i64::MAX: no overflow.
            self.head(MAJOR_NINT, (-1 - v).unsigned_abs());
        }
        self
    }

    /// A byte string (major type 2).
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.head(MAJOR_BYTES, b.len() as u64);
        self.buf.extend_from_slice(b);
        self
    }

    /// A text string (major type 3).
    pub fn text(&mut self, s: &str) -> &mut Self {
        self.head(MAJOR_TEXT, s.len() as u64);
        self.buf.extend_from_slice(s.as_bytes());
        self
    }

    /// The head of a definite-length array of `len` items (major type 4).
    /// The caller then writes exactly `len` items.
    pub fn array(&mut self, len: usize) -> &mut Self {
        self.head(MAJOR_ARRAY, len as u64);
        self
    }

    /// `false` or `true`.
    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.buf.push(if v { TRUE } else { FALSE });
        self
    }

    /// `null`.
    pub fn null(&mut self) -> &mut Self {
        self.buf.push(NULL);
        self
    }

    /// A CBOR tag head (major type 6). Only for COSE framing
    /// (`COSE_Sign1` is tag 18, `COSE_Mac0` tag 17); agora's own messages
    /// never carry tags and the [`Decoder`] refuses them.
    pub fn tag(&mut self, tag: u64) -> &mut Self {
        self.head(MAJOR_TAG, tag);
        self
    }

    /// Bytes that are already deterministic CBOR (one or more items), such
    /// as an encoded message embedded as an item.
    pub fn raw(&mut self, cbor: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(cbor);
        self
    }

    /// Any [`Field`](super::Field).
    pub fn field<T: super::Field>(&mut self, v: &T) -> &mut Self {
        v.encode(self);
        self
    }
}

/// Reads strict deterministic CBOR from a borrowed slice.
///
/// The decoder keeps the number of items still owed by each open array, so
/// that [`Decoder::finish`] can tell an array read short from trailing bytes,
/// and so that nesting is bounded.
#[derive(Debug, Clone)]
pub struct Decoder<'a> {
    input: &'a [u8],
    pos: usize,
    /// Items still to read in each open array, innermost last.
    open: Vec<u64>,
    max_depth: usize,
}

impl<'a> Decoder<'a> {
    /// A decoder over `input` with the default nesting bound [`MAX_DEPTH`].
    pub fn new(input: &'a [u8]) -> Decoder<'a> {
        Decoder::with_max_depth(input, MAX_DEPTH)
    }

    /// A decoder over `input` allowing `max_depth` nested arrays.
    pub fn with_max_depth(input: &'a [u8], max_depth: usize) -> Decoder<'a> {
        Decoder {
            input,
            pos: 0,
            open: Vec::new(),
            max_depth,
        }
    }

    /// How many bytes have been read.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// How many bytes are left.
    pub fn remaining(&self) -> usize {
        self.input.len().saturating_sub(self.pos)
    }

    /// The current nesting depth: arrays whose items are not all read.
    pub fn depth(&self) -> usize {
        let done = self.open.iter().rev().take_while(|&&n| n == 0).count();
        self.open.len() - done
    }

    /// The input consumed between `start` (an earlier [`position`]) and
    /// now: the exact bytes of the items read in between.
    ///
    /// [`position`]: Decoder::position
    pub fn consumed_since(&self, start: usize) -> &'a [u8] {
        self.input.get(start..self.pos).unwrap_or(&[])
    }

    fn byte(&mut self) -> Result<u8, DecodeError> {
        let b = *self.input.get(self.pos).ok_or(DecodeError::Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).ok_or(DecodeError::Truncated)?;
        let s = self
            .input
            .get(self.pos..end)
            .ok_or(DecodeError::Truncated)?;
        self.pos = end;
        Ok(s)
    }

    fn be_uint(&mut self, n: usize) -> Result<u64, DecodeError> {
        let s = self.take(n)?;
        Ok(s.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    }

    /// Account for one item about to be read in the innermost open array.
    fn start_item(&mut self) {
        while let Some(&0) = self.open.last() {
            self.open.pop();
        }
        if let Some(top) = self.open.last_mut() {
            *top -= 1;
        }
    }

    /// The next byte without consuming it.
    fn peek(&self) -> Result<u8, DecodeError> {
        self.input
            .get(self.pos)
            .copied()
            .ok_or(DecodeError::Truncated)
    }

    /// Reads a head, checking it is well-formed and shortest. Returns the
    /// major type and argument. Major type 7 is returned with its raw
    /// additional information as the argument, for the caller to judge.
    fn head(&mut self) -> Result<(u8, u64), DecodeError> {
        let ib = self.byte()?;
        let major = ib >> 5;
        let ai = ib & 0x1f;
        if major == MAJOR_SIMPLE {
            return match ai {
                0..=23 => Ok((major, u64::from(ai))),
                24 => {
                    let v = self.byte()?;
                    if v < 32 {
                        // RFC 8949 section 3.3: not well-formed.
                        Err(DecodeError::Invalid("simple value below 32 in two bytes"))
                    } else {
                        Err(DecodeError::Unexpected(
                            "no simple values other than false, true, null",
                        ))
                    }
                }
                25..=27 => Err(DecodeError::Unexpected("no floating-point values")),
                28..=30 => Err(DecodeError::Invalid("reserved additional information")),
                _ => Err(DecodeError::NonCanonical("indefinite-length item (break)")),
            };
        }
        let arg = match ai {
            0..=23 => u64::from(ai),
            24 => {
                let v = self.be_uint(1)?;
                if v < 24 {
                    return Err(DecodeError::NonCanonical(
                        "integer head not in shortest form",
                    ));
                }
                v
            }
            25 => {
                let v = self.be_uint(2)?;
                if v <= 0xff {
                    return Err(DecodeError::NonCanonical(
                        "integer head not in shortest form",
                    ));
                }
                v
            }
            26 => {
                let v = self.be_uint(4)?;
                if v <= 0xffff {
                    return Err(DecodeError::NonCanonical(
                        "integer head not in shortest form",
                    ));
                }
                v
            }
            27 => {
                let v = self.be_uint(8)?;
                if v <= 0xffff_ffff {
                    return Err(DecodeError::NonCanonical(
                        "integer head not in shortest form",
                    ));
                }
                v
            }
            28..=30 => return Err(DecodeError::Invalid("reserved additional information")),
            _ => return Err(DecodeError::NonCanonical("indefinite-length item")),
        };
        Ok((major, arg))
    }

    /// Reads the head of the next item, which must be of major type `want`.
    fn expect_head(&mut self, want: u8, what: &'static str) -> Result<u64, DecodeError> {
        self.start_item();
        let (major, arg) = self.head()?;
        // Anything else, maps and tags included, is the wrong item here.
        if major == want {
            Ok(arg)
        } else {
            Err(DecodeError::Unexpected(what))
        }
    }

    /// An unsigned integer.
    pub fn uint(&mut self) -> Result<u64, DecodeError> {
        self.expect_head(MAJOR_UINT, "unsigned integer")
    }

    /// An unsigned integer no greater than `max`.
    pub fn uint_max(&mut self, what: &'static str, max: u64) -> Result<u64, DecodeError> {
        let v = self.uint()?;
        if v > max {
            return Err(DecodeError::Invalid(what));
        }
        Ok(v)
    }

    /// A signed integer in the range of `i64`.
    pub fn int(&mut self) -> Result<i64, DecodeError> {
        self.start_item();
        let (major, arg) = self.head()?;
        let out_of_range = DecodeError::Invalid("integer outside the 64-bit signed range");
        match major {
            MAJOR_UINT => i64::try_from(arg).map_err(|_| out_of_range),
            MAJOR_NINT => {
                let a = i64::try_from(arg).map_err(|_| out_of_range)?;
                Ok(-1 - a)
            }
            _ => Err(DecodeError::Unexpected("integer")),
        }
    }

    fn string_body(
        &mut self,
        len: u64,
        what: &'static str,
        max_len: usize,
    ) -> Result<&'a [u8], DecodeError> {
        let len =
            usize::try_from(len)
                .ok()
                .filter(|&l| l <= max_len)
                .ok_or(DecodeError::TooLarge {
                    what,
                    limit: max_len,
                })?;
        self.take(len)
    }

    /// A byte string of at most `max_len` bytes, borrowed from the input.
    /// `what` names the field in the error.
    pub fn bytes(&mut self, what: &'static str, max_len: usize) -> Result<&'a [u8], DecodeError> {
        let len = self.expect_head(MAJOR_BYTES, "byte string")?;
        self.string_body(len, what, max_len)
    }

    /// A byte string of exactly `N` bytes.
    pub fn bytes_exact<const N: usize>(
        &mut self,
        what: &'static str,
    ) -> Result<[u8; N], DecodeError> {
        let b = self.bytes(what, N)?;
        b.try_into().map_err(|_| DecodeError::Invalid(what))
    }

    /// A UTF-8 text string of at most `max_len` bytes, borrowed from the
    /// input.
    pub fn text(&mut self, what: &'static str, max_len: usize) -> Result<&'a str, DecodeError> {
        let len = self.expect_head(MAJOR_TEXT, "text string")?;
        let b = self.string_body(len, what, max_len)?;
        std::str::from_utf8(b).map_err(|_| DecodeError::Invalid("text string is not UTF-8"))
    }

    fn open_array(&mut self, len: u64) -> Result<(), DecodeError> {
        // Called right after `start_item`: every entry is an enclosing array
        // whose current item is this one, so the stack length is the depth.
        if self.open.len() >= self.max_depth {
            return Err(DecodeError::TooLarge {
                what: "array nesting depth",
                limit: self.max_depth,
            });
        }
        if len > 0 {
            self.open.push(len);
        }
        Ok(())
    }

    /// The head of an array of any length; the caller judges the length
    /// (used where the tag must be checked before the field count).
    pub fn array_any(&mut self) -> Result<u64, DecodeError> {
        let len = self.expect_head(MAJOR_ARRAY, "array")?;
        self.open_array(len)?;
        Ok(len)
    }

    /// The head of an array of exactly `len` items.
    pub fn array(&mut self, len: usize) -> Result<(), DecodeError> {
        let found = self.array_any()?;
        if found != len as u64 {
            return Err(DecodeError::Unexpected("array of another length"));
        }
        Ok(())
    }

    /// The head of an array of at most `max_len` items; returns its length.
    pub fn array_max(&mut self, what: &'static str, max_len: usize) -> Result<usize, DecodeError> {
        let len = self.expect_head(MAJOR_ARRAY, "array")?;
        let n =
            usize::try_from(len)
                .ok()
                .filter(|&l| l <= max_len)
                .ok_or(DecodeError::TooLarge {
                    what,
                    limit: max_len,
                })?;
        self.open_array(len)?;
        Ok(n)
    }

    /// `false` or `true`.
    pub fn bool(&mut self) -> Result<bool, DecodeError> {
        self.start_item();
        match self.head()? {
            (MAJOR_SIMPLE, 20) => Ok(false),
            (MAJOR_SIMPLE, 21) => Ok(true),
            _ => Err(DecodeError::Unexpected("boolean")),
        }
    }

    /// `null`.
    pub fn null(&mut self) -> Result<(), DecodeError> {
        self.start_item();
        match self.head()? {
            (MAJOR_SIMPLE, 22) => Ok(()),
            _ => Err(DecodeError::Unexpected("null")),
        }
    }

    /// Whether the next item is `null` (without consuming it).
    pub fn next_is_null(&self) -> bool {
        self.peek() == Ok(NULL)
    }

    /// Any [`Field`](super::Field).
    pub fn field<T: super::Field>(&mut self) -> Result<T, DecodeError> {
        T::decode(self)
    }

    /// Ends decoding: every array must have been read to its end and no
    /// bytes may follow.
    pub fn finish(mut self) -> Result<(), DecodeError> {
        while let Some(&0) = self.open.last() {
            self.open.pop();
        }
        if !self.open.is_empty() {
            return if self.remaining() == 0 {
                Err(DecodeError::Truncated)
            } else {
                Err(DecodeError::Unexpected("array with fewer items"))
            };
        }
        match self.remaining() {
            0 => Ok(()),
            n => Err(DecodeError::TrailingBytes(n)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(f: impl FnOnce(&mut Encoder)) -> Vec<u8> {
        let mut e = Encoder::new();
        f(&mut e);
        e.into_bytes()
    }

    #[test]
    fn rfc8949_appendix_a_vectors() {
        let cases: &[(u64, &str)] = &[
            (0, "00"),
            (1, "01"),
            (10, "0a"),
            (23, "17"),
            (24, "1818"),
            (25, "1819"),
            (100, "1864"),
            (1000, "1903e8"),
            (1_000_000, "1a000f4240"),
            (1_000_000_000_000, "1b000000e8d4a51000"),
            (u64::MAX, "1bffffffffffffffff"),
        ];
        for &(v, h) in cases {
            assert_eq!(
                hex::encode(enc(|e| {
                    e.uint(v);
                })),
                h
            );
            let b = hex::decode(h).unwrap();
            let mut d = Decoder::new(&b);
            assert_eq!(d.uint().unwrap(), v);
            d.finish().unwrap();
        }
        assert_eq!(
            hex::encode(enc(|e| {
                e.int(-1);
            })),
            "20"
        );
        assert_eq!(
            hex::encode(enc(|e| {
                e.int(-1000);
            })),
            "3903e7"
        );
        assert_eq!(
            hex::encode(enc(|e| {
                e.int(i64::MIN);
            })),
            "3b7fffffffffffffff"
        );
        assert_eq!(
            hex::encode(enc(|e| {
                e.text("IETF");
            })),
            "6449455446"
        );
        assert_eq!(
            hex::encode(enc(|e| {
                e.array(3).uint(1).uint(2).uint(3);
            })),
            "83010203"
        );
        assert_eq!(
            hex::encode(enc(|e| {
                e.bool(false).bool(true).null();
            })),
            "f4f5f6"
        );
    }

    #[test]
    fn rejects_non_canonical_and_foreign_items() {
        let bad: &[(&str, DecodeError)] = &[
            (
                "1817",
                DecodeError::NonCanonical("integer head not in shortest form"),
            ),
            (
                "190017",
                DecodeError::NonCanonical("integer head not in shortest form"),
            ),
            (
                "1a0000ffff",
                DecodeError::NonCanonical("integer head not in shortest form"),
            ),
            (
                "1b00000000ffffffff",
                DecodeError::NonCanonical("integer head not in shortest form"),
            ),
            (
                "1c",
                DecodeError::Invalid("reserved additional information"),
            ),
            ("1f", DecodeError::NonCanonical("indefinite-length item")),
            ("a0", DecodeError::Unexpected("unsigned integer")),
            ("c000", DecodeError::Unexpected("unsigned integer")),
            (
                "f93c00",
                DecodeError::Unexpected("no floating-point values"),
            ),
            ("f7", DecodeError::Unexpected("unsigned integer")),
            ("", DecodeError::Truncated),
            ("19", DecodeError::Truncated),
        ];
        for (h, want) in bad {
            let b = hex::decode(h).unwrap();
            assert_eq!(Decoder::new(&b).uint(), Err(want.clone()), "{h}");
        }
        let b = hex::decode("5f4101ff").unwrap();
        assert_eq!(
            Decoder::new(&b).bytes("b", 10),
            Err(DecodeError::NonCanonical("indefinite-length item"))
        );
        let b = hex::decode("9f01ff").unwrap();
        assert!(matches!(
            Decoder::new(&b).array(1),
            Err(DecodeError::NonCanonical(_))
        ));
        let b = hex::decode("62c328").unwrap();
        assert_eq!(
            Decoder::new(&b).text("t", 10),
            Err(DecodeError::Invalid("text string is not UTF-8"))
        );
        let b = hex::decode("f813").unwrap();
        assert!(matches!(
            Decoder::new(&b).bool(),
            Err(DecodeError::Invalid(_))
        ));
    }

    #[test]
    fn limits_and_trailing_bytes() {
        let b = enc(|e| {
            e.bytes(&[0u8; 11]);
        });
        assert_eq!(
            Decoder::new(&b).bytes("nonce", 10),
            Err(DecodeError::TooLarge {
                what: "nonce",
                limit: 10
            })
        );
        // A huge announced length is refused before reading.
        let b = hex::decode("5bffffffffffffffff").unwrap();
        assert!(matches!(
            Decoder::new(&b).bytes("x", 1 << 20),
            Err(DecodeError::TooLarge { .. })
        ));
        let b = hex::decode("0000").unwrap();
        let mut d = Decoder::new(&b);
        d.uint().unwrap();
        assert_eq!(d.finish(), Err(DecodeError::TrailingBytes(1)));
        let b = hex::decode("820001").unwrap();
        let mut d = Decoder::new(&b);
        d.array(2).unwrap();
        d.uint().unwrap();
        assert_eq!(
            d.finish(),
            Err(DecodeError::Unexpected("array with fewer items"))
        );
        let b = hex::decode("8200").unwrap();
        let mut d = Decoder::new(&b);
        d.array(2).unwrap();
        d.uint().unwrap();
        assert_eq!(d.finish(), Err(DecodeError::Truncated));
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = vec![0x81u8; 100];
        let mut d = Decoder::new(&deep);
        let mut err = None;
        for _ in 0..100 {
            if let Err(e) = d.array(1) {
                err = Some(e);
                break;
            }
        }
        assert_eq!(
            err,
            Some(DecodeError::TooLarge {
                what: "array nesting depth",
                limit: MAX_DEPTH
            })
        );
        // Siblings do not count as depth.
        let flat = enc(|e| {
            e.array(40);
            for _ in 0..40 {
                e.array(1).uint(1);
            }
        });
        let mut d = Decoder::new(&flat);
        assert_eq!(d.array_max("list", 64).unwrap(), 40);
        for _ in 0..40 {
            d.array(1).unwrap();
            assert_eq!(d.uint().unwrap(), 1);
        }
        d.finish().unwrap();
    }
}
