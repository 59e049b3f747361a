//! The saved protocol states' decoders (`from_bytes`, saved state kinds
//! 1-13) on arbitrary bytes: no input may panic, and whatever decodes must
//! save (`to_bytes`) to exactly the same bytes.
#![no_main]
use agora_cpo::arbiter::PendingApproval;
use agora_cpo::bidding::{ExpectBidReceipt, PendingAward};
use agora_cpo::buyer::{
    ExpectArbiterAcceptance, ExpectArbiterChallenge, ExpectPostChallenge, ExpectPosted,
};
use agora_cpo::seller::{ExpectBound, ExpectBrowseChallenge, ExpectBrowseGrant};
use agora_cpo::server::{PendingBrowse, PendingListing, PendingPost};
use agora_cpo::{Bidding, FirstCome};
use libfuzzer_sys::fuzz_target;

macro_rules! roundtrip {
    ($data:expr, $($t:ty),+ $(,)?) => {
        $(
            if let Ok(s) = <$t>::from_bytes($data) {
                assert_eq!(
                    s.to_bytes(),
                    $data,
                    "{} decoded a non-canonical saved state",
                    stringify!($t)
                );
            }
        )+
    };
}

fuzz_target!(|data: &[u8]| {
    roundtrip!(
        data,
        ExpectArbiterChallenge<FirstCome>,
        ExpectArbiterChallenge<Bidding>,
        ExpectArbiterAcceptance<FirstCome>,
        ExpectArbiterAcceptance<Bidding>,
        ExpectPostChallenge,
        ExpectPosted,
        PendingApproval<FirstCome>,
        PendingApproval<Bidding>,
        PendingPost,
        ExpectBrowseChallenge,
        ExpectBrowseGrant,
        ExpectBound,
        PendingBrowse,
        PendingListing,
        ExpectBidReceipt,
        PendingAward,
    );
});
