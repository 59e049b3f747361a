//! `|Product|_K`: a product encrypted under K as a STREAM (ARCHITECTURE
//! section 2: 64 KiB chunks, counter nonces, a last-chunk flag), in
//! constant memory whatever its size, and the digest `Hash(|Product|_K)`
//! the bill carries, computed on the fly.
//!
//! Products use AES-256-GCM, agora's bulk AEAD (ring's VAES code: several
//! times the speed of ChaCha20-Poly1305 on a machine with AES instructions).
//! The vendor's cost is then the SHA-256 of the ciphertext, not the AEAD.

use agora_core::crypto::stream::{StreamReader, StreamWriter};
use agora_core::crypto::{AeadAlg, Digest, Rng, Secret, Sha256};
use std::io::{self, Read, Write};

/// The AEAD of product streams.
pub const PRODUCT_ALG: AeadAlg = AeadAlg::Aes256Gcm;

/// Size of the copy buffer: one STREAM chunk.
const COPY_BUF: usize = agora_core::crypto::stream::CHUNK_LEN;

/// What the vendor learns from encrypting a product: the two fields of the
/// bill that describe `|Product|_K`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Encrypted {
    /// Bytes of `|Product|_K`.
    pub len: u64,
    /// SHA-256 of `|Product|_K`.
    pub hash: [u8; 32],
}

/// A writer that counts and hashes what passes through it.
#[derive(Debug)]
pub struct HashingWriter<W: Write> {
    inner: W,
    hasher: Sha256,
    len: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            len: 0,
        }
    }

    /// The inner writer, the byte count and the digest of what was written.
    pub fn finish(self) -> (W, Encrypted) {
        let hash = self.hasher.finalize().into();
        (
            self.inner,
            Encrypted {
                len: self.len,
                hash,
            },
        )
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Copies `from` into `to` with a chunk-sized buffer; returns the bytes
/// copied.
fn copy(mut from: impl Read, to: &mut impl Write) -> io::Result<u64> {
    let mut buf = vec![0u8; COPY_BUF];
    let mut total = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(&buf[..n])?;
        total += n as u64;
    }
}

/// Encrypts `product` under `key` into `out`; returns the length and digest
/// of the ciphertext for the bill.
///
/// Encryption and the digest are the two costs, the digest the larger; it is
/// taken on a second thread from copies of the ciphertext chunks (a bounded
/// queue of [`DIGEST_QUEUE`] chunks), so that on two cores a product is
/// encrypted at about the speed of the slower of the two rather than their
/// sum. Memory stays constant: a few chunks.
pub fn encrypt<W: Write + Send>(
    rng: &mut impl Rng,
    key: &Secret<32>,
    mut product: impl Read,
    out: W,
) -> io::Result<(W, Encrypted)> {
    // A product of one chunk (a key, a short text) is not worth a thread.
    let mut first = Vec::new();
    (&mut product)
        .take(COPY_BUF as u64)
        .read_to_end(&mut first)?;
    if first.len() < COPY_BUF {
        let mut stream = StreamWriter::new(rng, PRODUCT_ALG, key, HashingWriter::new(out))?;
        stream.write_all(&first)?;
        return Ok(stream.finish()?.finish());
    }
    let product = io::Cursor::new(first).chain(product);
    std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(DIGEST_QUEUE);
        // Hashed chunks go back to the encrypting thread to be filled again:
        // no allocation per chunk, and no buffer freed by the thread that
        // did not allocate it.
        let (back_tx, back_rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(DIGEST_QUEUE + 1);
        let digest = s.spawn(move || {
            let mut hasher = Sha256::new();
            let mut len = 0u64;
            for mut chunk in rx {
                hasher.update(&chunk);
                len += chunk.len() as u64;
                chunk.clear();
                // The encrypting side may have finished and dropped its end.
                let _ = back_tx.try_send(chunk);
            }
            Encrypted {
                len,
                hash: hasher.finalize().into(),
            }
        });
        let tee = TeeWriter {
            out,
            tx: Some(tx),
            back: back_rx,
            buf: Vec::with_capacity(COPY_BUF),
        };
        let written = (|| {
            let mut stream = StreamWriter::new(rng, PRODUCT_ALG, key, tee)?;
            copy(product, &mut stream)?;
            let mut tee = stream.finish()?;
            tee.send()?;
            Ok::<_, io::Error>(tee)
        })();
        // Whatever happened, close the queue so the digest thread ends.
        let (out, failed) = match written {
            Ok(mut tee) => {
                tee.tx = None;
                (Some(tee.out), None)
            }
            Err(e) => (None, Some(e)),
        };
        let enc = digest
            .join()
            .map_err(|_| io::Error::other("the digest thread panicked"))?;
        match (out, failed) {
            (Some(out), None) => Ok((out, enc)),
            (_, Some(e)) => Err(e),
            (None, None) => Err(io::Error::other("no output")),
        }
    })
}

/// Chunks queued for the digest thread of [`encrypt`].
pub const DIGEST_QUEUE: usize = 4;

/// Writes through to `out`, and queues copies of what it wrote, a chunk at
/// a time, for the digest thread.
struct TeeWriter<W> {
    out: W,
    tx: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
    /// Empty buffers the digest thread is done with.
    back: std::sync::mpsc::Receiver<Vec<u8>>,
    buf: Vec<u8>,
}

impl<W: Write> TeeWriter<W> {
    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let next = self
            .back
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(COPY_BUF));
        let chunk = std::mem::replace(&mut self.buf, next);
        match &self.tx {
            Some(tx) => tx
                .send(chunk)
                .map_err(|_| io::Error::other("the digest thread stopped")),
            None => Err(io::Error::other("the digest queue is closed")),
        }
    }
}

impl<W: Write> Write for TeeWriter<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = self.out.write(data)?;
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= COPY_BUF {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Decrypts `|Product|_K` from `ciphertext` into `out`; returns the bytes of
/// product written. A wrong key, a changed byte or a cut stream is an error
/// of kind [`io::ErrorKind::InvalidData`]; `out` may then hold a prefix of
/// authenticated chunks, which the caller discards.
pub fn decrypt(key: &Secret<32>, ciphertext: impl Read, mut out: impl Write) -> io::Result<u64> {
    let reader = StreamReader::new(PRODUCT_ALG, key, ciphertext)?;
    let n = copy(reader, &mut out)?;
    out.flush()?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;

    #[test]
    fn every_size_round_trips_with_the_digest_of_its_ciphertext() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(6);
        let key = Secret::random(&mut rng);
        for n in [
            0usize,
            16,
            COPY_BUF - 1,
            COPY_BUF,
            COPY_BUF + 1,
            3 * COPY_BUF + 7,
        ] {
            let product: Vec<u8> = (0..n).map(|i| (i * 31) as u8).collect();
            let (ct, enc) = encrypt(&mut rng, &key, &product[..], Vec::new()).unwrap();
            assert_eq!(enc.len, ct.len() as u64, "{n}");
            assert_eq!(enc.hash, agora_core::crypto::sha256(&ct), "{n}");
            assert_eq!(
                enc.len,
                agora_core::crypto::stream::ciphertext_len(n as u64),
                "{n}"
            );
            let mut back = Vec::new();
            decrypt(&key, &ct[..], &mut back).unwrap();
            assert_eq!(back, product, "{n}");
        }
    }

    #[test]
    fn round_trip_and_digest_of_the_ciphertext() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(5);
        let key = Secret::random(&mut rng);
        let product: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        let (ct, enc) = encrypt(&mut rng, &key, &product[..], Vec::new()).unwrap();
        assert_eq!(enc.len, ct.len() as u64);
        assert_eq!(enc.hash, agora_core::crypto::sha256(&ct));
        let mut back = Vec::new();
        assert_eq!(decrypt(&key, &ct[..], &mut back).unwrap(), 200_000);
        assert_eq!(back, product);
        let other = Secret::random(&mut rng);
        assert!(decrypt(&other, &ct[..], Vec::new()).is_err());
        let mut cut = ct.clone();
        cut.truncate(ct.len() - 1);
        assert!(decrypt(&key, &cut[..], Vec::new()).is_err());
    }
}
