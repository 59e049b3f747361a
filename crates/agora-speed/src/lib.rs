//! agora-speed: SPEED purchases with encrypted electronic delivery (Ruiz,
//! Martínez, Cánovas, Gómez; the paper is
//! `../shared/papers/001_26fdd69feb1dcb57.txt`) as sans-IO roles.
#![forbid(unsafe_code)]

pub mod ids;
pub mod ledger;
pub mod purse;

pub use ids::{AccountNumber, CardId, Nid, PaymentOrderId};
