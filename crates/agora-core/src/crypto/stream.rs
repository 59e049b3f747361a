//! STREAM chunked encryption for long products (ARCHITECTURE section 2: "long
//! products in STREAM chunks (64 KiB, counter nonce, last-chunk flag)").
//!
//! This is the nonce-based online authenticated encryption scheme STREAM of
//! Hoang, Reyhanitabar, Rogaway and Vizár ("Online Authenticated-Encryption
//! and its Nonce-Reuse Misuse-Resistance", CRYPTO 2015), laid out as in age's
//! payload format. The format, byte for byte:
//!
//! ```text
//! stream  = salt chunk* final
//! salt    = 16 random bytes
//! chunk   = AEAD(chunk_key, nonce(i, 0x00), 64 KiB of plaintext)   ; 65552 bytes
//! final   = AEAD(chunk_key, nonce(n, 0x01), 1..=64 KiB of plaintext; 0 only if n = 0)
//! nonce(i, flag) = 11-byte big-endian counter i || flag
//! chunk_key = HKDF-SHA256(ikm = key, salt = salt, info = "agora/stream/v1")
//! ```
//!
//! - Every chunk except the last holds exactly [`CHUNK_LEN`] bytes of
//!   plaintext; the last holds 1 to [`CHUNK_LEN`] bytes, and is empty only if
//!   the whole plaintext is empty.
//! - The AEAD is ChaCha20-Poly1305 by default, or AES-256-GCM
//!   ([`AeadAlg`]); the associated data is empty. The algorithm is not
//!   written in the stream: both sides must agree on it.
//! - Counter overflow (more than 2^88 chunks) is an error, never a wrap.
//!
//! Truncation, reordering, dropping the final chunk, appending data after the
//! final chunk and any bit flip are all detected: the reader reports
//! [`io::ErrorKind::InvalidData`] and never returns a byte of plaintext that
//! has not been authenticated. Plaintext of the chunks before the damage *has*
//! been returned by then: a consumer that must act on the whole product only
//! acts once the reader has reported the end of the stream (`Ok(0)`).
//!
//! Memory is constant: the writer and the reader each hold one chunk (the
//! reader keeps a second copy of a full chunk found at the end of its input,
//! to tell a full final chunk from a stream cut after a full chunk).

use super::{AeadAlg, AeadKey, Rng, Secret, NONCE_LEN, TAG_LEN};
use std::io::{self, Read, Write};
use zeroize::Zeroizing;

/// Plaintext bytes in every chunk but the last: 64 KiB.
pub const CHUNK_LEN: usize = 64 * 1024;
/// Bytes of one full chunk on the wire: plaintext plus the AEAD tag.
pub const ENCRYPTED_CHUNK_LEN: usize = CHUNK_LEN + TAG_LEN;
/// Length of the random salt that starts every stream.
pub const SALT_LEN: usize = 16;
/// HKDF `info` of the chunk key: "agora/stream/v1".
pub const KDF_INFO: &[u8] = b"agora/stream/v1";
/// Bytes of the big-endian chunk counter in the nonce.
const COUNTER_LEN: usize = NONCE_LEN - 1;
/// The largest chunk counter: the counter is 11 bytes (88 bits).
const MAX_COUNTER: u128 = (1u128 << (8 * COUNTER_LEN)) - 1;

/// The first chunk buffer of a reader: small products (a key, a licence
/// text) need no more, and larger ones grow it to a full chunk.
const FIRST_READ: usize = 1024;

/// Makes room for `cap` bytes in `buf` without leaving a copy behind: a
/// `Vec` that reallocates frees its old block unwiped, so the contents are
/// moved to a new block and the old one is wiped (dropped as `Zeroizing`).
fn reserve_wiped(buf: &mut Zeroizing<Vec<u8>>, cap: usize) {
    if buf.capacity() < cap {
        let mut grown = Vec::with_capacity(cap);
        grown.extend_from_slice(buf);
        *buf = Zeroizing::new(grown);
    }
}

/// Length of the stream that encrypts `plaintext_len` bytes: the salt, then
/// one tag per chunk (at least one chunk, even for an empty plaintext).
pub fn ciphertext_len(plaintext_len: u64) -> u64 {
    let chunk = CHUNK_LEN as u64;
    let chunks = plaintext_len.div_ceil(chunk).max(1);
    SALT_LEN as u64 + plaintext_len + chunks * TAG_LEN as u64
}

/// `nonce(i, flag) = 11-byte big-endian counter i || flag`, with flag 0x01 on
/// the final chunk. The caller has checked `counter <= MAX_COUNTER`.
fn nonce(counter: u128, last: bool) -> [u8; NONCE_LEN] {
    let mut n = [0u8; NONCE_LEN];
    let be = counter.to_be_bytes();
    n[..COUNTER_LEN].copy_from_slice(&be[be.len() - COUNTER_LEN..]);
    n[COUNTER_LEN] = u8::from(last);
    n
}

/// `chunk_key = HKDF-SHA256(ikm = key, salt = salt, info = "agora/stream/v1")`.
fn chunk_key(alg: AeadAlg, key: &Secret<32>, salt: &[u8; SALT_LEN]) -> io::Result<AeadKey> {
    let mut k = Zeroizing::new([0u8; 32]);
    super::hkdf_sha256(salt, key.expose(), KDF_INFO, k.as_mut())
        .map_err(|_| io::Error::other("STREAM key derivation failed"))?;
    Ok(AeadKey::new(alg, &Secret::new(*k)))
}

fn invalid(msg: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Encrypts a byte stream into the STREAM format (see the module docs).
///
/// Plaintext is buffered until a chunk is full *and* more plaintext arrives,
/// because only [`StreamWriter::finish`] knows which chunk is the last. A
/// writer dropped without `finish` leaves a stream without a final chunk,
/// which every reader rejects. After an error from the inner writer the
/// `StreamWriter` refuses further use (part of a chunk may have been written).
pub struct StreamWriter<W: Write> {
    key: AeadKey,
    inner: W,
    /// Plaintext of the current chunk; sealed in place. It grows with what
    /// is written, up to one encrypted chunk, always with room for the tag,
    /// so that a short product costs a short buffer. Wiped on drop.
    buf: Zeroizing<Vec<u8>>,
    /// Counter of the current chunk.
    counter: u128,
    failed: bool,
}

impl<W: Write> StreamWriter<W> {
    /// Starts a stream under `key`: draws a fresh 16-byte salt from `rng`,
    /// writes it to `inner` as the header and derives the chunk key
    /// `HKDF-SHA256(ikm = key, salt, info = "agora/stream/v1")`.
    pub fn new(
        rng: &mut impl Rng,
        alg: AeadAlg,
        key: &Secret<32>,
        mut inner: W,
    ) -> io::Result<Self> {
        let salt: [u8; SALT_LEN] = super::random_bytes(rng);
        let key = chunk_key(alg, key, &salt)?;
        inner.write_all(&salt)?;
        Ok(StreamWriter {
            key,
            inner,
            buf: Zeroizing::new(Vec::new()),
            counter: 0,
            failed: false,
        })
    }

    /// Seals the buffered plaintext as chunk `counter` (the final one if
    /// `last`) and writes it out.
    fn write_chunk(&mut self, last: bool) -> io::Result<()> {
        if self.failed {
            return Err(io::Error::other(
                "STREAM writer unusable after an earlier error",
            ));
        }
        if self.counter > MAX_COUNTER {
            self.failed = true;
            return Err(io::Error::other("STREAM chunk counter overflow"));
        }
        // Room for the tag: sealing must not reallocate (and leave plaintext
        // behind in a freed block).
        let need = self.buf.len() + TAG_LEN;
        reserve_wiped(&mut self.buf, need);
        self.key
            .seal_in_place(&nonce(self.counter, last), &[], &mut self.buf);
        if let Err(e) = self.inner.write_all(&self.buf) {
            self.failed = true;
            return Err(e);
        }
        self.buf.clear();
        self.counter += 1;
        Ok(())
    }

    /// Seals and writes the final chunk (flag 0x01), flushes, and returns the
    /// inner writer. Without this call the stream is invalid.
    pub fn finish(mut self) -> io::Result<W> {
        self.write_chunk(true)?;
        self.inner.flush()?;
        Ok(self.inner)
    }

    /// Test hook: start the chunk counter at `counter`.
    #[cfg(test)]
    fn set_counter_for_testing_only(&mut self, counter: u128) {
        self.counter = counter;
    }
}

impl<W: Write> Write for StreamWriter<W> {
    /// Buffers up to the end of the current chunk; a full chunk is sealed
    /// (as not the last) when more plaintext arrives.
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.failed {
            return Err(io::Error::other(
                "STREAM writer unusable after an earlier error",
            ));
        }
        if data.is_empty() {
            return Ok(0);
        }
        if self.buf.len() == CHUNK_LEN {
            self.write_chunk(false)?;
        }
        let n = data.len().min(CHUNK_LEN - self.buf.len());
        let need = self.buf.len() + n + TAG_LEN;
        if self.buf.capacity() < need {
            let grown = need.max(2 * self.buf.capacity()).min(ENCRYPTED_CHUNK_LEN);
            reserve_wiped(&mut self.buf, grown);
        }
        self.buf.extend_from_slice(&data[..n]);
        Ok(n)
    }

    /// Flushes the inner writer. Buffered plaintext of the current chunk
    /// stays buffered: a chunk is only sealed once it is known to be full,
    /// or by [`StreamWriter::finish`].
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<W: Write> std::fmt::Debug for StreamWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamWriter")
            .field("alg", &self.key.alg())
            .field("chunk", &self.counter)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReadState {
    /// More chunks to come.
    Reading,
    /// The final chunk was authenticated and the inner reader is at its end.
    Done,
    /// An error was reported; every later read reports it again.
    Failed,
}

/// Decrypts a STREAM (see the module docs), one chunk at a time.
///
/// To know whether a full chunk is the last one, the reader looks one byte
/// ahead: a full chunk followed by more data is opened with flag 0x00, a
/// chunk followed by the end of the inner reader with flag 0x01.
///
/// Errors of kind [`io::ErrorKind::InvalidData`]: a chunk fails
/// authentication (tampering, reordering, wrong key or algorithm, data after
/// the final chunk), or the stream ends without a final chunk (truncation).
/// After an error, every later read fails too; this includes errors of the
/// inner reader (other than `Interrupted`), so it must be a blocking reader.
pub struct StreamReader<R: Read> {
    key: AeadKey,
    inner: R,
    /// The current chunk: ciphertext while it is read, then its
    /// authenticated plaintext. It starts at [`FIRST_READ`] bytes and grows
    /// (wiping what it leaves) up to one encrypted chunk and a byte. Wiped
    /// on drop.
    buf: Zeroizing<Vec<u8>>,
    /// Bytes of `buf` already returned.
    pos: usize,
    /// The first byte of the next chunk, read to know that one follows.
    lookahead: Option<u8>,
    /// Counter of the next chunk to open.
    counter: u128,
    state: ReadState,
}

impl<R: Read> StreamReader<R> {
    /// Reads the 16-byte salt header from `inner` and derives the chunk key.
    /// A header cut short is [`io::ErrorKind::InvalidData`].
    pub fn new(alg: AeadAlg, key: &Secret<32>, mut inner: R) -> io::Result<Self> {
        let mut salt = [0u8; SALT_LEN];
        inner.read_exact(&mut salt).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => invalid("STREAM header truncated"),
            _ => e,
        })?;
        Ok(StreamReader {
            key: chunk_key(alg, key, &salt)?,
            inner,
            buf: Zeroizing::new(Vec::new()),
            pos: 0,
            lookahead: None,
            counter: 0,
            state: ReadState::Reading,
        })
    }

    /// The inner reader. Only meaningful once the stream has been read to
    /// its end.
    pub fn into_inner(self) -> R {
        self.inner
    }

    /// Reads and authenticates the next chunk into `buf`.
    fn next_chunk(&mut self) -> io::Result<()> {
        // Read one full encrypted chunk plus one byte, or up to the end,
        // into a window that grows as it fills.
        const WANT: usize = ENCRYPTED_CHUNK_LEN + 1;
        let window = self.buf.capacity().clamp(FIRST_READ, WANT);
        reserve_wiped(&mut self.buf, window);
        self.buf.resize(window, 0);
        let mut filled = 0;
        if let Some(b) = self.lookahead.take() {
            self.buf[0] = b;
            filled = 1;
        }
        loop {
            if filled == self.buf.len() {
                if filled == WANT {
                    break;
                }
                let grown = (2 * filled).min(WANT);
                reserve_wiped(&mut self.buf, grown);
                self.buf.resize(grown, 0);
            }
            match self.inner.read(&mut self.buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.buf.clear();
                    return Err(e);
                }
            }
        }
        let last = filled <= ENCRYPTED_CHUNK_LEN;
        if !last {
            self.lookahead = Some(self.buf[ENCRYPTED_CHUNK_LEN]);
            filled = ENCRYPTED_CHUNK_LEN;
        }
        self.buf.truncate(filled);
        if filled == 0 {
            return Err(invalid("STREAM ended without a final chunk"));
        }
        if filled < TAG_LEN {
            return Err(invalid("STREAM truncated inside a chunk"));
        }
        if self.counter > MAX_COUNTER {
            return Err(invalid("STREAM chunk counter overflow"));
        }
        // A full chunk at the end of the input is either a full final chunk
        // or a non-final chunk whose successors were cut off. Keep its
        // ciphertext (once per stream) to tell the two apart on failure.
        let retry =
            (last && filled == ENCRYPTED_CHUNK_LEN).then(|| Zeroizing::new(self.buf.to_vec()));
        // open_in_place clears the buffer on failure: nothing unauthenticated
        // is ever readable.
        if self
            .key
            .open_in_place(&nonce(self.counter, last), &[], &mut self.buf)
            .is_err()
        {
            if let Some(mut ct) = retry {
                if self
                    .key
                    .open_in_place(&nonce(self.counter, false), &[], &mut ct)
                    .is_ok()
                {
                    return Err(invalid("STREAM ended without a final chunk"));
                }
            }
            return Err(invalid("STREAM chunk failed authentication"));
        }
        if last && self.buf.is_empty() && self.counter != 0 {
            // Only the empty plaintext has an empty final chunk.
            self.buf.clear();
            return Err(invalid("STREAM has an empty final chunk after data"));
        }
        self.counter += 1;
        self.pos = 0;
        if last {
            self.state = ReadState::Done;
        }
        Ok(())
    }

    /// Test hook: start the chunk counter at `counter`.
    #[cfg(test)]
    fn set_counter_for_testing_only(&mut self, counter: u128) {
        self.counter = counter;
    }
}

impl<R: Read> Read for StreamReader<R> {
    /// Returns authenticated plaintext only; `Ok(0)` once the final chunk has
    /// been authenticated and the inner reader has ended.
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            if self.pos < self.buf.len() {
                let n = out.len().min(self.buf.len() - self.pos);
                out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
                self.pos += n;
                return Ok(n);
            }
            match self.state {
                ReadState::Done => return Ok(0),
                ReadState::Failed => {
                    return Err(invalid("STREAM reader unusable after an earlier error"))
                }
                ReadState::Reading => {
                    if let Err(e) = self.next_chunk() {
                        self.state = ReadState::Failed;
                        self.buf.clear();
                        self.pos = 0;
                        return Err(e);
                    }
                }
            }
        }
    }
}

impl<R: Read> std::fmt::Debug for StreamReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamReader")
            .field("alg", &self.key.alg())
            .field("chunk", &self.counter)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

/// Encrypts `plaintext` into a complete STREAM (salt header from `rng`).
pub fn encrypt_to_vec(
    rng: &mut impl Rng,
    alg: AeadAlg,
    key: &Secret<32>,
    plaintext: &[u8],
) -> crate::Result<Vec<u8>> {
    let len = usize::try_from(ciphertext_len(plaintext.len() as u64))
        .map_err(|_| crate::Error::ApiMisuse("STREAM plaintext too long"))?;
    let mut w = StreamWriter::new(rng, alg, key, Vec::with_capacity(len))
        .map_err(|_| crate::Error::ApiMisuse("STREAM key derivation failed"))?;
    // Writing to a Vec cannot fail, nor can a slice reach 2^88 chunks.
    w.write_all(plaintext)
        .and_then(|()| w.finish())
        .map_err(|_| crate::Error::ApiMisuse("STREAM encryption to memory failed"))
}

/// Decrypts a complete STREAM held in memory. Any failure (tampering,
/// truncation, trailing data, wrong key) is [`crate::Error::Crypto`], without
/// detail.
pub fn decrypt_from_slice(alg: AeadAlg, key: &Secret<32>, stream: &[u8]) -> crate::Result<Vec<u8>> {
    let mut r = StreamReader::new(alg, key, stream).map_err(|_| crate::Error::Crypto)?;
    let mut out = Vec::with_capacity(stream.len().saturating_sub(SALT_LEN));
    r.read_to_end(&mut out).map_err(|_| crate::Error::Crypto)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::{RngCore, SeedableRng};

    const ALGS: [AeadAlg; 2] = [AeadAlg::ChaCha20Poly1305, AeadAlg::Aes256Gcm];

    fn rng(seed: u64) -> rand_chacha::ChaCha20Rng {
        rand_chacha::ChaCha20Rng::seed_from_u64(seed)
    }

    fn key() -> Secret<32> {
        Secret::new([0x42; 32])
    }

    fn plaintext(len: usize) -> Vec<u8> {
        let mut p = vec![0u8; len];
        rng(len as u64).fill_bytes(&mut p);
        p
    }

    fn encrypt(alg: AeadAlg, pt: &[u8]) -> Vec<u8> {
        encrypt_to_vec(&mut rng(1), alg, &key(), pt).unwrap()
    }

    /// Reads the whole stream; returns the plaintext read before the error.
    fn decrypt_partial(alg: AeadAlg, ct: &[u8]) -> (Vec<u8>, io::Result<()>) {
        let mut out = Vec::new();
        let r = StreamReader::new(alg, &key(), ct).and_then(|mut r| r.read_to_end(&mut out));
        (out, r.map(|_| ()))
    }

    fn assert_invalid(alg: AeadAlg, ct: &[u8], what: &str) {
        let (_, r) = decrypt_partial(alg, ct);
        let e = r.expect_err(what);
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{what}: {e}");
        assert_eq!(
            decrypt_from_slice(alg, &key(), ct),
            Err(crate::Error::Crypto),
            "{what}"
        );
    }

    fn assert_no_final(alg: AeadAlg, ct: &[u8]) {
        let (_, r) = decrypt_partial(alg, ct);
        let e = r.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert_eq!(e.to_string(), "STREAM ended without a final chunk");
        assert_invalid(alg, ct, "no final chunk");
    }

    /// Splits a stream into its salt and its encrypted chunks.
    fn chunks(ct: &[u8]) -> (&[u8], Vec<&[u8]>) {
        (
            &ct[..SALT_LEN],
            ct[SALT_LEN..].chunks(ENCRYPTED_CHUNK_LEN).collect(),
        )
    }

    /// Around the chunk boundaries, and around the sizes at which the
    /// writer's and the reader's buffers grow (from [`FIRST_READ`] bytes,
    /// doubling).
    const SIZES: [usize; 10] = [
        0,
        1,
        FIRST_READ - TAG_LEN,
        FIRST_READ - TAG_LEN + 1,
        2 * FIRST_READ + 3,
        5000,
        CHUNK_LEN - 1,
        CHUNK_LEN,
        CHUNK_LEN + 1,
        3 * CHUNK_LEN,
    ];

    #[test]
    fn round_trip_sizes_both_algorithms() {
        for alg in ALGS {
            for len in SIZES {
                let pt = plaintext(len);
                let ct = encrypt(alg, &pt);
                assert_eq!(ct.len() as u64, ciphertext_len(len as u64), "{alg:?} {len}");
                let want_chunks = len.div_ceil(CHUNK_LEN).max(1);
                assert_eq!(chunks(&ct).1.len(), want_chunks, "{alg:?} {len}");
                assert_eq!(
                    decrypt_from_slice(alg, &key(), &ct).unwrap(),
                    pt,
                    "{alg:?} {len}"
                );
            }
        }
    }

    #[test]
    fn round_trip_with_odd_write_and_read_sizes() {
        for alg in ALGS {
            for len in SIZES {
                let pt = plaintext(len);
                // Writes of 1000 bytes, then one big write of the rest.
                let mut w = StreamWriter::new(&mut rng(1), alg, &key(), Vec::new()).unwrap();
                let split = len.min(7000);
                for piece in pt[..split].chunks(1000) {
                    w.write_all(piece).unwrap();
                }
                w.write_all(&pt[split..]).unwrap();
                w.write_all(&[]).unwrap();
                w.flush().unwrap();
                let ct = w.finish().unwrap();
                // Same rng, same bytes as the one-shot encryption.
                assert_eq!(ct, encrypt(alg, &pt), "{alg:?} {len}");
                // Reads of 777 bytes.
                let mut r = StreamReader::new(alg, &key(), ct.as_slice()).unwrap();
                let mut out = Vec::new();
                let mut piece = [0u8; 777];
                loop {
                    let n = r.read(&mut piece).unwrap();
                    if n == 0 {
                        break;
                    }
                    out.extend_from_slice(&piece[..n]);
                }
                assert_eq!(out, pt, "{alg:?} {len}");
                assert_eq!(r.read(&mut piece).unwrap(), 0);
            }
        }
    }

    /// Rebuilds a stream from the primitives, following the format in the
    /// module docs, and compares it with the writer's output.
    #[test]
    fn stream_format_matches_spec() {
        let pt = plaintext(2 * CHUNK_LEN + 5);
        for alg in ALGS {
            let ct = encrypt(alg, &pt);
            let salt: [u8; SALT_LEN] = super::super::random_bytes(&mut rng(1));
            let mut ck = [0u8; 32];
            crate::crypto::hkdf_sha256(&salt, &[0x42; 32], b"agora/stream/v1", &mut ck).unwrap();
            let aead = AeadKey::new(alg, &Secret::new(ck));
            let mut want = salt.to_vec();
            for (i, piece) in pt.chunks(CHUNK_LEN).enumerate() {
                let mut n = [0u8; 12];
                n[10] = i as u8;
                n[11] = u8::from(i == 2);
                want.extend_from_slice(&aead.seal(&n, b"", piece));
            }
            assert_eq!(ct, want, "{alg:?}");
        }
        // The empty plaintext: one empty final chunk with counter 0.
        let ct = encrypt(AeadAlg::ChaCha20Poly1305, b"");
        assert_eq!(ct.len(), SALT_LEN + TAG_LEN);
        assert_eq!(nonce(0, true), [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(nonce(0x0102, false), [0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 0]);
        assert_eq!(
            nonce(MAX_COUNTER, true),
            [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1]
        );
    }

    #[test]
    fn fresh_salt_per_stream() {
        let a = encrypt_to_vec(&mut rng(1), AeadAlg::ChaCha20Poly1305, &key(), b"x").unwrap();
        let b = encrypt_to_vec(&mut rng(2), AeadAlg::ChaCha20Poly1305, &key(), b"x").unwrap();
        assert_ne!(a[..SALT_LEN], b[..SALT_LEN]);
        assert_ne!(a[SALT_LEN..], b[SALT_LEN..]);
    }

    #[test]
    fn stream_truncated() {
        for alg in ALGS {
            // Every truncation of a small stream.
            let ct = encrypt(alg, &plaintext(40));
            for cut in 0..ct.len() {
                assert_invalid(alg, &ct[..cut], &format!("{alg:?} cut at {cut}"));
            }
            // Truncations of a multi-chunk stream around the chunk boundaries.
            let ct = encrypt(alg, &plaintext(2 * CHUNK_LEN + 100));
            let b1 = SALT_LEN + ENCRYPTED_CHUNK_LEN;
            let b2 = b1 + ENCRYPTED_CHUNK_LEN;
            for cut in [
                0,
                1,
                SALT_LEN,
                SALT_LEN + 1,
                SALT_LEN + TAG_LEN,
                b1 - 1,
                b1,
                b1 + 1,
                b2 - 1,
                b2,
                b2 + 15,
                b2 + 16,
                ct.len() - 1,
            ] {
                assert_invalid(alg, &ct[..cut], &format!("{alg:?} cut at {cut}"));
            }
        }
    }

    #[test]
    fn stream_no_final() {
        for alg in ALGS {
            // A partial final chunk dropped: the stream ends on a chunk
            // boundary after full, non-final chunks.
            let ct = encrypt(alg, &plaintext(2 * CHUNK_LEN + 5));
            let (salt, cs) = chunks(&ct);
            assert_eq!(cs.len(), 3);
            let no_final = [salt, cs[0], cs[1]].concat();
            let (out, r) = decrypt_partial(alg, &no_final);
            let e = r.unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidData);
            assert_eq!(e.to_string(), "STREAM ended without a final chunk");
            // The chunks before the end come out; the chunk at the end is
            // withheld (it is authentic, but the stream is not).
            assert_eq!(out, plaintext(2 * CHUNK_LEN + 5)[..CHUNK_LEN]);
            assert_no_final(alg, &no_final);
            // A full final chunk dropped.
            let ct = encrypt(alg, &plaintext(3 * CHUNK_LEN));
            let (salt, cs) = chunks(&ct);
            assert_no_final(alg, &[salt, cs[0], cs[1]].concat());
            assert_no_final(alg, &[salt, cs[0]].concat());
            // Only the header.
            assert_no_final(alg, salt);
        }
    }

    #[test]
    fn stream_writer_dropped_without_finish() {
        for alg in ALGS {
            for len in SIZES {
                let mut sink = Vec::new();
                let mut w = StreamWriter::new(&mut rng(1), alg, &key(), &mut sink).unwrap();
                w.write_all(&plaintext(len)).unwrap();
                drop(w);
                // Only the header and full, non-final chunks reached the sink.
                assert_no_final(alg, &sink);
            }
        }
    }

    #[test]
    fn stream_reordered_chunks() {
        for alg in ALGS {
            let pt = plaintext(3 * CHUNK_LEN + 10);
            let ct = encrypt(alg, &pt);
            let (salt, cs) = chunks(&ct);
            assert_eq!(cs.len(), 4);
            for order in [[1, 0, 2, 3], [0, 2, 1, 3], [0, 1, 3, 2], [3, 1, 2, 0]] {
                let re: Vec<u8> = std::iter::once(salt)
                    .chain(order.iter().map(|&i| cs[i]))
                    .collect::<Vec<_>>()
                    .concat();
                let (out, r) = decrypt_partial(alg, &re);
                assert_eq!(
                    r.unwrap_err().kind(),
                    io::ErrorKind::InvalidData,
                    "{order:?}"
                );
                // Only the chunks before the first misplaced one come out.
                let good = order
                    .iter()
                    .enumerate()
                    .take_while(|&(j, &i)| j == i)
                    .count();
                assert_eq!(out, pt[..good * CHUNK_LEN], "{order:?}");
            }
            // A chunk repeated, or a chunk left out.
            assert_invalid(
                alg,
                &[salt, cs[0], cs[0], cs[1], cs[2], cs[3]].concat(),
                "repeated",
            );
            assert_invalid(alg, &[salt, cs[0], cs[2], cs[3]].concat(), "left out");
        }
    }

    #[test]
    fn stream_bit_flip() {
        for alg in ALGS {
            // Every bit of a small stream (salt, ciphertext and tag).
            let ct = encrypt(alg, &plaintext(50));
            for byte in 0..ct.len() {
                for bit in 0..8 {
                    let mut bad = ct.clone();
                    bad[byte] ^= 1 << bit;
                    assert_invalid(alg, &bad, &format!("{alg:?} flip {byte}.{bit}"));
                }
            }
            // Positions in every chunk of a multi-chunk stream: no plaintext
            // of the damaged chunk or after it is returned.
            let pt = plaintext(2 * CHUNK_LEN + 300);
            let ct = encrypt(alg, &pt);
            let starts = [
                SALT_LEN,
                SALT_LEN + ENCRYPTED_CHUNK_LEN,
                SALT_LEN + 2 * ENCRYPTED_CHUNK_LEN,
            ];
            for pos in [
                0,
                15,
                starts[0],
                starts[0] + 1000,
                starts[1] - 1,
                starts[1],
                starts[2] - 3,
                starts[2],
                ct.len() - 1,
            ] {
                let mut bad = ct.clone();
                bad[pos] ^= 0x80;
                let (out, r) = decrypt_partial(alg, &bad);
                assert_eq!(r.unwrap_err().kind(), io::ErrorKind::InvalidData, "{pos}");
                let damaged_chunk = starts
                    .iter()
                    .filter(|&&s| s <= pos)
                    .count()
                    .saturating_sub(1);
                assert_eq!(out, pt[..damaged_chunk * CHUNK_LEN], "flip at {pos}");
            }
        }
    }

    #[test]
    fn stream_trailing_data() {
        for alg in ALGS {
            // After a partial final chunk, and after a full final chunk.
            for len in [0, 10, CHUNK_LEN, 2 * CHUNK_LEN] {
                let ct = encrypt(alg, &plaintext(len));
                let (_, cs) = chunks(&ct);
                let last = cs[cs.len() - 1].to_vec();
                for extra in [
                    vec![0u8],
                    vec![0u8; 16],
                    vec![0u8; ENCRYPTED_CHUNK_LEN],
                    last,
                ] {
                    let mut bad = ct.clone();
                    bad.extend_from_slice(&extra);
                    assert_invalid(alg, &bad, &format!("{alg:?} {len} + {} bytes", extra.len()));
                }
            }
            // Two complete streams back to back.
            let ct = encrypt(alg, b"one");
            assert_invalid(alg, &[ct.as_slice(), &ct].concat(), "two streams");
        }
    }

    #[test]
    fn stream_wrong_key() {
        let pt = plaintext(CHUNK_LEN + 1);
        for alg in ALGS {
            let ct = encrypt(alg, &pt);
            let (out, r) = {
                let mut out = Vec::new();
                let r = StreamReader::new(alg, &Secret::new([0x43; 32]), ct.as_slice())
                    .and_then(|mut r| r.read_to_end(&mut out));
                (out, r)
            };
            assert_eq!(r.unwrap_err().kind(), io::ErrorKind::InvalidData);
            assert!(out.is_empty());
            assert_eq!(
                decrypt_from_slice(alg, &Secret::new([0; 32]), &ct),
                Err(crate::Error::Crypto)
            );
        }
        // The other algorithm with the right key fails too.
        let ct = encrypt(AeadAlg::ChaCha20Poly1305, &pt);
        assert_invalid(AeadAlg::Aes256Gcm, &ct, "wrong algorithm");
    }

    #[test]
    fn stream_empty_final_chunk_after_data() {
        // A stream the writer never produces, built by hand with the key:
        // one full chunk, then an empty final chunk.
        let salt = [7u8; SALT_LEN];
        let k = chunk_key(AeadAlg::ChaCha20Poly1305, &key(), &salt).unwrap();
        let mut ct = salt.to_vec();
        ct.extend_from_slice(&k.seal(&nonce(0, false), b"", &plaintext(CHUNK_LEN)));
        let full_last = [ct.as_slice(), &k.seal(&nonce(1, true), b"", b"x")].concat();
        assert!(decrypt_from_slice(AeadAlg::ChaCha20Poly1305, &key(), &full_last).is_ok());
        ct.extend_from_slice(&k.seal(&nonce(1, true), b"", b""));
        assert_invalid(
            AeadAlg::ChaCha20Poly1305,
            &ct,
            "empty final chunk after data",
        );
    }

    #[test]
    fn stream_counter_overflow() {
        // The writer refuses to seal a chunk past 2^88 - 1.
        let mut w =
            StreamWriter::new(&mut rng(1), AeadAlg::ChaCha20Poly1305, &key(), Vec::new()).unwrap();
        w.set_counter_for_testing_only(MAX_COUNTER);
        w.write_all(&plaintext(CHUNK_LEN)).unwrap();
        // Sealing the full chunk with counter MAX_COUNTER is fine; the next
        // write needs counter MAX_COUNTER + 1 for its final chunk.
        w.write_all(b"x").unwrap();
        assert!(w.write_all(b"y").is_ok());
        let e = w.finish().unwrap_err();
        assert_eq!(e.to_string(), "STREAM chunk counter overflow");

        // The last counter can still hold the final chunk, and the reader
        // agrees; a reader past the last counter refuses to open anything.
        let mut w =
            StreamWriter::new(&mut rng(1), AeadAlg::ChaCha20Poly1305, &key(), Vec::new()).unwrap();
        w.set_counter_for_testing_only(MAX_COUNTER - 1);
        w.write_all(&plaintext(CHUNK_LEN + 1)).unwrap();
        let ct = w.finish().unwrap();
        let mut r = StreamReader::new(AeadAlg::ChaCha20Poly1305, &key(), ct.as_slice()).unwrap();
        r.set_counter_for_testing_only(MAX_COUNTER - 1);
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out, plaintext(CHUNK_LEN + 1));
        let mut r = StreamReader::new(AeadAlg::ChaCha20Poly1305, &key(), ct.as_slice()).unwrap();
        r.set_counter_for_testing_only(MAX_COUNTER + 1);
        let e = r.read_to_end(&mut Vec::new()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert_eq!(e.to_string(), "STREAM chunk counter overflow");
    }

    #[test]
    fn reader_error_is_sticky() {
        let mut ct = encrypt(AeadAlg::ChaCha20Poly1305, &plaintext(100));
        ct[SALT_LEN] ^= 1;
        let mut r = StreamReader::new(AeadAlg::ChaCha20Poly1305, &key(), ct.as_slice()).unwrap();
        let mut buf = [0u8; 10];
        assert!(r.read(&mut buf).is_err());
        assert!(r.read(&mut buf).is_err());
        assert_eq!(buf, [0u8; 10]);
    }

    #[test]
    fn writer_error_is_sticky() {
        /// Accepts `room` bytes, then fails.
        struct Full {
            room: usize,
        }
        impl Write for Full {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                if self.room == 0 {
                    return Err(io::Error::other("disk full"));
                }
                let n = b.len().min(self.room);
                self.room -= n;
                Ok(n)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut w = StreamWriter::new(
            &mut rng(1),
            AeadAlg::ChaCha20Poly1305,
            &key(),
            Full { room: 1000 },
        )
        .unwrap();
        w.write_all(&plaintext(CHUNK_LEN)).unwrap();
        assert!(w.write_all(b"more").is_err());
        assert!(w.write(b"more").is_err());
        assert!(w.finish().is_err());
    }

    #[test]
    fn debug_shows_no_secrets() {
        let w = StreamWriter::new(&mut rng(1), AeadAlg::Aes256Gcm, &key(), Vec::new()).unwrap();
        assert_eq!(
            format!("{w:?}"),
            "StreamWriter { alg: Aes256Gcm, chunk: 0, .. }"
        );
        let r = StreamReader::new(AeadAlg::Aes256Gcm, &key(), [0u8; 40].as_slice()).unwrap();
        assert!(format!("{r:?}").starts_with("StreamReader { alg: Aes256Gcm"));
    }
}
