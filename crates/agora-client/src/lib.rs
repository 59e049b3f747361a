//! agora-client: the parties' side of every system (ARCHITECTURE section 1).
//!
//! - [`transport`]: how a party reaches the server-side roles: the CPO
//!   roles hosted in this process ([`transport::LocalCpo`]) or a node over
//!   HTTP ([`transport::NodeClient`], and [`transport::AsyncNodeClient`] for
//!   event loops), both behind [`transport::CpoTransport`].
//! - [`datadir`]: a party's data directory: keystore, trust store, store.
//! - [`cpo`]: the CPO buyer's and seller's flows, each once, as sans-IO
//!   conversations ([`cpo::flow`]), and the drivers that carry them.
//! - [`speed`]: the SPEED customer ([`speed::SpeedClient`]).
//! - [`stp`]: an STP process's subtransactions kept between runs
//!   ([`stp::StpClient`]) over a commit authority in process or over HTTP.
//!
//! agora-node is the only crate that serves HTTP, and this one the only
//! one that speaks it as a client.
#![forbid(unsafe_code)]

pub mod cpo;
#[cfg(feature = "transport")]
pub mod datadir;
#[cfg(feature = "transport")]
pub mod lite;
#[cfg(feature = "transport")]
pub mod speed;
#[cfg(feature = "transport")]
pub mod stp;
#[cfg(feature = "transport")]
pub mod transport;
