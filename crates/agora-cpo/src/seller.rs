//! Pam the (potential) Seller: a browse session (protocol 3, paper section
//! 3.8) that gives her K_p, and binding (protocol 4, section 3.9) under it.

use crate::msg::{
    digest, BindListing, BindOffer, BoundCpo, BrowseChallenge, BrowseGrant, BrowseRequest,
    BrowseResponse, EndSession, ListingRequest, Listings, ListingsRequest, Mode,
};
use crate::session::{BindingKey, Channel, Direction};
use crate::{Ccpo, Keys, Peer};
use agora_core::crypto::{random_bytes, Rng};
use agora_core::wire::envelope;
use agora_core::{Error, Result, Timestamp};

/// Step 1 of protocol 3 sent; Pam waits for the server's challenge.
#[derive(Debug)]
pub struct ExpectBrowseChallenge {
    server: Peer,
    x0_hash: [u8; 32],
    bond: Vec<u8>,
    from: Timestamp,
    until: Timestamp,
}

/// Step 3 sent; Pam waits for K_p.
#[derive(Debug)]
pub struct ExpectBrowseGrant {
    server: Peer,
    x2_hash: [u8; 32],
    bond: Vec<u8>,
    from: Timestamp,
    until: Timestamp,
}

/// Pam's side of a granted browse session.
#[derive(Debug)]
pub struct SellerSession {
    k_p: BindingKey,
    channel: Channel,
    server: Peer,
    bond: Vec<u8>,
    /// T (start).
    pub from: Timestamp,
    /// T (end).
    pub until: Timestamp,
}

/// Step 1 of protocol 3: `X_0 = U_0, R_0, T, BC_P`, sealed to the server.
pub fn request_session(
    keys: &Keys,
    rng: &mut impl Rng,
    bond: Vec<u8>,
    from: Timestamp,
    until: Timestamp,
    server: &Peer,
) -> Result<(Vec<u8>, ExpectBrowseChallenge)> {
    let x0 = BrowseRequest {
        r0: random_bytes(rng),
        from,
        until,
        bond,
    };
    let m0 = envelope::seal(rng, &keys.sign, &server.enc, &x0)?;
    Ok((
        m0,
        ExpectBrowseChallenge {
            server: *server,
            x0_hash: digest(&x0),
            bond: x0.bond,
            from,
            until,
        },
    ))
}

impl ExpectBrowseChallenge {
    /// Step 2 -> 3: answer the server's challenge.
    pub fn handle(
        self,
        keys: &Keys,
        rng: &mut impl Rng,
        m1: &[u8],
    ) -> Result<(Vec<u8>, ExpectBrowseGrant)> {
        let opened =
            envelope::open::<BrowseChallenge>(m1, &keys.enc, |kid| self.server.key_if(kid))?;
        if opened.message.x0_hash != self.x0_hash {
            return Err(Error::PeerMisbehaved(
                "the challenge answers another request",
            ));
        }
        let x2 = BrowseResponse {
            x1_hash: digest(&opened.message),
        };
        let m2 = envelope::seal(rng, &keys.sign, &self.server.enc, &x2)?;
        Ok((
            m2,
            ExpectBrowseGrant {
                server: self.server,
                x2_hash: digest(&x2),
                bond: self.bond,
                from: self.from,
                until: self.until,
            },
        ))
    }
}

impl ExpectBrowseGrant {
    /// Step 4: K_p, for the time range she asked for.
    pub fn handle(self, keys: &Keys, m3: &[u8]) -> Result<SellerSession> {
        let opened = envelope::open::<BrowseGrant>(m3, &keys.enc, |kid| self.server.key_if(kid))?;
        let x3 = &opened.message;
        if x3.x2_hash != self.x2_hash {
            return Err(Error::PeerMisbehaved("the grant answers another response"));
        }
        if x3.from != self.from || x3.until != self.until {
            return Err(Error::PeerMisbehaved("the grant is for another time range"));
        }
        Ok(SellerSession::from_parts(
            BindingKey::from_bytes(x3.k_p),
            self.server,
            self.bond,
            self.from,
            self.until,
        ))
    }
}

/// A listing Pam received (protocol 4, step 1).
#[derive(Clone, Debug)]
pub struct Listing {
    /// X_0.
    pub message: BindListing,
    hash: [u8; 32],
}

impl Listing {
    /// The CPO listed.
    pub fn ccpo(&self) -> &Ccpo {
        &self.message.ccpo
    }

    /// A listing made by hand with any hash: lets tests offer on something
    /// the server never listed for binding (e.g. a bidding listing).
    pub fn for_testing_only(message: BindListing, hash: [u8; 32]) -> Listing {
        Listing { message, hash }
    }
}

/// Step 2 of protocol 4 sent; Pam waits for BOUND_CPO.
#[derive(Debug)]
pub struct ExpectBound {
    x1_hash: [u8; 32],
    ccpo: Ccpo,
    offer: String,
}

/// BOUND_CPO as Pam stores it (step 4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BoundReceipt {
    /// `X_2, Sign_{SK_S}(X_2)` (COSE_Sign1): the contract.
    pub signed: Vec<u8>,
    /// X_2.
    pub message: BoundCpo,
}

impl SellerSession {
    /// A session from its parts (as kept by a client between runs).
    pub fn from_parts(
        k_p: BindingKey,
        server: Peer,
        bond: Vec<u8>,
        from: Timestamp,
        until: Timestamp,
    ) -> SellerSession {
        SellerSession {
            channel: Channel::new(&k_p),
            k_p,
            server,
            bond,
            from,
            until,
        }
    }

    /// The session id.
    pub fn id(&self) -> [u8; 32] {
        *self.channel.id()
    }

    /// K_p, for the client to keep (as carefully as other key material).
    pub fn k_p(&self) -> &BindingKey {
        &self.k_p
    }

    /// The server of this session.
    pub fn server(&self) -> &Peer {
        &self.server
    }

    pub(crate) fn channel(&self) -> &Channel {
        &self.channel
    }

    /// Opens a listing (protocol 4, step 1) and checks it is under K_p.
    pub fn open_listing(&self, m0: &[u8]) -> Result<Listing> {
        let message = self
            .channel
            .open_authed::<BindListing>(Direction::ToSeller, m0)?;
        Ok(Listing {
            hash: digest(&message),
            message,
        })
    }

    /// Step 2 of protocol 4: the offer to bind `listing`, under K_p.
    pub fn offer(
        &self,
        rng: &mut impl Rng,
        listing: &Listing,
        offer: &str,
    ) -> Result<(Vec<u8>, ExpectBound)> {
        if offer.len() > crate::msg::MAX_OFFER_LEN {
            return Err(Error::ApiMisuse("offer details over their limit"));
        }
        let x1 = BindOffer {
            x0_hash: listing.hash,
            r1: random_bytes(rng),
            offer: offer.to_owned(),
        };
        let m1 = self.channel.seal_authed(rng, Direction::ToServer, &x1);
        Ok((
            m1,
            ExpectBound {
                x1_hash: digest(&x1),
                ccpo: listing.message.ccpo.clone(),
                offer: x1.offer,
            },
        ))
    }

    /// Asks the server for the step-1 listing of `cpo` (protocol 4 for
    /// first-come, 6 for bidding), under K_p: the network's pull of what the
    /// paper's server sends while she browses.
    pub fn request_listing(&self, rng: &mut impl Rng, cpo: [u8; 32], mode: Mode) -> Vec<u8> {
        let x = ListingRequest {
            session: self.id(),
            cpo,
            mode,
        };
        self.channel.seal_authed(rng, Direction::ToServer, &x)
    }

    /// Asks the server for the step-1 listings of a page of CPOs at once
    /// (1 to [`crate::msg::MAX_LISTINGS_PER_REQUEST`], none twice), under
    /// K_p: one round trip instead of one per CPO.
    pub fn request_listings(
        &self,
        rng: &mut impl Rng,
        cpos: &[[u8; 32]],
        mode: Mode,
    ) -> Result<(Vec<u8>, ExpectListings)> {
        if cpos.is_empty() || cpos.len() > crate::msg::MAX_LISTINGS_PER_REQUEST {
            return Err(Error::ApiMisuse(
                "a listings request names 1 to MAX_LISTINGS_PER_REQUEST CPOs",
            ));
        }
        if cpos.iter().enumerate().any(|(i, c)| cpos[..i].contains(c)) {
            return Err(Error::ApiMisuse("a listings request names a CPO twice"));
        }
        let x = ListingsRequest {
            session: self.id(),
            cpos: cpos.to_vec(),
            mode,
        };
        let m = self.channel.seal_authed(rng, Direction::ToServer, &x);
        Ok((
            m,
            ExpectListings {
                request_hash: digest(&x),
                cpos: x.cpos,
            },
        ))
    }

    /// Ends the session: the message to send, under K_p.
    pub fn end(&self, rng: &mut impl Rng) -> Vec<u8> {
        self.channel
            .seal_authed(rng, Direction::ToServer, &EndSession { session: self.id() })
    }
}

/// A [`ListingsRequest`] sent; Pam waits for the [`Listings`].
#[derive(Debug)]
pub struct ExpectListings {
    request_hash: [u8; 32],
    cpos: Vec<[u8; 32]>,
}

/// One CPO of a [`Listings`] answer: its sealed listing, to open with
/// [`SellerSession::open_listing`] (or `open_bid_listing`), or the server's
/// refusal of it.
pub type ListingOrRefusal = std::result::Result<Vec<u8>, String>;

impl ExpectListings {
    /// The answer must be under K_p, answer this request, and hold one
    /// entry per CPO asked for; returned in the order asked, with each
    /// CPO's id. Opening a listing checks it; the caller checks it is of
    /// the CPO it stands for.
    pub fn handle(
        self,
        session: &SellerSession,
        m: &[u8],
    ) -> Result<Vec<([u8; 32], ListingOrRefusal)>> {
        let x = session
            .channel
            .open_authed::<Listings>(Direction::ToSeller, m)?;
        if x.request_hash != self.request_hash {
            return Err(Error::PeerMisbehaved("the listings answer another request"));
        }
        if x.entries.len() != self.cpos.len() {
            return Err(Error::PeerMisbehaved(
                "the listings answer another number of CPOs",
            ));
        }
        Ok(self.cpos.into_iter().zip(x.entries).collect())
    }
}

impl ExpectBound {
    /// Step 3 -> 4: BOUND_CPO must be signed by the server, answer this
    /// offer, and carry the CPO, her bond and her offer unchanged.
    pub fn handle(self, session: &SellerSession, m2: &[u8]) -> Result<BoundReceipt> {
        let (x2, signed) = session.channel.open_signed::<BoundCpo>(
            Direction::ToSeller,
            m2,
            &session.server.sign,
        )?;
        if x2.x1_hash != self.x1_hash {
            return Err(Error::PeerMisbehaved("BOUND_CPO answers another offer"));
        }
        if x2.ccpo != self.ccpo || x2.offer != self.offer || x2.seller_bond != session.bond {
            return Err(Error::PeerMisbehaved("BOUND_CPO differs from the offer"));
        }
        Ok(BoundReceipt {
            signed,
            message: x2,
        })
    }
}

// Saved states (see `crate::state`): kinds 7-9. None holds a secret: K_p
// reaches Pam only in step 4 of protocol 3, and her driver keeps it with
// her other key material, not in a saved state.

/// The fields protocol 3's two seller states share.
fn encode_browse(
    kind: u64,
    server: &Peer,
    hash: &[u8; 32],
    bond: &[u8],
    from: Timestamp,
    until: Timestamp,
) -> Vec<u8> {
    let mut e = crate::state::start(kind, 5);
    e.field(server)
        .field(hash)
        .bytes(bond)
        .field(&from)
        .field(&until);
    e.into_bytes()
}

/// Reads what [`encode_browse`] wrote; a state whose time range is empty
/// (which no server grants) is refused.
#[allow(clippy::type_complexity)] // the five fields, in order
fn decode_browse(
    b: &[u8],
    kind: u64,
) -> Result<(Peer, [u8; 32], Vec<u8>, Timestamp, Timestamp), agora_core::DecodeError> {
    let mut d = crate::state::open(b, kind, 5)?;
    let server = d.field()?;
    let hash = d.field()?;
    let bond = d.bytes("saved BC_P", agora_pki::MAX_CERT_LEN)?.to_vec();
    let from: Timestamp = d.field()?;
    let until: Timestamp = d.field()?;
    d.finish()?;
    if bond.is_empty() {
        return Err(agora_core::DecodeError::Invalid("saved bond is empty"));
    }
    if until <= from {
        return Err(agora_core::DecodeError::Invalid(
            "saved session time range is empty",
        ));
    }
    Ok((server, hash, bond, from, until))
}

impl ExpectBrowseChallenge {
    /// The state as bytes (saved state kind 7), to resume later with
    /// [`Self::from_bytes`].
    pub fn to_bytes(&self) -> Vec<u8> {
        encode_browse(
            7,
            &self.server,
            &self.x0_hash,
            &self.bond,
            self.from,
            self.until,
        )
    }

    /// A state saved by [`Self::to_bytes`].
    pub fn from_bytes(b: &[u8]) -> Result<Self, agora_core::DecodeError> {
        let (server, x0_hash, bond, from, until) = decode_browse(b, 7)?;
        Ok(ExpectBrowseChallenge {
            server,
            x0_hash,
            bond,
            from,
            until,
        })
    }

    /// The server the request went to.
    pub fn server(&self) -> &Peer {
        &self.server
    }
}

impl ExpectBrowseGrant {
    /// The state as bytes (saved state kind 8), to resume later with
    /// [`Self::from_bytes`].
    pub fn to_bytes(&self) -> Vec<u8> {
        encode_browse(
            8,
            &self.server,
            &self.x2_hash,
            &self.bond,
            self.from,
            self.until,
        )
    }

    /// A state saved by [`Self::to_bytes`].
    pub fn from_bytes(b: &[u8]) -> Result<Self, agora_core::DecodeError> {
        let (server, x2_hash, bond, from, until) = decode_browse(b, 8)?;
        Ok(ExpectBrowseGrant {
            server,
            x2_hash,
            bond,
            from,
            until,
        })
    }
}

impl ExpectBound {
    /// The state as bytes (saved state kind 9), to resume later with
    /// [`Self::from_bytes`].
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut e = crate::state::start(9, 3);
        e.field(&self.x1_hash).field(&self.ccpo).text(&self.offer);
        e.into_bytes()
    }

    /// A state saved by [`Self::to_bytes`].
    pub fn from_bytes(b: &[u8]) -> Result<Self, agora_core::DecodeError> {
        let mut d = crate::state::open(b, 9, 3)?;
        let s = ExpectBound {
            x1_hash: d.field()?,
            ccpo: d.field()?,
            offer: d.text("saved offer", crate::msg::MAX_OFFER_LEN)?.to_owned(),
        };
        d.finish()?;
        Ok(s)
    }

    /// The CPO the offer is for.
    pub fn ccpo(&self) -> &Ccpo {
        &self.ccpo
    }
}

impl SellerSession {
    /// BC_P: the bond the session was granted on (for the client to keep
    /// with K_p).
    pub fn bond(&self) -> &[u8] {
        &self.bond
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests may panic
    use super::*;
    use crate::CcpoDraft;
    use agora_core::crypto::{SigningKey, X25519Secret};
    use agora_core::{Currency, Money};
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    const NOW: Timestamp = Timestamp(1_800_000_000);

    fn peer(rng: &mut ChaCha20Rng) -> Peer {
        Keys {
            sign: SigningKey::generate(rng),
            enc: X25519Secret::generate(rng),
        }
        .peer()
    }

    /// Every truncation, one extra byte, every single flipped bit and the
    /// wrong kind are refused; the untouched bytes load back as they were.
    fn strict<T>(
        bytes: &[u8],
        load: impl Fn(&[u8]) -> Result<T, agora_core::DecodeError>,
        save: impl Fn(&T) -> Vec<u8>,
        other_kind: &[u8],
    ) {
        assert_eq!(save(&load(bytes).unwrap()), bytes, "round trip");
        for i in 0..bytes.len() {
            assert!(load(&bytes[..i]).is_err(), "truncated at {i}");
        }
        let mut longer = bytes.to_vec();
        longer.push(0);
        assert!(load(&longer).is_err(), "a trailing byte");
        assert!(load(other_kind).is_err(), "another kind of state");
        // Flipped bits either fail to load or load as a different state:
        // never as this one.
        for i in 0..bytes.len() {
            let mut bad = bytes.to_vec();
            bad[i] ^= 0x01;
            if let Ok(t) = load(&bad) {
                assert_ne!(save(&t), bytes, "bit flipped at {i}");
            }
        }
        assert!(
            load(&vec![0u8; crate::state::MAX_LEN + 1]).is_err(),
            "over the size limit"
        );
    }

    fn browse_states(rng: &mut ChaCha20Rng) -> (ExpectBrowseChallenge, ExpectBrowseGrant) {
        let server = peer(rng);
        let challenge = ExpectBrowseChallenge {
            server,
            x0_hash: [1; 32],
            bond: vec![0x30, 0x03, 1, 2, 3],
            from: NOW,
            until: NOW.plus_secs(3600),
        };
        let grant = ExpectBrowseGrant {
            server,
            x2_hash: [2; 32],
            bond: vec![0x30, 0x03, 1, 2, 3],
            from: NOW,
            until: NOW.plus_secs(3600),
        };
        (challenge, grant)
    }

    #[test]
    fn expect_browse_challenge_saved_state_is_strict() {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let (c, g) = browse_states(&mut rng);
        strict(
            &c.to_bytes(),
            ExpectBrowseChallenge::from_bytes,
            ExpectBrowseChallenge::to_bytes,
            &g.to_bytes(),
        );
        // An empty time range or bond is refused on loading.
        let empty = encode_browse(7, &c.server, &c.x0_hash, &c.bond, NOW, NOW);
        assert!(ExpectBrowseChallenge::from_bytes(&empty).is_err());
        let no_bond = encode_browse(7, &c.server, &c.x0_hash, &[], c.from, c.until);
        assert!(ExpectBrowseChallenge::from_bytes(&no_bond).is_err());
    }

    #[test]
    fn expect_browse_grant_saved_state_is_strict() {
        let mut rng = ChaCha20Rng::seed_from_u64(8);
        let (c, g) = browse_states(&mut rng);
        strict(
            &g.to_bytes(),
            ExpectBrowseGrant::from_bytes,
            ExpectBrowseGrant::to_bytes,
            &c.to_bytes(),
        );
        let big = encode_browse(
            8,
            &g.server,
            &g.x2_hash,
            &vec![0; agora_pki::MAX_CERT_LEN + 1],
            g.from,
            g.until,
        );
        assert!(ExpectBrowseGrant::from_bytes(&big).is_err(), "bond limit");
    }

    #[test]
    fn expect_bound_saved_state_is_strict() {
        let mut rng = ChaCha20Rng::seed_from_u64(9);
        let ccpo = Ccpo::new(
            CcpoDraft {
                arbiter: peer(&mut rng).id(),
                server: peer(&mut rng).id(),
                goods: "A letterpress".into(),
                price: Money::new(30_000, Currency::new("EUR").unwrap()),
                start: NOW,
                end: NOW.plus_secs(86_400),
                terms: "".into(),
                bond: vec![0x30, 0x03, 1, 2, 3],
            },
            &mut rng,
        )
        .unwrap();
        let s = ExpectBound {
            x1_hash: [3; 32],
            ccpo,
            offer: "Ships tomorrow".into(),
        };
        let (c, _) = browse_states(&mut rng);
        strict(
            &s.to_bytes(),
            ExpectBound::from_bytes,
            ExpectBound::to_bytes,
            &c.to_bytes(),
        );
        let long = ExpectBound {
            offer: "x".repeat(crate::msg::MAX_OFFER_LEN + 1),
            ..s
        };
        assert!(
            ExpectBound::from_bytes(&long.to_bytes()).is_err(),
            "offer limit"
        );
    }
}
