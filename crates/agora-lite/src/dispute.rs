//! Disputes over a subscription with hash-chain receipts (paper section 5,
//! "Extending the data delivery protocols to enable receipts").
//!
//! A third party (an arbiter, or the client's own tool) is shown:
//!
//! - by the client, the vendor's signed receipt of her subscription (the
//!   `COSE_Sign1` of a [`Receipt`] from non-repudiation SKEP), whose
//!   subscription commits to a hash chain `(w_0, n)`
//!   ([`ChainCommitment`](crate::wire::ChainCommitment)); and how many
//!   deliveries she says she received;
//! - by the vendor, an element `w_i` of that chain with its index `i`: the
//!   last acknowledgement it holds.
//!
//! and [`judge`] says what each side proves:
//!
//! - the receipt, verified with the vendor's key, proves which chain the
//!   vendor agreed to: the vendor cannot answer it with another chain (a
//!   second preimage chain for the same `w_0` would break SHA-256);
//! - a `w_i` with `SHA-256^i(w_i) = w_0`, `1 <= i <= n`, proves that the
//!   client acknowledged at least `i` deliveries, since only she could
//!   compute `w_i` (SHA-256 is one-way); an element that does not hash to
//!   `w_0` in `i` steps, or an index outside `1..=n`, proves nothing;
//! - so at most `n - i` deliveries are unacknowledged, and the vendor owes
//!   a refund of `n - i` of the `n` units of the subscription, unless it
//!   proves that it paid one.
//!
//! **Refund evidence is not built in agora yet**: nothing here can show or
//! check that a vendor paid a refund (the paper's third defence of a
//! vendor), and the subscription's payment data is opaque bytes, so the
//! refund owed is stated in units of `1/n` of the subscription, not in
//! money. Every [`Finding`] says so in its text.
//!
//! Sans-IO, like the rest of the crate: the caller reads the files and
//! finds the vendor's key (and checks that it is `id_V`'s, e.g. from its
//! certificate: the receipt names the vendor but does not carry its key).

use crate::chain::ChainVerifier;
use crate::ids::{ClientId, VendorId};
use crate::skep::{verify_receipt, Receipt};
use agora_core::crypto::VerifyingKey;
use agora_core::{Error, KeyId, Result, Timestamp};
use std::fmt;

/// What the vendor's element proves, judged against the signed chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VendorEvidence {
    /// The vendor showed no element.
    NoneShown,
    /// `w_index` hashes to the anchor in `index` steps: at least `index`
    /// deliveries acknowledged.
    Valid {
        /// `i`, 1 to `n`.
        index: u64,
    },
    /// The element does not hash to the anchor in `index` steps: it is not
    /// on the signed chain, and proves nothing.
    NotOnChain {
        /// The index the vendor gave.
        index: u64,
    },
    /// The index is outside the chain's receipts `1..=n` (0, the anchor
    /// itself, acknowledges nothing; over `n` is beyond the chain's end):
    /// it proves nothing.
    BeyondEnd {
        /// The index the vendor gave.
        index: u64,
    },
}

impl VendorEvidence {
    /// The deliveries this evidence proves: `index` if valid, else 0.
    pub fn proven(&self) -> u64 {
        match *self {
            VendorEvidence::Valid { index } => index,
            _ => 0,
        }
    }
}

/// What becomes of the client's claim of how many deliveries she received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientClaim {
    /// She made none.
    NoneMade,
    /// She claims `claimed` deliveries, at least what the vendor proves:
    /// nothing here contradicts it.
    Consistent {
        /// The deliveries she says she received.
        claimed: u64,
    },
    /// She claims fewer deliveries than the vendor proves she
    /// acknowledged: her claim is refuted.
    Refuted {
        /// The deliveries she says she received.
        claimed: u64,
    },
}

/// The refund owed on the evidence: `units` of the `n` equal parts of the
/// subscription's payment (whose amount agora does not know: the payment
/// data is opaque).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RefundOwed {
    /// Deliveries not acknowledged: `n - proven`.
    pub units: u64,
    /// The chain's length `n`: the deliveries the subscription promised.
    pub n: u64,
}

impl fmt::Display for RefundOwed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{} of the subscription's payment", self.units, self.n)
    }
}

/// The outcome of a dispute: the subscription the vendor signed, and what
/// each side's evidence proves. [`Finding::lines`] (and `Display`) say it
/// in plain sentences.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// The client the receipt names.
    pub client: ClientId,
    /// The vendor the receipt names.
    pub vendor: VendorId,
    /// The key id of the vendor key the receipt verified with.
    pub vendor_key: KeyId,
    /// The subscription's first second.
    pub not_before: Timestamp,
    /// The first second it is no longer valid.
    pub not_after: Timestamp,
    /// When the vendor signed the receipt.
    pub issued_at: Timestamp,
    /// The chain's anchor `w_0`, as the vendor signed it.
    pub anchor: [u8; 32],
    /// The chain's length `n`: the deliveries the subscription promised.
    pub n: u64,
    /// What the vendor's element proves.
    pub vendor_evidence: VendorEvidence,
    /// What becomes of the client's claim.
    pub client_claim: ClientClaim,
}

impl Finding {
    /// The deliveries the vendor proves were acknowledged (0 if it showed
    /// nothing valid).
    pub fn proven(&self) -> u64 {
        self.vendor_evidence.proven()
    }

    /// The deliveries not acknowledged: `n - proven`.
    pub fn not_acknowledged(&self) -> u64 {
        // proven <= n: a valid index is at most n.
        self.n - self.proven()
    }

    /// The refund owed on this evidence, for the deliveries not
    /// acknowledged -- unless the vendor proves it paid one, which agora
    /// cannot check yet (no refund evidence is built).
    pub fn refund_owed(&self) -> RefundOwed {
        RefundOwed {
            units: self.not_acknowledged(),
            n: self.n,
        }
    }

    /// What each side can prove, one plain sentence a line (times are not
    /// in them: [`Display`](fmt::Display) adds a first line with the
    /// subscription's period in Unix seconds; a tool may print its own).
    pub fn lines(&self) -> Vec<String> {
        let n = self.n;
        let mut out = vec![format!(
            "The client shows the receipt signed by {} (key {}): the vendor agreed to the hash \
             chain anchored at w_0 = {} for {n} deliveries, and cannot answer it with another \
             chain.",
            self.vendor,
            self.vendor_key,
            hex(&self.anchor),
        )];
        out.push(match self.vendor_evidence {
            VendorEvidence::NoneShown => {
                "The vendor shows no acknowledgement: it proves no delivery.".to_owned()
            }
            VendorEvidence::Valid { index } => format!(
                "The vendor shows w_{index}, which hashes to w_0 in {index} steps: only the \
                 client could compute it, so the vendor proves that she acknowledged at least \
                 {index} of the {n} deliveries."
            ),
            VendorEvidence::NotOnChain { index } => format!(
                "The vendor's element w_{index} does not hash to w_0 in {index} steps: it is \
                 not on the chain the vendor signed, and proves no delivery."
            ),
            VendorEvidence::BeyondEnd { index } => format!(
                "The vendor's element is numbered {index}, outside the chain's receipts 1 to \
                 {n}: it proves no delivery."
            ),
        });
        let proven = self.proven();
        match self.client_claim {
            ClientClaim::NoneMade => {}
            ClientClaim::Consistent { claimed } => out.push(format!(
                "The client says she received {claimed} deliveries; the vendor proves \
                 {proven}, so nothing here contradicts her."
            )),
            ClientClaim::Refuted { claimed } => out.push(format!(
                "The client says she received {claimed} deliveries, but the vendor proves she \
                 acknowledged {proven}: her claim is refuted."
            )),
        }
        out.push(format!(
            "{} of the {n} deliveries are not acknowledged: on this evidence the vendor owes a \
             refund of {}, unless it proves it paid one.",
            self.not_acknowledged(),
            self.refund_owed(),
        ));
        out.push(
            "Refund evidence is not built in agora yet: a refund the vendor paid can be neither \
             shown nor checked here, and the payment data is opaque, so the refund is in units \
             of the subscription, not money."
                .to_owned(),
        );
        out
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Subscription of {} with {}, from {} to {} (Unix seconds), receipt issued at {}.",
            self.client, self.vendor, self.not_before, self.not_after, self.issued_at
        )?;
        let lines = self.lines();
        for (i, line) in lines.iter().enumerate() {
            if i + 1 < lines.len() {
                writeln!(f, "{line}")?;
            } else {
                write!(f, "{line}")?;
            }
        }
        Ok(())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Judges a dispute over the subscription of `receipt`.
///
/// - `receipt`: the vendor's `COSE_Sign1` of a [`Receipt`] (what the
///   client kept from non-repudiation SKEP), checked with `vendor`, the
///   vendor's Ed25519 key (the caller checks it is the key of the vendor
///   the receipt names). Refused as [`verify_receipt`] refuses it
///   ([`Error::NotAuthorised`] for another signer, [`Error::Crypto`] for a
///   bad signature, a decode error for malformed bytes), and with
///   [`Error::Refused`] if the subscription commits to no hash chain.
/// - `vendor_shows`: the vendor's element `(i, w_i)`, if it shows one,
///   judged with the crate's [`ChainVerifier`] against the signed anchor
///   (at most `n` hashes).
/// - `client_claims`: the deliveries the client says she received, if she
///   says; refuted if the vendor proves more. Refused with
///   [`Error::Refused`] if over `n`: the subscription promised no more.
///
/// The refund the finding states is owed on the evidence, unless the
/// vendor proves it paid one: refund evidence is not built in agora yet,
/// so it cannot be weighed here.
pub fn judge(
    receipt: &[u8],
    vendor: &VerifyingKey,
    vendor_shows: Option<(u64, [u8; 32])>,
    client_claims: Option<u64>,
) -> Result<Finding> {
    let r: Receipt = verify_receipt(receipt, vendor)?;
    let Some(chain) = r.subscription.chain else {
        return Err(Error::Refused(
            "the receipt commits to no hash chain: there is nothing to dispute with it".into(),
        ));
    };
    let n = u64::from(chain.n);
    let vendor_evidence = match vendor_shows {
        None => VendorEvidence::NoneShown,
        Some((index, _)) if index == 0 || index > n => VendorEvidence::BeyondEnd { index },
        Some((index, w)) => {
            let mut verifier = ChainVerifier::new(chain.anchor, n)?;
            match verifier.accept(index, &w) {
                Ok(_) => VendorEvidence::Valid { index },
                Err(Error::Crypto) => VendorEvidence::NotOnChain { index },
                // 1 <= index <= n on a fresh verifier: accept refuses
                // nothing else.
                Err(e) => return Err(e),
            }
        }
    };
    let proven = vendor_evidence.proven();
    let client_claim = match client_claims {
        None => ClientClaim::NoneMade,
        Some(claimed) if claimed > n => {
            return Err(Error::Refused(format!(
                "the client claims {claimed} deliveries, but the subscription promised {n}"
            )))
        }
        Some(claimed) if claimed < proven => ClientClaim::Refuted { claimed },
        Some(claimed) => ClientClaim::Consistent { claimed },
    };
    Ok(Finding {
        client: r.id_c,
        vendor: r.id_v,
        vendor_key: vendor.key_id(),
        not_before: r.subscription.not_before,
        not_after: r.subscription.not_after,
        issued_at: r.issued_at,
        anchor: chain.anchor,
        n,
        vendor_evidence,
        client_claim,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::chain::HashChain;
    use crate::skep::{SkepClient, SkepMode, SkepVendor};
    use crate::wire::{ChainCommitment, Subscription};
    use crate::{Janus, JanusParams};
    use agora_core::crypto::{SigningKey, X25519Secret};
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    const NOW: Timestamp = Timestamp(1_700_000_000);
    const N: u64 = 30;

    fn rng(seed: u64) -> ChaCha20Rng {
        ChaCha20Rng::seed_from_u64(seed)
    }

    fn vendor(seed: u64) -> SkepVendor {
        let mut r = rng(seed);
        SkepVendor::new(
            VendorId::new("quotes.example").unwrap(),
            X25519Secret::generate(&mut r),
            SigningKey::generate(&mut r),
        )
    }

    /// A non-repudiation SKEP run for a subscription with `chain`; the
    /// receipt the client keeps (its `COSE_Sign1`).
    fn signed_receipt(v: &SkepVendor, chain: Option<&HashChain>) -> Vec<u8> {
        let mut r = rng(7);
        let id_c = ClientId::new("alice@example.org").unwrap();
        let k = Janus::open(
            id_c.clone(),
            b"correct horse",
            JanusParams::insecure_for_tests(),
        )
        .unwrap()
        .vendor_key(v.id(), 0);
        let s = Subscription {
            not_before: NOW,
            not_after: NOW.plus_secs(30 * 86_400),
            chain: chain.map(|c| ChainCommitment {
                anchor: c.anchor(),
                n: u32::try_from(c.n()).unwrap(),
            }),
            payment: b"payment-ref-42".to_vec(),
            counter: 0,
        };
        let (c1, hello) =
            SkepClient::start(&mut r, &k, id_c, v.id().clone(), &v.x25519_public()).unwrap();
        let (pending, challenge) = v.on_hello(&mut r, &hello).unwrap();
        let (confirmed, confirm) = c1.on_challenge(&mut r, &challenge, s).unwrap();
        let (_, sealed) = pending
            .on_confirm(v, &mut r, NOW, &confirm, SkepMode::NonRepudiation)
            .unwrap();
        confirmed
            .on_receipt(&sealed.unwrap(), &v.verifying_key())
            .unwrap()
            .cose_sign1
    }

    /// A vendor, the client's chain of [`N`] and the signed receipt of it.
    fn setup() -> (SkepVendor, HashChain, Vec<u8>) {
        let v = vendor(1);
        let chain = HashChain::generate(&mut rng(2), N).unwrap();
        let receipt = signed_receipt(&v, Some(&chain));
        (v, chain, receipt)
    }

    #[test]
    fn a_genuine_w_i_proves_i_deliveries() {
        let (v, chain, receipt) = setup();
        let f = judge(
            &receipt,
            &v.verifying_key(),
            Some((12, chain.element(12).unwrap())),
            None,
        )
        .unwrap();
        assert_eq!(f.vendor_evidence, VendorEvidence::Valid { index: 12 });
        assert_eq!((f.proven(), f.not_acknowledged(), f.n), (12, N - 12, N));
        assert_eq!(f.refund_owed(), RefundOwed { units: 18, n: N });
        assert_eq!(f.client.as_str(), "alice@example.org");
        assert_eq!(f.vendor.as_str(), "quotes.example");
        assert_eq!(f.anchor, chain.anchor());
        assert_eq!((f.not_before, f.issued_at), (NOW, NOW));
        let text = f.to_string();
        assert!(
            text.contains("acknowledged at least 12 of the 30"),
            "{text}"
        );
        assert!(text.contains("refund of 18/30"), "{text}");
        assert!(text.contains("Refund evidence is not built"), "{text}");
        // The last element proves every delivery.
        let all = judge(
            &receipt,
            &v.verifying_key(),
            Some((N, chain.element(N).unwrap())),
            None,
        )
        .unwrap();
        assert_eq!((all.proven(), all.not_acknowledged()), (N, 0));
    }

    #[test]
    fn an_element_not_on_the_chain_proves_nothing() {
        let (v, chain, receipt) = setup();
        // Another element of the chain at the wrong index, and a random one.
        let misplaced = chain.element(11).unwrap();
        let other = HashChain::generate(&mut rng(3), N).unwrap();
        for w in [misplaced, other.element(12).unwrap(), [0u8; 32]] {
            let f = judge(&receipt, &v.verifying_key(), Some((12, w)), None).unwrap();
            assert_eq!(f.vendor_evidence, VendorEvidence::NotOnChain { index: 12 });
            assert_eq!((f.proven(), f.not_acknowledged()), (0, N));
            assert!(f.to_string().contains("not on the chain"));
        }
    }

    #[test]
    fn an_index_beyond_n_is_refused() {
        let (v, chain, receipt) = setup();
        for index in [N + 1, u64::MAX, 0] {
            let w = if index == 0 {
                chain.anchor()
            } else {
                chain.element(N).unwrap()
            };
            let f = judge(&receipt, &v.verifying_key(), Some((index, w)), None).unwrap();
            assert_eq!(f.vendor_evidence, VendorEvidence::BeyondEnd { index });
            assert_eq!(f.proven(), 0);
        }
    }

    #[test]
    fn a_receipt_signed_by_another_key_is_refused() {
        let (_, chain, receipt) = setup();
        let other = vendor(9);
        let e = judge(
            &receipt,
            &other.verifying_key(),
            Some((1, chain.element(1).unwrap())),
            None,
        )
        .unwrap_err();
        assert!(matches!(e, Error::NotAuthorised(_) | Error::Crypto), "{e}");
    }

    #[test]
    fn a_tampered_receipt_is_refused() {
        let (v, chain, receipt) = setup();
        for i in 0..receipt.len() {
            let mut t = receipt.clone();
            t[i] ^= 0x01;
            assert!(
                judge(
                    &t,
                    &v.verifying_key(),
                    Some((1, chain.element(1).unwrap())),
                    None
                )
                .is_err(),
                "byte {i}"
            );
        }
    }

    #[test]
    fn a_receipt_without_a_chain_is_refused() {
        let v = vendor(1);
        let receipt = signed_receipt(&v, None);
        let e = judge(&receipt, &v.verifying_key(), None, Some(0)).unwrap_err();
        assert!(
            matches!(&e, Error::Refused(m) if m.contains("commits to no hash chain")),
            "{e}"
        );
    }

    #[test]
    fn a_client_claiming_fewer_deliveries_than_proven_is_refuted() {
        let (v, chain, receipt) = setup();
        let shown = Some((20, chain.element(20).unwrap()));
        let f = judge(&receipt, &v.verifying_key(), shown, Some(3)).unwrap();
        assert_eq!(f.client_claim, ClientClaim::Refuted { claimed: 3 });
        assert!(f.to_string().contains("her claim is refuted"));
        // As many as proven, or more, is not contradicted.
        for claimed in [20, 25] {
            let f = judge(&receipt, &v.verifying_key(), shown, Some(claimed)).unwrap();
            assert_eq!(f.client_claim, ClientClaim::Consistent { claimed });
        }
        // More than the subscription promised is not a claim to judge.
        assert!(matches!(
            judge(&receipt, &v.verifying_key(), shown, Some(N + 1)),
            Err(Error::Refused(_))
        ));
    }

    #[test]
    fn with_no_vendor_evidence_all_n_are_owed() {
        let (v, _, receipt) = setup();
        let f = judge(&receipt, &v.verifying_key(), None, Some(0)).unwrap();
        assert_eq!(f.vendor_evidence, VendorEvidence::NoneShown);
        assert_eq!(f.client_claim, ClientClaim::Consistent { claimed: 0 });
        assert_eq!(f.refund_owed(), RefundOwed { units: N, n: N });
        let text = f.to_string();
        assert!(text.contains("shows no acknowledgement"), "{text}");
        assert!(
            text.contains("30 of the 30 deliveries are not acknowledged"),
            "{text}"
        );
    }
}
