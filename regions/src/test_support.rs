//! What the unit tests of several modules share.

use crate::region::{HugePages, Region, RegionOptions};

/// A small-page region of at least `len` bytes, so tests behave the same whether or not the
/// machine has huge pages.
pub(crate) fn small_region(len: usize) -> Region {
    Region::with_options(&RegionOptions { huge_pages: HugePages::Never, ..RegionOptions::new(len) }).unwrap()
}
