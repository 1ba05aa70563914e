//! Arbitrary bytes into the RESP request parser, the applications' request handling and
//! the reply scanner: see `usec_replication::apps::fuzz` for what is checked.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| usec_replication::apps::fuzz::check(data));
