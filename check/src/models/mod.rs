//! Models of the objects we check: a key-value store with Redis's string commands, and a
//! single register.

pub mod kv;
pub mod register;

pub use kv::{Kv, KvInput, KvOutput};
pub use register::{Register, RegisterInput, RegisterOutput};
