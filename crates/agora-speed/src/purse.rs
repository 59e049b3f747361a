//! The e-purse card and the broker's SAM (in progress).
