//! The broker's ledger port (in progress).
