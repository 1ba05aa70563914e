//! Property tests: the remote descriptor's wire format and bounds arithmetic, and the
//! invariants of arena and slab carving.
//!
//! Seeded: each run uses `PROPTEST_RNG_SEED` when set, else a fixed seed, and prints the
//! seed (shown when a test fails) so a failure replays exactly.

use std::collections::HashMap;

use proptest::prelude::*;
use proptest::test_runner::RngSeed;
use usec_regions::{Arena, Error, HugePages, Region, RegionOptions, RemoteRegion, Slab, Slice, Slot};

const DEFAULT_SEED: u64 = 0x5EED_0000_0001;

fn seeded(cases: u32) -> ProptestConfig {
    let mut config = ProptestConfig::with_cases(cases);
    if config.rng_seed == RngSeed::Random {
        config.rng_seed = RngSeed::Fixed(DEFAULT_SEED);
    }
    if cfg!(miri) {
        // Miri interprets every access, and its isolation refuses the file system that
        // failure persistence reads.
        config.cases = config.cases.min(4);
        config.failure_persistence = None;
    }
    eprintln!("proptest seed {} (set PROPTEST_RNG_SEED to change it)", config.rng_seed);
    config
}

/// u64s that favour the edges where bounds arithmetic breaks.
fn edgy_u64() -> impl Strategy<Value = u64> {
    prop_oneof![
        0u64..=64,
        (0u64..=64).prop_map(|below| u64::MAX - below),
        (0u64..=64).prop_map(|around| (1u64 << 63).wrapping_add(around).wrapping_sub(32)),
        any::<u64>(),
    ]
}

fn remote_region() -> impl Strategy<Value = RemoteRegion> {
    (edgy_u64(), edgy_u64(), any::<u32>()).prop_map(|(addr, len, rkey)| {
        // Clamp instead of filtering, so edge cases are not thrown away.
        RemoteRegion::new(addr, len.min(u64::MAX - addr), rkey).expect("clamped to fit")
    })
}

fn in_range(start: u128, len: u128, container_len: u128) -> bool {
    start + len <= container_len
}

proptest! {
    #![proptest_config(seeded(2048))]

    #[test]
    fn descriptors_round_trip(region in remote_region()) {
        let bytes = region.to_bytes();
        prop_assert_eq!(RemoteRegion::from_bytes(&bytes).unwrap(), region);
        for cut in 0..bytes.len() {
            prop_assert!(RemoteRegion::from_bytes(&bytes[..cut]).is_err());
        }
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
        if let Ok(region) = RemoteRegion::from_bytes(&bytes) {
            prop_assert_eq!(region.to_bytes().to_vec(), bytes);
        }
    }

    #[test]
    fn decoding_corrupted_descriptors_never_panics(
        region in remote_region(),
        position in 0usize..RemoteRegion::ENCODED_LEN,
        replacement in any::<u8>(),
    ) {
        let mut bytes = region.to_bytes();
        bytes[position] = replacement;
        match RemoteRegion::from_bytes(&bytes) {
            Ok(decoded) => prop_assert_eq!(decoded.to_bytes(), bytes),
            Err(err) => prop_assert!(matches!(
                err,
                Error::DescriptorMagic { .. } | Error::DescriptorVersion { .. } | Error::RemoteRangeOverflow { .. }
            ), "{}", err),
        }
    }

    #[test]
    fn remote_bounds_match_wide_arithmetic(region in remote_region(), offset in edgy_u64(), len in edgy_u64()) {
        let (base, region_len) = (region.addr() as u128, region.len() as u128);
        let fits = in_range(offset as u128, len as u128, region_len);
        match region.sub(offset, len) {
            Ok(sub) => {
                prop_assert!(fits);
                prop_assert_eq!(sub.addr() as u128, base + offset as u128);
                prop_assert_eq!((sub.len(), sub.rkey()), (len, region.rkey()));
                prop_assert!(sub.end() <= region.end());
            }
            Err(err) => prop_assert!(!fits && matches!(err, Error::OutOfBounds { .. }), "{}", err),
        }
        match region.addr_of(offset, len) {
            Ok(addr) => prop_assert!(fits && addr as u128 == base + offset as u128),
            Err(_) => prop_assert!(!fits),
        }
        // The target's view: `offset` read as an absolute address.
        let absolute = offset as u128;
        let inside = absolute >= base && in_range(absolute - base, len as u128, region_len);
        match region.offset_of(offset, len) {
            Ok(found) => prop_assert!(inside && found as u128 == absolute - base),
            Err(err) => prop_assert!(!inside && matches!(err, Error::RemoteOutOfBounds { .. }), "{}", err),
        }
    }

    #[test]
    fn slice_bounds_match_wide_arithmetic(offset in edgy_u64(), len in edgy_u64(), sub_offset in edgy_u64()) {
        let region = small_region(8192);
        let (offset, len, sub_offset) = (offset as usize, len as usize, sub_offset as usize);
        match region.slice(offset, len) {
            Ok(slice) => {
                prop_assert!(in_range(offset as u128, len as u128, 8192));
                let sub_len = len / 2;
                let fits = in_range(sub_offset as u128, sub_len as u128, len as u128);
                match slice.sub(sub_offset, sub_len) {
                    Ok(sub) => prop_assert!(fits && sub.offset() == offset + sub_offset),
                    Err(_) => prop_assert!(!fits),
                }
            }
            Err(_) => prop_assert!(!in_range(offset as u128, len as u128, 8192)),
        }
    }
}

fn small_region(len: usize) -> Region {
    Region::with_options(&RegionOptions { huge_pages: HugePages::Never, ..RegionOptions::new(len) }).unwrap()
}

/// An arena request: a length and an alignment of `1 << align_shift`.
fn arena_requests() -> impl Strategy<Value = Vec<(usize, u32)>> {
    proptest::collection::vec((prop_oneof![0usize..64, 0usize..2000], 0u32..14), 1..60)
}

fn assert_disjoint(a: &Slice<'_>, b: &Slice<'_>) {
    let a_end = a.offset() + a.len();
    let b_end = b.offset() + b.len();
    assert!(
        a.is_empty() || b.is_empty() || a_end <= b.offset() || b_end <= a.offset(),
        "{a:?} overlaps {b:?}"
    );
}

proptest! {
    #![proptest_config(seeded(256))]

    #[test]
    fn arena_slices_are_aligned_inside_and_disjoint(
        area_start in 0usize..5000,
        area_len in 0usize..20_000,
        requests in arena_requests(),
    ) {
        let region = small_region(32 << 10);
        let area = region.slice(area_start, area_len).unwrap();
        let arena = Arena::new(area);
        let mut slices = Vec::new();
        for (len, align_shift) in requests {
            let align = 1usize << align_shift;
            let used_before = arena.used();
            let remaining = arena.remaining();
            let padding = (align - (area.addr() as usize + used_before) % align) % align;
            match arena.alloc(len, align) {
                Ok(slice) => {
                    prop_assert!(padding + len <= remaining);
                    prop_assert_eq!(slice.addr() % align as u64, 0);
                    prop_assert_eq!(slice.len(), len);
                    prop_assert!(slice.offset() >= area.offset());
                    prop_assert!(slice.offset() + slice.len() <= area.offset() + area.len());
                    for earlier in &slices {
                        assert_disjoint(earlier, &slice);
                    }
                    slice.fill(0, len, slices.len() as u8).unwrap();
                    slices.push(slice);
                }
                Err(Error::ArenaExhausted { requested, align: asked_align, remaining: reported }) => {
                    prop_assert!(padding + len > remaining);
                    prop_assert_eq!((requested, asked_align, reported), (len, align, remaining));
                    prop_assert_eq!(arena.used(), used_before);
                }
                Err(other) => prop_assert!(false, "unexpected error {}", other),
            }
        }
        // Disjoint on paper and in memory: every slice still holds its own fill byte.
        for (i, slice) in slices.iter().enumerate() {
            let mut bytes = vec![0u8; slice.len()];
            slice.read(0, &mut bytes).unwrap();
            prop_assert!(bytes.iter().all(|&byte| byte == i as u8));
        }
    }
}

#[derive(Clone, Debug)]
enum SlabOp {
    Alloc,
    /// Free the n-th live slot (modulo the count).
    Free(usize),
    /// Free an already freed handle again (modulo the count).
    FreeAgain(usize),
}

fn slab_ops() -> impl Strategy<Value = Vec<SlabOp>> {
    let op = prop_oneof![
        3 => Just(SlabOp::Alloc),
        2 => any::<usize>().prop_map(SlabOp::Free),
        1 => any::<usize>().prop_map(SlabOp::FreeAgain),
    ];
    proptest::collection::vec(op, 1..200)
}

proptest! {
    #![proptest_config(seeded(256))]

    #[test]
    fn slab_slots_are_exclusive_and_accounted(
        area_start in 0usize..300,
        area_len in 0usize..6000,
        slot_len in 1usize..200,
        align_shift in 0u32..8,
        ops in slab_ops(),
    ) {
        let region = small_region(8192);
        let area = region.slice(area_start, area_len).unwrap();
        let slot_align = 1usize << align_shift;
        let mut slab = Slab::new(area, slot_len, slot_align).unwrap();
        let capacity = slab.capacity();
        prop_assert!(capacity * slab.slot_stride() <= area_len);
        // The model: live handles and the fill byte each was given; freed handles.
        let mut live: Vec<(Slot, u8)> = Vec::new();
        let mut freed: Vec<Slot> = Vec::new();
        for (step, op) in ops.into_iter().enumerate() {
            match op {
                SlabOp::Alloc => match slab.alloc() {
                    Some(slot) => {
                        prop_assert!(live.len() < capacity);
                        prop_assert!(live.iter().all(|(other, _)| other.index() != slot.index()));
                        let slice = slab.slice(slot).unwrap();
                        prop_assert_eq!(slice.addr() % slot_align as u64, 0);
                        prop_assert_eq!(slice.len(), slot_len);
                        prop_assert!(slice.offset() + slice.len() <= area.offset() + area.len());
                        slice.fill(0, slot_len, step as u8).unwrap();
                        live.push((slot, step as u8));
                    }
                    None => prop_assert_eq!(live.len(), capacity),
                },
                SlabOp::Free(n) if !live.is_empty() => {
                    let (slot, _) = live.swap_remove(n % live.len());
                    slab.free(slot).unwrap();
                    freed.push(slot);
                }
                SlabOp::FreeAgain(n) if !freed.is_empty() => {
                    let slot = freed[n % freed.len()];
                    let err = slab.free(slot).unwrap_err();
                    prop_assert!(matches!(err, Error::SlotNotAllocated { .. }), "{}", err);
                }
                SlabOp::Free(_) | SlabOp::FreeAgain(_) => {}
            }
            prop_assert_eq!(slab.used(), live.len());
            prop_assert_eq!(slab.available(), capacity - live.len());
        }
        // Live slots never overlapped: each still holds the byte written at its allocation.
        let mut by_index = HashMap::new();
        for (slot, fill) in &live {
            prop_assert!(by_index.insert(slot.index(), *fill).is_none());
            let mut bytes = vec![0u8; slot_len];
            slab.slice(*slot).unwrap().read(0, &mut bytes).unwrap();
            prop_assert!(bytes.iter().all(|byte| byte == fill));
        }
    }
}
