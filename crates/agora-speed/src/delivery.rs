//! The framing of a delivery (SPEED message 4, aggressive message 2) and of
//! a complaint upload, in one place for every party that writes or reads
//! them: the vendor (the node), the customer (the client, the load tool)
//! and the simulator.
//!
//! ```text
//! delivery  = u64 BE length of |Product|_K  ‖  |Product|_K
//!           ‖ u32 BE length of the head     ‖  head (ProductDelivery or AggressiveDelivery, CBOR)
//! complaint = u32 BE length of the message  ‖  message (Complaint, CBOR)  ‖  |Product|_K
//! ```
//!
//! The encrypted product comes first so that the vendor can stream it from
//! its file as it encrypts; the head comes last because the bill in it
//! carries the digest of the encrypted product. Reading is strict: a length
//! over its bound, a stream cut short and bytes after the head are refused.

use crate::product::{Encrypted, HashingWriter};
use std::io::{self, Read, Write};

/// The largest delivery head (a bill, a signature, the key envelope).
pub const MAX_HEAD_LEN: usize = 16 * 1024;
/// The largest complaint message.
pub const MAX_COMPLAINT_LEN: usize = 64 * 1024;

fn invalid(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

fn cut() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "the delivery was cut")
}

/// Writes a delivery to `w`: the length `ct_len` that `encrypt` must write,
/// the encrypted product as `encrypt` writes it, then the head `head` makes
/// from what the encryption gave (the bill carries its digest). Returns `w`.
pub fn write_delivery<W: Write>(
    mut w: W,
    ct_len: u64,
    encrypt: impl FnOnce(W) -> io::Result<(W, Encrypted)>,
    head: impl FnOnce(Encrypted) -> io::Result<Vec<u8>>,
) -> io::Result<W> {
    w.write_all(&ct_len.to_be_bytes())?;
    let (mut w, enc) = encrypt(w)?;
    if enc.len != ct_len {
        return Err(io::Error::other("the product changed while it was sent"));
    }
    let head = head(enc)?;
    let head_len = u32::try_from(head.len())
        .ok()
        .filter(|n| *n as usize <= MAX_HEAD_LEN)
        .ok_or_else(|| invalid("the delivery head is too large"))?;
    w.write_all(&head_len.to_be_bytes())?;
    w.write_all(&head)?;
    w.flush()?;
    Ok(w)
}

/// A whole delivery in memory: `ct` (already encrypted, with what its
/// encryption gave) and `head`.
pub fn delivery_bytes(ct: &[u8], enc: Encrypted, head: &[u8]) -> io::Result<Vec<u8>> {
    let out = Vec::with_capacity(8 + ct.len() + 4 + head.len());
    write_delivery(
        out,
        ct.len() as u64,
        |mut w| {
            w.write_all(ct)?;
            Ok((w, enc))
        },
        |_| Ok(head.to_vec()),
    )
}

/// Reads a delivery from `r`: the encrypted product is written to `sink`
/// (counted and hashed on the way, so the customer can check it against the
/// bill) and must be at most `max_ct` bytes; then the head, at most
/// [`MAX_HEAD_LEN`]; then nothing. Returns the sink, what the product
/// hashed to, and the head.
pub fn read_delivery<W: Write>(
    mut r: impl Read,
    max_ct: u64,
    sink: W,
) -> io::Result<(W, Encrypted, Vec<u8>)> {
    let mut len = [0u8; 8];
    r.read_exact(&mut len).map_err(|_| cut())?;
    let len = u64::from_be_bytes(len);
    if len > max_ct {
        return Err(invalid("the announced product is too large"));
    }
    let mut w = HashingWriter::new(sink);
    let copied = io::copy(&mut (&mut r).take(len), &mut w)?;
    if copied != len {
        return Err(cut());
    }
    let (sink, enc) = w.finish();
    let mut head_len = [0u8; 4];
    r.read_exact(&mut head_len).map_err(|_| cut())?;
    let head_len = u32::from_be_bytes(head_len) as usize;
    if head_len > MAX_HEAD_LEN {
        return Err(invalid("the delivery head is too large"));
    }
    let mut head = vec![0u8; head_len];
    r.read_exact(&mut head).map_err(|_| cut())?;
    let mut more = [0u8; 1];
    loop {
        match r.read(&mut more) {
            Ok(0) => return Ok((sink, enc, head)),
            Ok(_) => return Err(invalid("bytes after the delivery head")),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// The head of a complaint upload: the message's length and the message;
/// the encrypted product follows it.
pub fn complaint_head(message: &[u8]) -> io::Result<Vec<u8>> {
    let len = u32::try_from(message.len())
        .ok()
        .filter(|n| *n as usize <= MAX_COMPLAINT_LEN)
        .ok_or_else(|| invalid("the complaint message is too large"))?;
    let mut head = Vec::with_capacity(4 + message.len());
    head.extend_from_slice(&len.to_be_bytes());
    head.extend_from_slice(message);
    Ok(head)
}

/// Reads the complaint message from the start of an upload; `r` is left at
/// the encrypted product.
pub fn read_complaint_head(mut r: impl Read) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)
        .map_err(|_| io::Error::new(io::ErrorKind::UnexpectedEof, "the complaint was cut"))?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_COMPLAINT_LEN {
        return Err(invalid("the complaint message is too large"));
    }
    let mut msg = vec![0u8; len];
    r.read_exact(&mut msg)
        .map_err(|_| io::Error::new(io::ErrorKind::UnexpectedEof, "the complaint was cut"))?;
    Ok(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc_of(ct: &[u8]) -> Encrypted {
        let mut w = HashingWriter::new(io::sink());
        w.write_all(ct).unwrap_or(());
        w.finish().1
    }

    #[test]
    fn a_delivery_round_trips_and_its_product_is_hashed_on_the_way() {
        let ct = vec![7u8; 100_000];
        let bytes = delivery_bytes(&ct, enc_of(&ct), b"the head").expect("writes");
        let (got, enc, head) = read_delivery(&bytes[..], 1 << 20, Vec::new()).expect("reads");
        assert_eq!(
            (got, enc, head),
            (ct.clone(), enc_of(&ct), b"the head".to_vec())
        );
    }

    #[test]
    fn a_delivery_cut_lengthened_or_over_its_bounds_is_refused() {
        let ct = vec![1u8; 300];
        let bytes = delivery_bytes(&ct, enc_of(&ct), b"head").expect("writes");
        for cut_at in [0, 5, 8, 100, 308, 311, bytes.len() - 1] {
            let e = read_delivery(&bytes[..cut_at], 1 << 20, io::sink()).expect_err("cut");
            assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "cut at {cut_at}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        let e = read_delivery(&longer[..], 1 << 20, io::sink()).expect_err("longer");
        assert_eq!(e.to_string(), "bytes after the delivery head");
        let e = read_delivery(&bytes[..], 299, io::sink()).expect_err("over max_ct");
        assert_eq!(e.to_string(), "the announced product is too large");
        let mut big_head = bytes[..8 + 300].to_vec();
        big_head.extend_from_slice(&((MAX_HEAD_LEN + 1) as u32).to_be_bytes());
        let e = read_delivery(&big_head[..], 1 << 20, io::sink()).expect_err("head");
        assert_eq!(e.to_string(), "the delivery head is too large");
    }

    #[test]
    fn a_writer_whose_product_changed_is_refused() {
        let e = write_delivery(
            Vec::new(),
            10,
            |mut w| {
                w.write_all(&[0; 9])?;
                Ok((w, enc_of(&[0; 9])))
            },
            |_| Ok(vec![]),
        )
        .expect_err("nine bytes where ten were announced");
        assert_eq!(e.to_string(), "the product changed while it was sent");
    }

    #[test]
    fn a_complaint_head_round_trips_and_is_bounded() {
        let head = complaint_head(b"complaint").expect("head");
        let mut r = io::Cursor::new([head.clone(), b"product".to_vec()].concat());
        assert_eq!(read_complaint_head(&mut r).expect("reads"), b"complaint");
        let mut rest = Vec::new();
        r.read_to_end(&mut rest).expect("rest");
        assert_eq!(rest, b"product");
        assert!(complaint_head(&vec![0; MAX_COMPLAINT_LEN + 1]).is_err());
        assert!(read_complaint_head(&head[..head.len() - 1]).is_err());
        let mut big = ((MAX_COMPLAINT_LEN + 1) as u32).to_be_bytes().to_vec();
        big.extend_from_slice(&[0; 16]);
        assert!(read_complaint_head(&big[..]).is_err());
    }
}
