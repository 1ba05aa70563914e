//! Memory that can be registered for RDMA.
//!
//! A [`Region`] is one shared, memfd-backed mapping — on 2 MiB huge pages when the machine
//! has them reserved, otherwise small pages, and [`Region::backing`] says which and why.
//! A provider registers the whole region once; the rest of a program carves it up:
//! an [`Arena`] bumps out variable-size aligned [`Slice`]s, a [`Slab`] hands out equal
//! slots, and a [`TypedView`] lays an array of `bytemuck::Pod` values over either. A peer
//! reaches the memory through a [`RemoteRegion`] — address, length, rkey — that travels as
//! a fixed little-endian byte string.
//!
//! Region memory is shared with a NIC and with other processes, so nothing here hands out
//! `&[u8]` or `&T` into it on safe paths: accesses are bounds-checked copies (see
//! [`copy`]) and atomics.
//!
//! ```
//! use std::sync::atomic::Ordering;
//! use usec_regions::{huge_pages_available, Arena, Region, RemoteRegion, TypedView};
//!
//! // One region for everything; print what backs it, as benchmarks do.
//! let region = Region::new(1 << 20)?;
//! println!("{} ({})", region.backing(), huge_pages_available());
//!
//! // Bounds-checked copies in and out.
//! region.write(0, b"hello")?;
//! let mut greeting = [0u8; 5];
//! region.read(0, &mut greeting)?;
//! assert_eq!(&greeting, b"hello");
//! assert!(region.write(region.len() - 2, b"hello").is_err());
//!
//! // Carve it: a cache-line aligned doorbell and a page-aligned log of u64 entries.
//! let arena = Arena::new(region.whole());
//! let doorbell = arena.alloc(64, 64)?;
//! let log_bytes = arena.alloc(512 * 8, 4096)?;
//! let log = TypedView::<u64>::in_slice(&log_bytes, 0, 512)?;
//! log.set(7, &42)?;
//! assert_eq!(log.get(7)?, 42);
//! doorbell.atomic_u64(0)?.store(1, Ordering::Release);
//!
//! // Describe the log to a peer (the rkey comes from registering the region with verbs),
//! // send the bytes, and let the peer compute where entry 7 lives.
//! let rkey = 0x1234;
//! let wire: [u8; RemoteRegion::ENCODED_LEN] = log_bytes.remote_descriptor(rkey).to_bytes();
//! let peer_view = RemoteRegion::from_bytes(&wire)?;
//! let entry_7 = peer_view.sub(7 * 8, 8)?;
//! assert_eq!(entry_7.addr(), log.addr_of(7)?);
//! assert!(peer_view.sub(512 * 8, 1).is_err());
//! assert!(RemoteRegion::from_bytes(&wire[..10]).is_err());
//! # Ok::<(), usec_regions::Error>(())
//! ```
#![deny(missing_docs)]

mod align;
mod arena;
pub mod copy;
mod error;
mod fault_guard;
mod huge_pages;
mod region;
mod relocation;
mod remote;
mod slab;
mod slice;
mod view;

#[cfg(test)]
mod test_support;

pub use arena::Arena;
pub use error::{Error, Result};
pub use huge_pages::{huge_pages_available, HugePageReport, ShmemHugePolicy};
pub use region::{page_size, Backing, HugePages, Region, RegionOptions, HUGE_PAGE_BYTES};
pub use remote::RemoteRegion;
pub use slab::{Slab, Slot};
pub use slice::Slice;
pub use view::TypedView;
