//! [`Keyspace`]: the keys, their values and their deadlines, ordered so that every replica
//! walks them in the same order.
//!
//! Keys sit in a B-tree ordered by (a fixed 64-bit hash of the key, the key): lookups need
//! no allocation, iteration order is the same on every replica and after a snapshot, and a
//! SCAN cursor is simply the next hash to visit — a key present from the first call to the
//! last is returned at least once whatever is added or removed in between, as Redis
//! promises, and the cursor stays valid across a change of leader. Colliding hashes cost
//! a byte comparison, never a degraded structure.
//!
//! Time is never read here: every operation that can see an expired key is given `now_ms`,
//! the time stamped into the command being applied.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use xxhash_rust::xxh3::xxh3_64;

/// A key: its hash and its bytes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    hash: u64,
    bytes: Box<[u8]>,
}

impl Key {
    /// The key `bytes`.
    pub fn new(bytes: &[u8]) -> Key {
        Key { hash: xxh3_64(bytes), bytes: bytes.into() }
    }

    /// Its bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Its hash: its place in iteration order.
    pub fn hash(&self) -> u64 {
        self.hash
    }
}

/// A key looked up without building a [`Key`].
trait Lookup {
    fn parts(&self) -> (u64, &[u8]);
}

impl Lookup for Key {
    fn parts(&self) -> (u64, &[u8]) {
        (self.hash, &self.bytes)
    }
}

impl Lookup for (u64, &[u8]) {
    fn parts(&self) -> (u64, &[u8]) {
        *self
    }
}

impl<'a> Borrow<dyn Lookup + 'a> for Key {
    fn borrow(&self) -> &(dyn Lookup + 'a) {
        self
    }
}

impl PartialEq for dyn Lookup + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}

impl Eq for dyn Lookup + '_ {}

impl PartialOrd for dyn Lookup + '_ {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for dyn Lookup + '_ {
    // The same order as `Key`'s derived one: hash, then bytes.
    fn cmp(&self, other: &Self) -> Ordering {
        self.parts().cmp(&other.parts())
    }
}

/// A value and its deadline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Value {
    /// The string.
    pub bytes: Vec<u8>,
    /// When it expires, in milliseconds since the Unix epoch, if it does.
    pub expires_at_ms: Option<i64>,
}

/// The keyspace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Keyspace {
    map: BTreeMap<Key, Value>,
    /// (deadline, key) for every key that has one.
    deadlines: BTreeSet<(i64, Key)>,
}

/// Expired keys reclaimed per applied command at most, so one command never pays for a
/// mass expiry.
const RECLAIM_PER_COMMAND: usize = 8;

fn expired(value: &Value, now_ms: i64) -> bool {
    value.expires_at_ms.is_some_and(|at| at <= now_ms)
}

impl Keyspace {
    fn lookup_key(bytes: &[u8]) -> (u64, &[u8]) {
        (xxh3_64(bytes), bytes)
    }

    /// Keys held, expired ones not yet reclaimed included (as Redis's DBSIZE counts).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether it holds no key.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The live value of `key`; an expired one reads as absent and stays until a write
    /// or [`Keyspace::reclaim_expired`] removes it, so reads never change the state (a
    /// follower serves stale reads without diverging from its leader).
    pub fn get(&self, key: &[u8], now_ms: i64) -> Option<&Value> {
        let lookup = Self::lookup_key(key);
        let probe: &dyn Lookup = &lookup;
        self.map.get(probe).filter(|value| !expired(value, now_ms))
    }

    /// The live value of `key`, to change its bytes (not its deadline: use
    /// [`Keyspace::set_deadline`]); an expired one is removed.
    pub fn get_mut(&mut self, key: &[u8], now_ms: i64) -> Option<&mut Value> {
        let lookup = Self::lookup_key(key);
        let probe: &dyn Lookup = &lookup;
        let is_expired = expired(self.map.get(probe)?, now_ms);
        if is_expired {
            self.remove(key);
            return None;
        }
        self.map.get_mut(probe)
    }

    /// Sets `key` to `bytes`; its deadline becomes `expires_at_ms`, or stays as it was with
    /// `keep_deadline`.
    pub fn set(&mut self, key: &[u8], bytes: Vec<u8>, expires_at_ms: Option<i64>, keep_deadline: bool) {
        let lookup = Self::lookup_key(key);
        let probe: &dyn Lookup = &lookup;
        let old_deadline = self.map.get(probe).and_then(|value| value.expires_at_ms);
        let deadline = if keep_deadline { old_deadline } else { expires_at_ms };
        let owned = Key { hash: lookup.0, bytes: key.into() };
        if old_deadline != deadline {
            if let Some(old) = old_deadline {
                self.deadlines.remove(&(old, owned.clone()));
            }
            if let Some(new) = deadline {
                self.deadlines.insert((new, owned.clone()));
            }
        }
        match self.map.get_mut(probe) {
            Some(value) => {
                value.bytes = bytes;
                value.expires_at_ms = deadline;
            }
            None => {
                self.map.insert(owned, Value { bytes, expires_at_ms: deadline });
            }
        }
    }

    /// Changes the deadline of a live `key`; false if there is none.
    pub fn set_deadline(&mut self, key: &[u8], expires_at_ms: Option<i64>, now_ms: i64) -> bool {
        let Some(value) = self.get_mut(key, now_ms) else { return false };
        let old = std::mem::replace(&mut value.expires_at_ms, expires_at_ms);
        if old != expires_at_ms {
            let owned = Key::new(key);
            if let Some(old) = old {
                self.deadlines.remove(&(old, owned.clone()));
            }
            if let Some(new) = expires_at_ms {
                self.deadlines.insert((new, owned));
            }
        }
        true
    }

    /// Removes `key` whatever its deadline; whether it was there.
    pub fn remove(&mut self, key: &[u8]) -> bool {
        let lookup = Self::lookup_key(key);
        let probe: &dyn Lookup = &lookup;
        match self.map.remove_entry(probe) {
            Some((owned, value)) => {
                if let Some(at) = value.expires_at_ms {
                    self.deadlines.remove(&(at, owned));
                }
                true
            }
            None => false,
        }
    }

    /// Removes every key.
    pub fn clear(&mut self) {
        self.map.clear();
        self.deadlines.clear();
    }

    /// Reclaims a few keys whose deadline passed (the earliest first), so keys nobody reads
    /// again do not stay forever. Deterministic: every replica reclaims the same keys at the
    /// same command.
    pub fn reclaim_expired(&mut self, now_ms: i64) {
        for _ in 0..RECLAIM_PER_COMMAND {
            let Some((at, key)) = self.deadlines.first() else { return };
            if *at > now_ms {
                return;
            }
            let key = key.clone();
            self.deadlines.pop_first();
            self.map.remove(&key);
        }
    }

    /// Live keys in iteration order.
    pub fn live_keys(&self, now_ms: i64) -> impl Iterator<Item = &Key> + '_ {
        self.map.iter().filter(move |(_, value)| !expired(value, now_ms)).map(|(key, _)| key)
    }

    /// One SCAN step from `cursor`: calls `visit` on live keys in order, taking whole hash
    /// buckets until at least `count` keys were looked at; returns the next cursor (0 when
    /// the walk is over).
    pub fn scan<'a>(&'a self, cursor: u64, count: usize, now_ms: i64, mut visit: impl FnMut(&'a Key)) -> u64 {
        let from: &dyn Lookup = &(cursor, &[][..]);
        let mut last_hash = None;
        let range = (std::ops::Bound::Included(from), std::ops::Bound::Unbounded);
        for (looked, (key, value)) in self.map.range::<dyn Lookup, _>(range).enumerate() {
            if looked >= count && last_hash != Some(key.hash) {
                // Resume at this bucket: its hash is above `cursor`, so never 0.
                return key.hash;
            }
            last_hash = Some(key.hash);
            if !expired(value, now_ms) {
                visit(key);
            }
        }
        0
    }

    /// Every entry, in iteration order (for snapshots).
    pub fn entries(&self) -> impl Iterator<Item = (&Key, &Value)> + '_ {
        self.map.iter()
    }

    /// Adds an entry while restoring a snapshot.
    pub fn insert_restored(&mut self, key: &[u8], value: Value) {
        let owned = Key::new(key);
        if let Some(at) = value.expires_at_ms {
            self.deadlines.insert((at, owned.clone()));
        }
        if let Some(old) = self.map.insert(owned.clone(), value) {
            if let Some(at) = old.expires_at_ms {
                self.deadlines.remove(&(at, owned));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_expiry_and_reclaim() {
        let mut keys = Keyspace::default();
        keys.set(b"a", b"1".to_vec(), Some(100), false);
        keys.set(b"b", b"2".to_vec(), None, false);
        assert_eq!(keys.get(b"a", 99).map(|value| value.bytes.clone()), Some(b"1".to_vec()));
        assert!(keys.get(b"a", 100).is_none());
        assert_eq!(keys.len(), 2, "a read does not remove");
        keys.set(b"a", b"3".to_vec(), None, true);
        assert_eq!(keys.get(b"a", 99).unwrap().expires_at_ms, Some(100), "the deadline was kept");
        assert!(keys.get_mut(b"a", 100).is_none(), "expired at its deadline");
        assert_eq!(keys.len(), 1);
        keys.set(b"c", b"4".to_vec(), Some(50), false);
        keys.reclaim_expired(60);
        assert_eq!(keys.len(), 1);
        assert!(keys.deadlines.is_empty());
    }

    #[test]
    fn scan_visits_every_key_once_and_resumes_by_hash() {
        let mut keys = Keyspace::default();
        for index in 0..100 {
            keys.set(format!("k{index}").as_bytes(), vec![], None, false);
        }
        let mut seen = Vec::new();
        let mut cursor = 0;
        loop {
            cursor = keys.scan(cursor, 7, 0, |key| seen.push(key.bytes().to_vec()));
            if cursor == 0 {
                break;
            }
        }
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 100);
    }
}
