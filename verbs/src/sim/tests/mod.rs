//! Tests of the sim provider, through the public verbs API.

mod determinism;
mod errors;
mod faults;
mod operations;
mod support;
