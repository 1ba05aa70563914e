//! The demo's probe: a client that writes without pause, straight to the replicas, and
//! records when each write was acknowledged — so the failover gap is what a client sees.
//!
//! It writes `SET <key> <n>` with `n` = 1, 2, 3, … one at a time on one connection, and
//! goes on with `n + 1` whatever the outcome. `-MOVED` sends it to the leader named;
//! `-CLUSTERDOWN`, `-TRYAGAIN` and `-UNCERTAIN` make it try again at once; a connection
//! that fails or stays silent for [`ANSWER_TIMEOUT`] sends it to the next replica. It
//! does not go through the front door: the gap it measures is the replicas', not the
//! front door's.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::client::{Reply, RespClient};

/// A write unanswered this long is given up (its outcome unknown).
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(1);

/// What the probe saw.
#[derive(Clone, Debug, Default)]
pub struct ProbeLog {
    /// When each acknowledged write was acknowledged, in order.
    pub acks: Vec<Instant>,
    /// The value of the last acknowledged write.
    pub last_acked: u64,
    /// The value of the last write sent.
    pub last_sent: u64,
    /// Writes whose outcome is unknown (lost connection, `-UNCERTAIN`).
    pub uncertain: u64,
}

/// A running probe.
#[derive(Debug)]
pub struct Probe {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<ProbeLog>,
}

impl Probe {
    /// Starts writing `key` to `replicas`.
    pub fn spawn(replicas: Vec<SocketAddr>, key: String) -> Probe {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name("probe".into())
            .spawn(move || write_on(&replicas, key.as_bytes(), &stopped))
            .expect("spawning the probe");
        Probe { stop, thread }
    }

    /// Stops it and returns what it saw.
    pub fn finish(self) -> ProbeLog {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the probe does not panic")
    }
}

fn write_on(replicas: &[SocketAddr], key: &[u8], stop: &AtomicBool) -> ProbeLog {
    let mut log = ProbeLog::default();
    let mut targets = replicas.to_vec();
    let mut target = 0;
    let mut client: Option<RespClient> = None;
    while !stop.load(Ordering::Relaxed) {
        if client.is_none() {
            match RespClient::connect(targets[target], ANSWER_TIMEOUT) {
                Ok(connected) => client = Some(connected),
                Err(_) => {
                    target = (target + 1) % targets.len();
                    std::thread::sleep(Duration::from_millis(1));
                    continue;
                }
            }
        }
        let connection = client.as_mut().expect("connected above");
        log.last_sent += 1;
        let value = log.last_sent.to_string();
        match connection.request(&[b"SET", key, value.as_bytes()]) {
            Ok(Reply::Simple(ok)) if ok == "OK" => {
                log.acks.push(Instant::now());
                log.last_acked = log.last_sent;
            }
            Ok(Reply::Error(error)) if error.starts_with("MOVED ") => {
                let leader = error.rsplit(' ').next().and_then(|address| address.parse().ok());
                if let Some(leader) = leader {
                    target = targets.iter().position(|&known| known == leader).unwrap_or_else(|| {
                        targets.push(leader);
                        targets.len() - 1
                    });
                }
                client = None;
            }
            Ok(Reply::Error(error)) => {
                if error.starts_with("UNCERTAIN") {
                    log.uncertain += 1;
                }
                // No leader yet, or it is taking over: ask again soon.
                std::thread::sleep(Duration::from_micros(200));
            }
            Ok(_) | Err(_) => {
                log.uncertain += 1;
                client = None;
                target = (target + 1) % targets.len();
            }
        }
    }
    log
}

/// The probe's view of a moment (the kill): the longest time with no acknowledged write
/// around it, and the longest before it for comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gap {
    /// From the last acknowledgement before the moment to the first after it.
    pub across: Duration,
    /// The longest interval between two acknowledgements before the moment.
    pub longest_before: Duration,
    /// Acknowledgements before the moment.
    pub acks_before: usize,
    /// Acknowledgements after it.
    pub acks_after: usize,
}

/// The gap around `moment` in `acks` (in order); `None` unless there are acknowledgements
/// on both sides.
pub fn gap_around(acks: &[Instant], moment: Instant) -> Option<Gap> {
    let split = acks.partition_point(|&ack| ack <= moment);
    let (before, after) = acks.split_at(split);
    let (last_before, first_after) = (before.last()?, after.first()?);
    let longest_before = before.windows(2).map(|pair| pair[1] - pair[0]).max().unwrap_or_default();
    Some(Gap {
        across: *first_after - *last_before,
        longest_before,
        acks_before: before.len(),
        acks_after: after.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gap_spans_the_moment() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let acks = [at(0), at(3), at(10), at(11), at(95), at(96)];
        let gap = gap_around(&acks, at(50)).unwrap();
        assert_eq!(
            gap,
            Gap {
                across: Duration::from_millis(84),
                longest_before: Duration::from_millis(7),
                acks_before: 4,
                acks_after: 2
            }
        );
        assert_eq!(gap_around(&acks, at(100)), None, "nothing after");
        assert_eq!(gap_around(&acks[4..], at(50)), None, "nothing before");
    }
}
