//! Regions as the operating system sees them: a second mapping of the same memfd (how
//! another process maps a region), huge page policies, and what backs a region.
//!
//! Not under Miri: every test here is about the kernel's mappings and `/proc`, which Miri
//! does not interpret.
#![cfg(not(miri))]

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;

use usec_regions::{huge_pages_available, Backing, Error, HugePages, Region, RegionOptions, HUGE_PAGE_BYTES};

fn options(len: usize, huge_pages: HugePages) -> RegionOptions {
    RegionOptions { huge_pages, ..RegionOptions::new(len) }
}

/// Opens the region's memfd again, as another process does through `/proc/<pid>/fd/<n>`.
fn reopen(region: &Region) -> File {
    let path = format!("/proc/self/fd/{}", region.fd().as_raw_fd());
    OpenOptions::new().read(true).write(true).open(&path).unwrap_or_else(|err| panic!("open {path}: {err}"))
}

fn assert_mappings_share_bytes(first: &Region, second: &Region) {
    assert_ne!(first.addr(), second.addr(), "two mappings, not one");
    first.write(100, b"from the first").unwrap();
    let mut seen = [0u8; 14];
    second.read(100, &mut seen).unwrap();
    assert_eq!(&seen, b"from the first");

    let last = second.len() - 8;
    second.write_pod(last, &0xFEED_F00Du64).unwrap();
    assert_eq!(first.read_pod::<u64>(last).unwrap(), 0xFEED_F00D);

    let counter_in_first = first.atomic_u64(4096).unwrap();
    let counter_in_second = second.atomic_u64(4096).unwrap();
    for _ in 0..10 {
        counter_in_first.fetch_add(1, Ordering::AcqRel);
        counter_in_second.fetch_add(1, Ordering::AcqRel);
    }
    assert_eq!(counter_in_first.load(Ordering::Acquire), 20);
}

#[test]
fn two_mappings_of_one_memfd_see_each_others_writes() {
    let first = Region::with_options(&options(64 << 10, HugePages::Never)).unwrap();
    let second = Region::from_file(reopen(&first), first.len(), true).unwrap();
    assert_eq!(second.backing(), &Backing::File);
    assert_mappings_share_bytes(&first, &second);
}

#[test]
fn a_second_mapping_may_cover_a_prefix_without_populating() {
    let first = Region::with_options(&options(64 << 10, HugePages::Never)).unwrap();
    let prefix = Region::from_file(reopen(&first), 8192, false).unwrap();
    assert_eq!(prefix.len(), 8192);
    prefix.write(8000, b"prefix").unwrap();
    assert_eq!(first.read_pod::<[u8; 6]>(8000).unwrap(), *b"prefix");
}

#[test]
fn default_region_is_shared_whatever_backs_it() {
    let first = Region::new(HUGE_PAGE_BYTES).unwrap();
    eprintln!("default region: {}", first.backing());
    let second = Region::from_file(reopen(&first), first.len(), true).unwrap();
    assert_mappings_share_bytes(&first, &second);
}

#[test]
fn mapping_more_than_the_file_holds_is_refused() {
    let first = Region::with_options(&options(4096, HugePages::Never)).unwrap();
    let err = Region::from_file(reopen(&first), 8192, true).unwrap_err();
    assert!(matches!(err, Error::FileTooShort { file_len: 4096, len: 8192 }), "{err}");
    assert!(matches!(Region::from_file(reopen(&first), 0, true), Err(Error::EmptyRegion)));
}

#[test]
fn required_huge_pages_are_given_or_refused_with_a_reason() {
    let report = huge_pages_available();
    eprintln!("{report}");
    let result = Region::with_options(&options(HUGE_PAGE_BYTES, HugePages::Required));
    if report.hugetlb_fits(HUGE_PAGE_BYTES) {
        let region = result.expect("a free huge page was reported");
        assert_eq!(region.backing(), &Backing::HugePages);
        assert_eq!(region.addr() % HUGE_PAGE_BYTES as u64, 0);
        assert!(!region.transparent_huge_pages_eligible());
        let second = Region::from_file(reopen(&region), region.len(), true).unwrap();
        assert_mappings_share_bytes(&region, &second);
    } else {
        match result {
            Err(Error::HugePagesUnavailable { reason }) => {
                eprintln!("refused: {reason}");
                assert!(reason.contains("hugetlb"), "the reason names the hugetlb pool: {reason}");
            }
            other => panic!("no free huge page was reported, yet: {other:?}"),
        }
    }
}

#[test]
fn if_available_falls_back_and_says_why() {
    let report = huge_pages_available();
    let region = Region::with_options(&options(HUGE_PAGE_BYTES, HugePages::IfAvailable)).unwrap();
    match region.backing() {
        Backing::HugePages => assert!(report.hugetlb_pages_total.unwrap_or(0) > 0),
        Backing::SmallPages { fallback_reason: Some(reason) } => assert!(!reason.is_empty()),
        other => panic!("unexpected backing {other}"),
    }
    let never = Region::with_options(&options(4096, HugePages::Never)).unwrap();
    assert_eq!(never.backing(), &Backing::SmallPages { fallback_reason: None });
}

#[test]
fn transparent_huge_pages_follow_size_and_policy() {
    let allowed = huge_pages_available().shmem_policy.is_some_and(|policy| policy.allows_advised_mappings());
    let large = Region::with_options(&options(2 * HUGE_PAGE_BYTES, HugePages::Never)).unwrap();
    assert_eq!(large.transparent_huge_pages_eligible(), allowed);
    let small = Region::with_options(&options(HUGE_PAGE_BYTES - 4096, HugePages::Never)).unwrap();
    assert!(!small.transparent_huge_pages_eligible(), "too small for a huge page");
    // Huge page advice must not change what a region holds.
    large.write(HUGE_PAGE_BYTES - 3, b"straddle").unwrap();
    assert_eq!(large.read_pod::<[u8; 8]>(HUGE_PAGE_BYTES - 3).unwrap(), *b"straddle");
}

#[test]
fn unpopulated_regions_fault_in_on_first_touch() {
    let options = RegionOptions { populate: false, ..options(4 * HUGE_PAGE_BYTES, HugePages::Never) };
    let region = Region::with_options(&options).unwrap();
    region.write(region.len() - 1, &[1]).unwrap();
    assert_eq!(region.read_pod::<u8>(region.len() - 1).unwrap(), 1);
    assert_eq!(region.read_pod::<u8>(0).unwrap(), 0);
}
