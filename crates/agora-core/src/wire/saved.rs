//! Saved protocol states: a party's state between two messages of a run
//! that spans program runs (a CPO posted by e-mail, a SPEED purchase paid in
//! a second command). A state is the CBOR array `[version, kind, fields...]`;
//! it is local data, but it is decoded as strictly as peer input, and each
//! crate numbers its own kinds.

use super::{Decoder, Encoder};
use crate::DecodeError;

/// Format version of saved states.
pub const VERSION: u64 = 1;

/// Starts a state of `kind` with `fields` fields after the header.
pub fn start(kind: u64, fields: usize) -> Encoder {
    let mut e = Encoder::new();
    e.array(fields + 2).uint(VERSION).uint(kind);
    e
}

/// Opens a state of `kind` with `fields` fields, at most `max_len` bytes;
/// the caller reads the fields and then calls `finish`.
pub fn open(
    bytes: &[u8],
    kind: u64,
    fields: usize,
    max_len: usize,
) -> Result<Decoder<'_>, DecodeError> {
    if bytes.len() > max_len {
        return Err(DecodeError::TooLarge {
            what: "saved state",
            limit: max_len,
        });
    }
    let mut d = Decoder::new(bytes);
    d.array(fields + 2)?;
    if d.uint()? != VERSION {
        return Err(DecodeError::Invalid("saved state of another version"));
    }
    if d.uint()? != kind {
        return Err(DecodeError::Invalid("saved state of another kind"));
    }
    Ok(d)
}
