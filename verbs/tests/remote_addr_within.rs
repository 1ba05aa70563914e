//! `RemoteAddr::within`: the address it gives is always inside the region, it refuses
//! exactly the accesses that do not fit, and its errors name the region, the offset and
//! the length.
//!
//! The property runs are seeded from `USEC_SEED` (or a fresh seed, printed).

use std::time::{SystemTime, UNIX_EPOCH};

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestRunner};
use usec_regions::RemoteRegion;
use usec_verbs::{Error, RemoteAddr};

/// `USEC_SEED` if set, else a fresh seed; printed either way, so a failure replays.
fn seed() -> u64 {
    let seed = match std::env::var("USEC_SEED") {
        Ok(text) => text.parse().unwrap_or_else(|_| panic!("USEC_SEED={text:?} is not a u64")),
        Err(_) => {
            let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_nanos());
            (nanos as u64) ^ u64::from(std::process::id()).rotate_left(32)
        }
    };
    eprintln!("RemoteAddr::within: seed {seed} (replay with USEC_SEED={seed})");
    seed
}

/// A value in `0..=max`, often at or near the edges, where off-by-ones and overflows live.
fn near_edges(max: u64) -> impl Strategy<Value = u64> {
    prop_oneof![Just(0), Just(max), (0..=max.min(64)), (max.saturating_sub(64)..=max), (0..=max),]
}

/// A region that does not wrap the address space, often near its top or empty.
fn region() -> impl Strategy<Value = RemoteRegion> {
    (near_edges(u64::MAX), any::<u32>()).prop_flat_map(|(addr, rkey)| {
        near_edges(u64::MAX - addr).prop_map(move |len| RemoteRegion::new(addr, len, rkey).expect("no wrap"))
    })
}

/// A region, then an offset and a length that fit it about half the time.
fn access() -> impl Strategy<Value = (RemoteRegion, u64, u64)> {
    region().prop_flat_map(|region| {
        let offset = prop_oneof![near_edges(region.len()), any::<u64>()];
        (Just(region), offset).prop_flat_map(|(region, offset)| {
            let room = region.len().saturating_sub(offset);
            let len = prop_oneof![near_edges(room), room.saturating_add(1)..=u64::MAX, any::<u64>()];
            (Just(region), Just(offset), len)
        })
    })
}

#[test]
fn within_never_yields_an_address_outside_the_region() {
    let config = Config {
        cases: 5_000,
        failure_persistence: None,
        rng_seed: RngSeed::Fixed(seed()),
        ..Config::default()
    };
    let (inside, outside) = (std::cell::Cell::new(0u32), std::cell::Cell::new(0u32));
    let result = TestRunner::new(config).run(&access(), |(region, offset, len)| {
        let fits = offset.checked_add(len).is_some_and(|end| end <= region.len());
        match RemoteAddr::within(&region, offset, len) {
            Ok(remote) => {
                inside.set(inside.get() + 1);
                prop_assert!(fits, "{len} bytes at {offset} accepted in {region:?}");
                prop_assert_eq!(remote.rkey, region.rkey());
                prop_assert!(remote.addr >= region.addr(), "{remote:?} starts before {region:?}");
                let end = remote.addr.checked_add(len);
                prop_assert!(end.is_some_and(|end| end <= region.end()), "{remote:?} + {len} ends past {region:?}");
                prop_assert_eq!(remote.addr - region.addr(), offset);
            }
            Err(error) => {
                outside.set(outside.get() + 1);
                prop_assert!(!fits, "{len} bytes at {offset} refused in {region:?}: {error}");
                prop_assert!(
                    matches!(error, Error::OutsideRegion { region: r, offset: o, len: l } if (r, o, l) == (region, offset, len)),
                    "{error:?}"
                );
                let text = error.to_string();
                for part in [
                    format!("{len} bytes"),
                    format!("offset {offset}"),
                    format!("{} bytes at {:#x}", region.len(), region.addr()),
                    format!("rkey {:#x}", region.rkey()),
                ] {
                    prop_assert!(text.contains(&part), "{text:?} lacks {part:?}");
                }
            }
        }
        Ok(())
    });
    if let Err(error) = result {
        panic!("{error}");
    }
    // The strategy must exercise both sides of the bound, or the property says little.
    let (inside, outside) = (inside.get(), outside.get());
    eprintln!("{inside} inside, {outside} outside");
    assert!(inside > 500 && outside > 500, "{inside} inside, {outside} outside");
}

#[test]
fn the_edges_by_hand() {
    let region = RemoteRegion::new(0x1000, 64, 0xab).unwrap();
    assert_eq!(RemoteAddr::within(&region, 0, 64).unwrap(), RemoteAddr { addr: 0x1000, rkey: 0xab });
    assert_eq!(RemoteAddr::within(&region, 56, 8).unwrap(), RemoteAddr { addr: 0x1038, rkey: 0xab });
    // An empty access at the end names the end, as an empty slice at the end does.
    assert_eq!(RemoteAddr::within(&region, 64, 0).unwrap().addr, 0x1040);
    assert!(RemoteAddr::within(&region, 57, 8).is_err());
    assert!(RemoteAddr::within(&region, 65, 0).is_err());
    assert!(RemoteAddr::within(&region, u64::MAX, 2).is_err());
    assert!(RemoteAddr::within(&region, 8, u64::MAX).is_err());
    let top = RemoteRegion::new(u64::MAX - 8, 8, 1).unwrap();
    assert_eq!(RemoteAddr::within(&top, 0, 8).unwrap().addr, u64::MAX - 8);
    assert!(RemoteAddr::within(&top, 1, 8).is_err());
    let text = RemoteAddr::within(&region, 60, 8).unwrap_err().to_string();
    assert_eq!(text, "8 bytes at offset 60 do not fit the remote region of 64 bytes at 0x1000 (rkey 0xab)");
}
