//! The soft provider (in progress).
use crate::error::{Error, Result};
use crate::provider::DeviceOps;
use std::sync::Arc;

pub(crate) fn open(_fabric: &str) -> Result<Arc<dyn DeviceOps>> {
    Err(Error::ProviderUnavailable { provider: "soft", reason: "not yet".into() })
}

pub(crate) fn fabrics() -> Result<Vec<String>> {
    Ok(Vec::new())
}
