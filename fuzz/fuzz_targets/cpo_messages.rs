//! Every CPO message's strict decoder on arbitrary bytes: no input may
//! panic, and whatever decodes must re-encode to exactly the same bytes.
#![no_main]
use agora_core::wire::{self, Message};
use agora_cpo::bidding::{
    Award, AwardRequest, Bid, BidListing, BidReceipt, BidsReply, BidsRequest, Notice,
};
use agora_cpo::delivery::{
    BindingReply, BindingRequest, PostedReply, PostedRequest, Proof, ProofChallenge,
};
use agora_cpo::msg::{
    ArbiterAcceptance, ArbiterChallenge, ArbiterRequest, ArbiterResponse, BindListing, BindOffer,
    BoundCpo, BrowseChallenge, BrowseGrant, BrowseRequest, BrowseResponse, EndSession,
    ListingRequest, Listings, ListingsRequest, PostChallenge, PostRequest, PostResponse, PostedCpo,
};
use agora_cpo::recovery::{BindingAnswer, BindingQuery};
use agora_cpo::{Bidding, FirstCome};
use libfuzzer_sys::fuzz_target;

fn roundtrip<M: Message>(data: &[u8]) {
    if let Ok(m) = wire::decode::<M>(data) {
        assert_eq!(wire::encode(&m), data, "decoded a non-canonical encoding");
    }
}

fuzz_target!(|data: &[u8]| {
    roundtrip::<ArbiterRequest<FirstCome>>(data);
    roundtrip::<ArbiterRequest<Bidding>>(data);
    roundtrip::<ArbiterChallenge<FirstCome>>(data);
    roundtrip::<ArbiterChallenge<Bidding>>(data);
    roundtrip::<ArbiterResponse<FirstCome>>(data);
    roundtrip::<ArbiterResponse<Bidding>>(data);
    roundtrip::<ArbiterAcceptance<FirstCome>>(data);
    roundtrip::<ArbiterAcceptance<Bidding>>(data);
    roundtrip::<PostRequest>(data);
    roundtrip::<PostChallenge>(data);
    roundtrip::<PostResponse>(data);
    roundtrip::<PostedCpo>(data);
    roundtrip::<BrowseRequest>(data);
    roundtrip::<BrowseChallenge>(data);
    roundtrip::<BrowseResponse>(data);
    roundtrip::<BrowseGrant>(data);
    roundtrip::<EndSession>(data);
    roundtrip::<ListingRequest>(data);
    roundtrip::<ListingsRequest>(data);
    roundtrip::<Listings>(data);
    roundtrip::<BindListing>(data);
    roundtrip::<BindOffer>(data);
    roundtrip::<BoundCpo>(data);
    roundtrip::<BidListing>(data);
    roundtrip::<Bid>(data);
    roundtrip::<BidReceipt>(data);
    roundtrip::<AwardRequest>(data);
    roundtrip::<Award>(data);
    roundtrip::<Notice>(data);
    roundtrip::<BidsRequest>(data);
    roundtrip::<BidsReply>(data);
    roundtrip::<BindingRequest>(data);
    roundtrip::<BindingReply>(data);
    roundtrip::<PostedRequest>(data);
    roundtrip::<PostedReply>(data);
    roundtrip::<ProofChallenge>(data);
    roundtrip::<Proof>(data);
    roundtrip::<BindingQuery>(data);
    roundtrip::<BindingAnswer>(data);
});
