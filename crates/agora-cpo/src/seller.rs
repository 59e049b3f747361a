//! Pam the (potential) Seller: a browse session (protocol 3, paper section
//! 3.8) that gives her K_p, and binding (protocol 4, section 3.9) under it.

use crate::msg::{
    digest, BindListing, BindOffer, BoundCpo, BrowseChallenge, BrowseGrant, BrowseRequest,
    BrowseResponse, EndSession, ListingRequest, Mode,
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

    /// Ends the session: the message to send, under K_p.
    pub fn end(&self, rng: &mut impl Rng) -> Vec<u8> {
        self.channel
            .seal_authed(rng, Direction::ToServer, &EndSession { session: self.id() })
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
