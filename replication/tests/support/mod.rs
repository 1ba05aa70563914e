//! What several integration tests of this crate share.

pub mod soft_group;
