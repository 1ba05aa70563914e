//! The fabric directory: where nodes publish their control blocks, and how leftovers of
//! crashed runs are swept so they never break a new run.
//!
//! A fabric `soft:<name>` is the directory `$USEC_SOFT_DIR/<name>` (default
//! `/dev/shm/usec-soft/<name>`). Each node is one file `node-<pid>-<n>` holding its control
//! block. A file is written under a temporary name and renamed into place, so a peer never
//! sees a half-initialised block. Registered memory and receive queues are memfds that
//! peers open through `/proc/<pid>/fd/<n>`; the kernel frees them when their last user
//! goes, so a SIGKILLed process leaks at most its control block file, which the next node
//! to open the fabric removes.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::soft::layout::{CONTROL_BLOCK_BYTES, LAYOUT_VERSION, MAGIC};
use crate::soft::process::{process_alive, start_time_of};

const DEFAULT_BASE: &str = "/dev/shm/usec-soft";
const NODE_PREFIX: &str = "node-";
const TEMP_PREFIX: &str = ".tmp-node-";

/// The directory that holds every soft fabric.
pub(crate) fn base_dir() -> PathBuf {
    std::env::var_os("USEC_SOFT_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(DEFAULT_BASE))
}

/// The directory of one fabric.
pub(crate) fn fabric_dir(fabric: &str) -> PathBuf {
    base_dir().join(fabric)
}

/// The file name of a node's control block.
pub(crate) fn node_file_name(pid: u32, node: u32) -> String {
    format!("{NODE_PREFIX}{pid}-{node}")
}

/// FNV-1a of the fabric name: endpoints carry it so peers of different fabrics refuse
/// each other.
pub(crate) fn fabric_hash(fabric: &str) -> u64 {
    fabric
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3))
}

/// Names of the fabrics that exist.
pub(crate) fn list_fabrics() -> Result<Vec<String>> {
    let base = base_dir();
    let entries = match fs::read_dir(&base) {
        Ok(entries) => entries,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(Error::os(format!("reading {}", base.display()), err)),
    };
    let mut names: Vec<String> = entries
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.file_type().map(|kind| kind.is_dir()).unwrap_or(false))
        .filter_map(|entry| entry.file_name().into_string().ok())
        .collect();
    names.sort();
    Ok(names)
}

/// Sweeps control blocks left by dead processes (or earlier lives of a reused pid) from
/// every fabric, and removes fabric directories that have stayed empty a while, so
/// crashed runs leave nothing behind for long. Returns the fabric's directory.
pub(crate) fn prepare(fabric: &str) -> Result<PathBuf> {
    sweep_all_fabrics();
    let dir = fabric_dir(fabric);
    fs::create_dir_all(&dir)
        .map_err(|err| Error::os(format!("creating fabric directory {}", dir.display()), err))?;
    sweep_stale(&dir)?;
    Ok(dir)
}

/// An empty fabric directory younger than this may be one a peer has just created and is
/// about to put its node in: leave it.
const EMPTY_FABRIC_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

fn sweep_all_fabrics() {
    let Ok(entries) = fs::read_dir(base_dir()) else { return };
    for entry in entries.filter_map(|entry| entry.ok()) {
        let path = entry.path();
        if !entry.file_type().is_ok_and(|kind| kind.is_dir()) || sweep_stale(&path).is_err() {
            continue;
        }
        let idle = entry.metadata().and_then(|meta| meta.modified()).ok().and_then(|at| at.elapsed().ok());
        if idle.is_some_and(|idle| idle > EMPTY_FABRIC_GRACE) {
            // Fails (harmlessly) unless the directory is empty.
            let _ = fs::remove_dir(&path);
        }
    }
}

/// Removes a fabric's directory if it is empty (the last node closed).
pub(crate) fn remove_if_empty(dir: &Path) {
    let _ = fs::remove_dir(dir);
}

fn sweep_stale(dir: &Path) -> Result<()> {
    let entries = fs::read_dir(dir).map_err(|err| Error::os(format!("reading {}", dir.display()), err))?;
    for entry in entries.filter_map(|entry| entry.ok()) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = owner_pid(&name) else { continue };
        if !owner_is_alive(&entry.path(), pid) {
            // Another sweeper may have removed it first; that is fine.
            let _ = fs::remove_file(entry.path());
        }
    }
    Ok(())
}

/// The pid a node or temporary file name carries.
fn owner_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(NODE_PREFIX).or_else(|| name.strip_prefix(TEMP_PREFIX))?;
    rest.split('-').next()?.parse().ok()
}

/// Whether the file's owner process still runs: same pid, same start time.
fn owner_is_alive(path: &Path, pid: u32) -> bool {
    if !process_alive(pid) {
        return false;
    }
    match read_header_identity(path) {
        Some((header_pid, start_time)) => header_pid == pid && start_time_of(pid) == Some(start_time),
        // A live process's temporary file may not have its header yet.
        None => path.file_name().is_some_and(|name| name.to_string_lossy().starts_with(TEMP_PREFIX)),
    }
}

/// Reads (pid, start time) from a control block file without mapping it.
fn read_header_identity(path: &Path) -> Option<(u32, u64)> {
    let file = File::open(path).ok()?;
    let mut header = [0u8; 40];
    file.read_exact_at(&mut header, 0).ok()?;
    let field = |at: usize, len: usize| &header[at..at + len];
    let magic = u64::from_le_bytes(field(0, 8).try_into().ok()?);
    let version = u32::from_le_bytes(field(8, 4).try_into().ok()?);
    if magic != MAGIC || version != LAYOUT_VERSION {
        return None;
    }
    let pid = u32::from_le_bytes(field(12, 4).try_into().ok()?);
    let start_time = u64::from_le_bytes(field(32, 8).try_into().ok()?);
    Some((pid, start_time))
}

/// A control block file created under a temporary name, to be published with
/// [`NewNodeFile::publish`] once its header is written.
pub(crate) struct NewNodeFile {
    pub file: File,
    temp_path: PathBuf,
    final_path: PathBuf,
}

impl NewNodeFile {
    pub(crate) fn create(dir: &Path, pid: u32, node: u32) -> Result<NewNodeFile> {
        let temp_path = dir.join(format!("{TEMP_PREFIX}{pid}-{node}"));
        let final_path = dir.join(node_file_name(pid, node));
        let _ = fs::remove_file(&temp_path);
        let open = || OpenOptions::new().read(true).write(true).create_new(true).mode(0o600).open(&temp_path);
        let file = match open() {
            // The last node of the fabric just removed the directory: make it again.
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                fs::create_dir_all(dir).and_then(|()| open())
            }
            other => other,
        }
        .map_err(|err| Error::os(format!("creating {}", temp_path.display()), err))?;
        file.set_len(CONTROL_BLOCK_BYTES as u64).map_err(|err| Error::os("sizing a control block", err))?;
        Ok(NewNodeFile { file, temp_path, final_path })
    }

    /// Makes the node visible under its final name.
    pub(crate) fn publish(self) -> Result<PathBuf> {
        fs::rename(&self.temp_path, &self.final_path)
            .map_err(|err| Error::os(format!("publishing {}", self.final_path.display()), err))?;
        Ok(self.final_path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back() {
        assert_eq!(owner_pid(&node_file_name(1234, 7)), Some(1234));
        assert_eq!(owner_pid(".tmp-node-99-0"), Some(99));
        assert_eq!(owner_pid("other"), None);
        assert_ne!(fabric_hash("a"), fabric_hash("b"));
    }
}
