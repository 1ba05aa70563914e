//! One RDMA verbs API over three providers.
//!
//! TODO(crate doc)
#![deny(missing_docs)]

mod access;
mod completion;
mod completion_queue;
mod device;
mod emulation;
mod error;
mod event;
#[cfg(feature = "ibverbs")]
mod ibverbs;
mod memory_region;
mod protection_domain;
mod provider;
pub mod qp;
pub mod sim;
mod soft;
mod work_request;

pub use access::AccessFlags;
pub use completion::{Completion, CompletionOpcode, Status};
pub use completion_queue::CompletionQueue;
pub use device::{
    devices, Context, DeviceAttributes, DeviceInfo, LinkLayer, PortAttributes, PortState, ProviderKind,
};
pub use error::{Error, PostRejection, Result};
pub use event::{AsyncEvent, AsyncEventKind};
pub use memory_region::MemoryRegion;
pub use protection_domain::ProtectionDomain;
pub use qp::{ConnectOptions, Endpoint, QpCaps, QpOptions, QpState, QueuePair};
pub use usec_regions::Region;
pub use work_request::{Payload, RecvWr, RemoteAddr, SendOp, SendWr, Sge};
