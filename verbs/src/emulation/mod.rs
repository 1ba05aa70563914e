//! What the soft and sim providers share: the checks a NIC makes, written once.

pub(crate) mod checks;
