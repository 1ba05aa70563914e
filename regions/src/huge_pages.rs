//! What huge pages the machine offers, so benchmarks and logs can say which backing a
//! region got and why.
//!
//! Two kinds matter to a memfd region:
//! - hugetlb pages, reserved up front by the administrator (`/proc/sys/vm/nr_hugepages`);
//!   a region asks for them with `MFD_HUGETLB` and falls back when none are free;
//! - transparent huge pages for shmem, which the kernel hands out on its own when
//!   `/sys/kernel/mm/transparent_hugepage/shmem_enabled` allows it; small-page regions of at
//!   least 2 MiB ask for them with `madvise(MADV_HUGEPAGE)`.

use std::fmt;

const MEMINFO_PATH: &str = "/proc/meminfo";
const SHMEM_ENABLED_PATH: &str = "/sys/kernel/mm/transparent_hugepage/shmem_enabled";

/// The kernel's policy for transparent huge pages in shmem (which backs memfds), as set in
/// `/sys/kernel/mm/transparent_hugepage/shmem_enabled`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShmemHugePolicy {
    /// Huge pages wherever they fit.
    Always,
    /// Huge pages only where they lie inside the file's size.
    WithinSize,
    /// Huge pages only for mappings advised with `MADV_HUGEPAGE`.
    Advise,
    /// Never huge pages.
    Never,
    /// Off, even for mounts that ask for them (an emergency switch).
    Deny,
    /// On for every mount (a testing switch).
    Force,
    /// A value this crate does not know.
    Other(String),
}

impl ShmemHugePolicy {
    fn parse(word: &str) -> ShmemHugePolicy {
        match word {
            "always" => ShmemHugePolicy::Always,
            "within_size" => ShmemHugePolicy::WithinSize,
            "advise" => ShmemHugePolicy::Advise,
            "never" => ShmemHugePolicy::Never,
            "deny" => ShmemHugePolicy::Deny,
            "force" => ShmemHugePolicy::Force,
            other => ShmemHugePolicy::Other(other.to_string()),
        }
    }

    /// Whether a mapping advised with `MADV_HUGEPAGE` may get transparent huge pages.
    pub fn allows_advised_mappings(&self) -> bool {
        matches!(
            self,
            ShmemHugePolicy::Always
                | ShmemHugePolicy::WithinSize
                | ShmemHugePolicy::Advise
                | ShmemHugePolicy::Force
        )
    }
}

impl fmt::Display for ShmemHugePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = match self {
            ShmemHugePolicy::Always => "always",
            ShmemHugePolicy::WithinSize => "within_size",
            ShmemHugePolicy::Advise => "advise",
            ShmemHugePolicy::Never => "never",
            ShmemHugePolicy::Deny => "deny",
            ShmemHugePolicy::Force => "force",
            ShmemHugePolicy::Other(word) => word,
        };
        f.write_str(word)
    }
}

/// The huge pages this machine offers right now. Fields are `None` when the kernel does not
/// report them (no hugetlb support, no transparent huge pages, or no `/proc`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HugePageReport {
    /// Size of a hugetlb page (`Hugepagesize` in `/proc/meminfo`).
    pub hugetlb_page_bytes: Option<u64>,
    /// Hugetlb pages reserved in all (`HugePages_Total`).
    pub hugetlb_pages_total: Option<u64>,
    /// Hugetlb pages not yet handed out (`HugePages_Free`).
    pub hugetlb_pages_free: Option<u64>,
    /// The shmem transparent huge page policy.
    pub shmem_policy: Option<ShmemHugePolicy>,
}

impl HugePageReport {
    /// Builds a report from the text of `/proc/meminfo` and of `shmem_enabled`, which
    /// lists every policy and brackets the active one (`always [never] advise`).
    pub fn parse(meminfo: &str, shmem_enabled: Option<&str>) -> HugePageReport {
        let mut report = HugePageReport::default();
        for line in meminfo.lines() {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let mut words = value.split_whitespace();
            let Some(number) = words.next().and_then(|word| word.parse::<u64>().ok()) else {
                continue;
            };
            match key.trim() {
                "HugePages_Total" => report.hugetlb_pages_total = Some(number),
                "HugePages_Free" => report.hugetlb_pages_free = Some(number),
                "Hugepagesize" => {
                    let unit_bytes = match words.next() {
                        Some("kB") => 1024,
                        Some("MB") => 1024 * 1024,
                        _ => 1,
                    };
                    report.hugetlb_page_bytes = number.checked_mul(unit_bytes);
                }
                _ => {}
            }
        }
        report.shmem_policy = shmem_enabled.and_then(active_policy);
        report
    }

    /// Whether free hugetlb pages could back `len` bytes right now (another process may
    /// take them first).
    pub fn hugetlb_fits(&self, len: usize) -> bool {
        match (self.hugetlb_pages_free, self.hugetlb_page_bytes) {
            (Some(free), Some(page_bytes)) if page_bytes > 0 => {
                let pages_needed = (len as u64).div_ceil(page_bytes);
                len > 0 && pages_needed <= free
            }
            _ => false,
        }
    }
}

impl fmt::Display for HugePageReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.hugetlb_pages_free, self.hugetlb_pages_total, self.hugetlb_page_bytes) {
            (Some(free), Some(total), Some(page_bytes)) => {
                write!(f, "hugetlb: {free} of {total} pages of {} KiB free", page_bytes / 1024)?
            }
            _ => write!(f, "hugetlb: not reported")?,
        }
        match &self.shmem_policy {
            Some(policy) => write!(f, "; shmem transparent huge pages: {policy}"),
            None => write!(f, "; shmem transparent huge pages: not reported"),
        }
    }
}

/// The bracketed word of a sysfs multiple-choice file.
fn active_policy(text: &str) -> Option<ShmemHugePolicy> {
    let word = text.split_whitespace().find(|word| word.starts_with('[') && word.ends_with(']'))?;
    Some(ShmemHugePolicy::parse(word.trim_start_matches('[').trim_end_matches(']')))
}

/// Reads what huge pages the machine offers now, from `/proc/meminfo` and
/// `/sys/kernel/mm/transparent_hugepage/shmem_enabled`. Unreadable files leave their
/// fields `None`.
pub fn huge_pages_available() -> HugePageReport {
    let meminfo = std::fs::read_to_string(MEMINFO_PATH).unwrap_or_default();
    let shmem_enabled = std::fs::read_to_string(SHMEM_ENABLED_PATH).ok();
    HugePageReport::parse(&meminfo, shmem_enabled.as_deref())
}

/// The shmem transparent huge page policy alone, for region creation.
pub(crate) fn shmem_huge_policy() -> Option<ShmemHugePolicy> {
    std::fs::read_to_string(SHMEM_ENABLED_PATH).ok().as_deref().and_then(active_policy)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{page_size, Backing, HugePages, Region, RegionOptions, HUGE_PAGE_BYTES};

    const MEMINFO: &str = "MemTotal:       16318412 kB\n\
        AnonHugePages:         0 kB\n\
        HugePages_Total:      64\n\
        HugePages_Free:       10\n\
        HugePages_Rsvd:        0\n\
        Hugepagesize:       2048 kB\n";

    #[test]
    fn parses_meminfo_and_bracketed_policy() {
        let report = HugePageReport::parse(MEMINFO, Some("always within_size [advise] never deny force\n"));
        assert_eq!(report.hugetlb_pages_total, Some(64));
        assert_eq!(report.hugetlb_pages_free, Some(10));
        assert_eq!(report.hugetlb_page_bytes, Some(2 << 20));
        assert_eq!(report.shmem_policy, Some(ShmemHugePolicy::Advise));
        assert!(report.hugetlb_fits(20 << 20));
        assert!(!report.hugetlb_fits((20 << 20) + 1));
        assert!(!report.hugetlb_fits(0));
        assert_eq!(
            report.to_string(),
            "hugetlb: 10 of 64 pages of 2048 KiB free; shmem transparent huge pages: advise"
        );
    }

    #[test]
    fn missing_files_leave_fields_empty() {
        let report = HugePageReport::parse("", None);
        assert_eq!(report, HugePageReport::default());
        assert!(!report.hugetlb_fits(1));
        assert_eq!(report.to_string(), "hugetlb: not reported; shmem transparent huge pages: not reported");
    }

    #[test]
    fn policies_that_honour_advice() {
        for (word, allows) in [
            ("always", true),
            ("within_size", true),
            ("advise", true),
            ("force", true),
            ("never", false),
            ("deny", false),
        ] {
            let policy = active_policy(&format!("x [{word}] y")).unwrap();
            assert_eq!(policy.to_string(), word);
            assert_eq!(policy.allows_advised_mappings(), allows, "{word}");
        }
        assert_eq!(active_policy("a b c"), None);
        assert_eq!(active_policy("[mystery]"), Some(ShmemHugePolicy::Other("mystery".into())));
    }

    /// The hugetlb pools as sysfs counts them, independently of `/proc/meminfo`: each
    /// page size (from the directory name) with its pages in all and free.
    fn sysfs_pools() -> Vec<(u64, u64, u64)> {
        let read = |path: std::path::PathBuf| -> u64 {
            let text =
                std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
            text.trim().parse().unwrap_or_else(|err| panic!("{}: {text:?}: {err}", path.display()))
        };
        let Ok(entries) = std::fs::read_dir("/sys/kernel/mm/hugepages") else { return Vec::new() };
        let mut pools: Vec<(u64, u64, u64)> = entries
            .map(|entry| entry.expect("a sysfs directory entry").path())
            .filter_map(|dir| {
                let name = dir.file_name()?.to_str()?.to_string();
                let kib: u64 = name.strip_prefix("hugepages-")?.strip_suffix("kB")?.parse().ok()?;
                Some((kib * 1024, read(dir.join("nr_hugepages")), read(dir.join("free_hugepages"))))
            })
            .collect();
        pools.sort_unstable();
        pools
    }

    /// The page size the kernel maps at `addr` (`KernelPageSize` of the mapping starting
    /// there, in `/proc/self/smaps`).
    fn kernel_page_size(addr: u64) -> usize {
        let smaps = std::fs::read_to_string("/proc/self/smaps").expect("/proc/self/smaps");
        let mut in_mapping = false;
        for line in smaps.lines() {
            let first = line.split_whitespace().next().unwrap_or("");
            if let Some((start, _end)) = first.split_once('-') {
                if let Ok(start) = u64::from_str_radix(start, 16) {
                    in_mapping = start == addr;
                    continue;
                }
            }
            if let Some(value) = line.strip_prefix("KernelPageSize:").filter(|_| in_mapping) {
                let kib: usize = value.trim().trim_end_matches("kB").trim().parse().expect("a size in kB");
                return kib * 1024;
            }
        }
        panic!("no mapping starts at {addr:#x} in /proc/self/smaps")
    }

    /// What is reported for this machine is what the kernel counts: the default hugetlb
    /// page size is one sysfs has a pool of, with the same pages in all (and free, when
    /// nothing took or returned one meanwhile), and the policy is the one sysfs brackets.
    #[test]
    #[cfg_attr(miri, ignore = "reads /proc and sysfs, which Miri's isolation refuses")]
    fn the_report_matches_the_kernels_own_counters() {
        let pools_before = sysfs_pools();
        let report = huge_pages_available();
        let pools_after = sysfs_pools();
        eprintln!("{report}; sysfs pools (bytes, total, free): {pools_after:?}");
        match report.hugetlb_page_bytes {
            None => assert!(pools_after.is_empty(), "sysfs has pools {pools_after:?} that the report misses"),
            Some(page_bytes) => {
                let pool = pools_after.iter().find(|(bytes, _, _)| *bytes == page_bytes);
                let &(_, total, free) = pool
                    .unwrap_or_else(|| panic!("no sysfs pool of {page_bytes}-byte pages: {pools_after:?}"));
                assert_eq!(report.hugetlb_pages_total, Some(total));
                let free_reported = report.hugetlb_pages_free.expect("free pages are reported with the size");
                assert!(free_reported <= total, "{free_reported} free of {total}");
                if pools_before == pools_after {
                    assert_eq!(free_reported, free, "free pages");
                }
            }
        }
        let policy = std::fs::read_to_string(SHMEM_ENABLED_PATH).ok().map(|text| {
            let (_, rest) = text.split_once('[').expect("sysfs brackets the active policy");
            rest.split_once(']').expect("a closing bracket").0.to_string()
        });
        assert_eq!(report.shmem_policy.map(|policy| policy.to_string()), policy);
    }

    /// A region's reported backing is the page size the kernel actually maps, and where no
    /// 2 MiB hugetlb page is free, asking for huge pages falls back to small pages and says
    /// why.
    #[test]
    #[cfg_attr(miri, ignore = "maps memfds and reads /proc, which Miri cannot")]
    fn the_backing_reported_is_the_page_size_mapped() {
        let free_2mib = || {
            sysfs_pools()
                .iter()
                .find(|(bytes, _, _)| *bytes == HUGE_PAGE_BYTES as u64)
                .map_or(0, |pool| pool.2)
        };
        let free_before = free_2mib();
        let options =
            RegionOptions { huge_pages: HugePages::IfAvailable, ..RegionOptions::new(HUGE_PAGE_BYTES) };
        let region = Region::with_options(&options).expect("a region, on huge pages or not");
        let free_after = free_2mib();
        let mapped = kernel_page_size(region.addr());
        eprintln!(
            "{}: the kernel maps {mapped}-byte pages; free 2 MiB pages {free_before} -> {free_after}",
            region.backing()
        );
        match region.backing() {
            Backing::HugePages => assert_eq!(mapped, HUGE_PAGE_BYTES),
            Backing::SmallPages { fallback_reason: Some(reason) } => {
                assert_eq!(mapped, page_size());
                assert!(reason.contains("hugetlb: "), "the reason carries the report: {reason}");
            }
            other => panic!("asked for huge pages if available, got {other}"),
        }
        if free_before == 0 && free_after == 0 {
            assert!(!matches!(region.backing(), Backing::HugePages), "huge pages from an empty pool");
        }
        let small =
            Region::with_options(&RegionOptions { huge_pages: HugePages::Never, ..RegionOptions::new(4096) })
                .expect("a small-page region");
        assert_eq!(small.backing(), &Backing::SmallPages { fallback_reason: None });
        assert_eq!(kernel_page_size(small.addr()), page_size());
    }
}
