//! The ibverbs provider (placeholder until it is written on rdma-sys).
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::provider::DeviceOps;

pub(crate) fn open(device: &str) -> Result<Arc<dyn DeviceOps>> {
    Err(Error::ProviderUnavailable { provider: "ibverbs", reason: format!("{device}: not written yet") })
}

pub(crate) fn device_names() -> Result<Vec<String>> {
    Ok(Vec::new())
}
