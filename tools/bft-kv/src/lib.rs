//! What the BFT group's replica (`usec-bft-kv`) and gateway (`usec-bft-gateway`) must
//! agree on: the application, the group's consensus settings and the keys.
//!
//! Keys are derived from ids and `--key-seed`: a test fixture, not a key store (a real
//! deployment would give each process its own secret key and everyone the public keys).

#![deny(missing_docs)]

use anyhow::{anyhow, Result};
use ed25519_dalek::SigningKey;
use usec_qp_pool::NodeId;
use usec_replication::bft::consensus::{ClientId, ClientKeyring, ConsensusConfig};
use usec_replication::bft::ctbcast::{CtbConfig, Keyring};

/// The application a group runs: the replica hosts its state machine, the gateway speaks
/// its RESP commands. Every replica and gateway of a group must name the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AppKind {
    /// The key-value store (`KvMachine`; GET, SET, INCR, …).
    Kv,
    /// The order-matching engine (`RespOrderBook`; BUY, SELL, CANCEL, REPLACE, BOOK, FILLS).
    Orderbook,
}

/// A digest of a state machine's state as a replica's `stats` line prints it: the first 8
/// bytes of blake3 of its snapshot, in hex. Snapshots are written in a fixed order, so
/// replicas that hold the same state print the same digest.
pub fn state_digest(snapshot: &[u8]) -> String {
    blake3::hash(snapshot).as_bytes()[..8].iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The group's settings, the same on every replica and gateway.
#[derive(Clone, Debug, clap::Args)]
pub struct GroupArgs {
    /// The replicas' node ids, comma-separated, in id order.
    #[arg(long, value_delimiter = ',', default_value = "0,1,2")]
    pub replicas: Vec<u16>,
    /// Mixed into the keys derived from ids.
    #[arg(long, default_value = "usec-bft-kv")]
    pub key_seed: String,
    /// Client ids 0 .. this may send requests (gateways' lanes take ids from this range).
    #[arg(long, default_value_t = 64)]
    pub clients: u32,
    /// The longest command or reply, in bytes.
    #[arg(long, default_value_t = 1024)]
    pub max_operation_bytes: usize,
    /// Requests in one prepare at most.
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Slots in flight past the last stable checkpoint.
    #[arg(long, default_value_t = 64)]
    pub window: u64,
    /// Messages each CTBcast stream keeps.
    #[arg(long, default_value_t = 64)]
    pub tail: u64,
}

impl GroupArgs {
    /// The replicas.
    pub fn replica_ids(&self) -> Result<Vec<NodeId>> {
        self.replicas.iter().map(|&id| NodeId::new(id).map_err(|e| anyhow!("replica id {id}: {e}"))).collect()
    }

    /// The consensus settings, with the timeouts given.
    pub fn consensus(&self, timeouts: &Timeouts) -> Result<ConsensusConfig> {
        // A prepare carries a batch of signed requests (about 100 bytes each besides the
        // operation); a promise or a commit as much again.
        let max_message_bytes = self.batch * (self.max_operation_bytes + 128) + 4096;
        let ctbcast = CtbConfig {
            tail: self.tail,
            max_message_bytes,
            fast_path_timeout_ns: timeouts.fast_path_us * 1_000,
            ..CtbConfig::default()
        };
        let config = ConsensusConfig {
            replicas: self.replica_ids()?,
            window: self.window,
            batch: self.batch,
            max_operation_bytes: self.max_operation_bytes,
            slow_path_timeout_ns: timeouts.slow_path_us * 1_000,
            view_change_timeout_ns: timeouts.view_change_us * 1_000,
            max_state_bytes: 64 << 20,
            ctbcast,
        };
        config.validate()?;
        Ok(config)
    }

    /// Every replica's public key.
    pub fn replica_keys(&self) -> Result<Keyring> {
        let ids = self.replica_ids()?;
        Ok(Keyring::new(ids.into_iter().map(|id| (id, replica_key(&self.key_seed, id).verifying_key()))))
    }

    /// Every client's public key.
    pub fn client_keys(&self) -> ClientKeyring {
        ClientKeyring::new(
            (0..self.clients).map(|c| (ClientId(c), client_key(&self.key_seed, ClientId(c)).verifying_key())),
        )
    }
}

/// The replicas' timeouts (the gateway needs none of them, only their sum's order of
/// magnitude for its own patience).
#[derive(Clone, Debug, clap::Args)]
pub struct Timeouts {
    /// How long a CTBcast receiver waits for every echo before the slow path, in µs.
    #[arg(long, default_value_t = 2_000)]
    pub fast_path_us: u64,
    /// How long a slot waits for every promise before signature shares, in µs.
    #[arg(long, default_value_t = 5_000)]
    pub slow_path_us: u64,
    /// How long a request may wait unexecuted before the view is given up, in µs.
    #[arg(long, default_value_t = 200_000)]
    pub view_change_us: u64,
}

/// Replica `id`'s signing key.
pub fn replica_key(seed: &str, id: NodeId) -> SigningKey {
    derive(seed, "replica", u32::from(id.get()))
}

/// Client `id`'s signing key.
pub fn client_key(seed: &str, id: ClientId) -> SigningKey {
    derive(seed, "client", id.0)
}

fn derive(seed: &str, kind: &str, id: u32) -> SigningKey {
    let mut material = seed.as_bytes().to_vec();
    material.extend_from_slice(kind.as_bytes());
    material.extend_from_slice(&id.to_le_bytes());
    SigningKey::from_bytes(&blake3::derive_key("usec-bft-kv key v1", &material))
}
