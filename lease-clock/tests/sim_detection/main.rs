//! Failure detection under the sim provider: the real reader, detectors and verbs glue on
//! simulated nodes with drifting clocks, jittery latency, crashes, pauses and partitions.
//! Seeds come from `USEC_SEED` (or fresh ones), and are printed.

mod cluster;
#[path = "../common/mod.rs"]
mod common;

use cluster::{Cluster, ClusterOptions, DetectorKind};
use usec_lease_clock::detector::Verdict;
use usec_verbs::sim::LatencyModel;

/// Virtual time the cluster runs before anything is done to it.
const WARM_UP_NS: u64 = 500_000;

fn seeds(what: &str, count: u64) -> Vec<u64> {
    let first = common::seed(what);
    (0..count).map(|offset| first.wrapping_add(offset)).collect()
}

/// Crashes `victim` after the warm-up and returns each survivor's detection latency.
fn crash_detection_ns(options: ClusterOptions, victim: usize) -> Vec<u64> {
    let seed = options.seed;
    let mut cluster = Cluster::new(options);
    cluster.run_for(WARM_UP_NS);
    assert_eq!(cluster.suspicions_between(0, WARM_UP_NS), vec![], "seed {seed}: suspicion before any fault");
    let bound = cluster.options.detection_bound_ns();
    let crashed_at = cluster.now_ns();
    cluster.crash(victim);
    cluster.run_for(bound + 50_000);
    cluster
        .observers(victim)
        .into_iter()
        .map(|observer| {
            let at = cluster.suspected_at(observer, victim, crashed_at).unwrap_or_else(|| {
                panic!("seed {seed}: node {observer} never suspected the crashed node {victim}")
            });
            let latency = at - crashed_at;
            assert!(latency <= bound, "seed {seed}: node {observer} took {latency} ns, bound {bound} ns");
            for peer in cluster.observers(victim).into_iter().filter(|&peer| peer != observer) {
                assert_eq!(
                    cluster.verdict(observer, peer),
                    Verdict::Trusted,
                    "seed {seed}: a survivor suspected"
                );
            }
            latency
        })
        .collect()
}

#[test]
fn every_survivor_suspects_a_crashed_node_within_the_bound() {
    for detector in [DetectorKind::Score, DetectorKind::Timeout, DetectorKind::PeerLoss, DetectorKind::Any] {
        for seed in seeds(&format!("crash, {detector:?} detector"), 3) {
            let options = ClusterOptions::new(4, seed, detector);
            let bound = options.detection_bound_ns();
            let latencies = crash_detection_ns(options, (seed % 4) as usize);
            let worst = latencies.iter().max().copied().unwrap_or(0);
            eprintln!("{detector:?}, seed {seed}: detected after {latencies:?} ns (bound {bound} ns), worst {worst}");
        }
    }
}

#[test]
fn a_paused_node_is_suspected_then_trusted_again_on_resume() {
    for seed in seeds("pause and resume", 3) {
        let options = ClusterOptions::new(4, seed, DetectorKind::Score);
        let period = options.reader.period_ns;
        // The read right after the pause may still see the last bump: one more period.
        let bound = options.detection_bound_ns() + period;
        let mut cluster = Cluster::new(options);
        cluster.run_for(WARM_UP_NS);
        let paused_at = cluster.now_ns();
        cluster.pause(1);
        cluster.run_for(bound + 100_000);
        for observer in cluster.observers(1) {
            let at = cluster.suspected_at(observer, 1, paused_at).expect("the paused node is suspected");
            assert!(
                at - paused_at <= bound,
                "seed {seed}: suspected after {} ns, bound {bound}",
                at - paused_at
            );
        }
        let resumed_at = cluster.now_ns();
        cluster.resume(1);
        // Two changes in a row restore trust: about two periods, plus a period of slack.
        cluster.run_for(4 * period);
        for observer in 0..4 {
            for peer in (0..4).filter(|&peer| peer != observer) {
                assert_eq!(
                    cluster.verdict(observer, peer),
                    Verdict::Trusted,
                    "seed {seed}: {observer} about {peer}"
                );
            }
        }
        let stray: Vec<_> = cluster
            .suspicions_between(paused_at, cluster.now_ns())
            .into_iter()
            .filter(|entry| entry.peer != 1)
            .collect();
        assert_eq!(
            stray,
            vec![],
            "seed {seed}: only the paused node is ever suspected (resumed at {resumed_at})"
        );
    }
}

/// Nodes 0 and 1 share a core that another process keeps taking: node 0 gets it back for
/// a moment now and then, node 1 not at all. Each time, node 0 reads node 1 at once and
/// finds no change — but node 0 was not running either since its previous read, so
/// that is no evidence against node 1, and it must not suspect it. Once node 0 runs on
/// its own for the detector's misses, it does.
#[test]
fn an_observer_does_not_count_its_own_stalls_as_the_peers_silence() {
    for seed in seeds("observer stalls", 3) {
        let options = ClusterOptions::new(3, seed, DetectorKind::Score);
        let (period, bound) = (options.reader.period_ns, options.detection_bound_ns());
        let mut cluster = Cluster::new(options);
        cluster.run_for(WARM_UP_NS);
        let taken_at = cluster.now_ns();
        // Descheduled, not stopped: a probe finds both processes alive, so only watching
        // decides (a stopped node 1 would be suspected on the provider's word at once).
        cluster.deschedule(1);
        for _ in 0..8 {
            cluster.deschedule(0);
            cluster.run_for(10 * period);
            cluster.reschedule(0);
            cluster.run_for(5_000);
        }
        assert_eq!(
            cluster.suspected_at(0, 1, taken_at),
            None,
            "seed {seed}: node 0 suspected node 1 for silence it did not watch"
        );
        let watching_from = cluster.now_ns();
        cluster.run_for(bound);
        let at = cluster.suspected_at(0, 1, watching_from);
        assert!(
            at.is_some(),
            "seed {seed}: node 0 watched the stopped node 1 for {bound} ns without suspecting it"
        );
    }
}

/// A stopped or crashed peer is suspected at the first read that finds it silent, not
/// after the detector's four: the provider (here the sim, like the soft provider's /proc)
/// says on the spot that its process is stopped or exiting. Bound: the read that may
/// still see the last bump, the silent one (or its timeout), and the usual margins.
#[test]
fn a_stopped_or_crashed_peer_is_suspected_at_the_first_silent_read() {
    for seed in seeds("probe", 3) {
        for crash in [false, true] {
            let options = ClusterOptions::new(3, seed, DetectorKind::Score);
            let reader = options.reader;
            let slack = options.detection_bound_ns() - (reader.timeout_ns + 4 * reader.period_ns);
            let bound = 2 * reader.period_ns + reader.timeout_ns + slack;
            let mut cluster = Cluster::new(options);
            cluster.run_for(WARM_UP_NS);
            let at = cluster.now_ns();
            if crash {
                cluster.crash(1);
            } else {
                cluster.pause(1);
            }
            cluster.run_for(bound + 20_000);
            for observer in [0, 2] {
                let suspected = cluster.suspected_at(observer, 1, at).expect("suspected");
                assert!(
                    suspected - at <= bound,
                    "seed {seed}, crash {crash}: node {observer} suspected after {} ns, bound {bound}",
                    suspected - at
                );
            }
        }
    }
}

#[test]
fn a_partitioned_node_is_suspected_and_trusted_after_healing() {
    for seed in seeds("partition", 2) {
        let options = ClusterOptions::new(3, seed, DetectorKind::Score);
        let bound = options.detection_bound_ns();
        let period = options.reader.period_ns;
        let mut cluster = Cluster::new(options);
        cluster.run_for(WARM_UP_NS);
        let cut_at = cluster.now_ns();
        cluster.isolate(0, true);
        cluster.run_for(bound + 50_000);
        for observer in [1, 2] {
            assert!(
                cluster.suspected_at(observer, 0, cut_at).is_some(),
                "seed {seed}: {observer} suspects 0"
            );
            assert!(
                cluster.suspected_at(0, observer, cut_at).is_some(),
                "seed {seed}: 0 suspects {observer}"
            );
            assert_eq!(cluster.verdict(1, 2), Verdict::Trusted, "seed {seed}: 1 and 2 still see each other");
        }
        // Healed before the QPs give up: the stuck READs are retransmitted at the next ACK
        // timeout (131 µs), complete, and reading goes on.
        cluster.isolate(0, false);
        cluster.run_for(131_072 + 4 * period + 20_000);
        for (observer, peer) in [(1, 0), (2, 0), (0, 1), (0, 2)] {
            assert_eq!(
                cluster.verdict(observer, peer),
                Verdict::Trusted,
                "seed {seed}: {observer} about {peer}"
            );
        }
    }
}

#[test]
fn no_false_suspicion_over_a_long_quiet_run_with_jitter() {
    for seed in seeds("quiet run", 3) {
        let mut options = ClusterOptions::new(5, seed, DetectorKind::Any);
        options.latency = LatencyModel::uniform(500, 3_000).with_spikes(5_000, 5_000, 12_000);
        let mut cluster = Cluster::new(options);
        cluster.run_for(100_000_000);
        let suspicions = cluster.suspicions_between(0, u64::MAX);
        assert_eq!(suspicions, vec![], "seed {seed}: false suspicions in a fault-free run");
        eprintln!("seed {seed}: 100 ms of virtual time, 5 nodes, no suspicion");
    }
}

/// A crash and a pause; the verdict trace and the fabric's trace, hashed.
fn eventful_run(seed: u64) -> (u64, usize) {
    let mut cluster = Cluster::new(ClusterOptions::new(4, seed, DetectorKind::Any));
    cluster.run_for(WARM_UP_NS);
    cluster.pause(3);
    cluster.run_for(300_000);
    cluster.resume(3);
    cluster.crash(0);
    cluster.run_for(300_000);
    (cluster.trace_hash(), cluster.trace.len())
}

#[test]
fn the_same_seed_replays_the_same_suspicions() {
    let seed = common::seed("replay");
    let first = eventful_run(seed);
    assert!(first.1 > 0, "the run changed no verdict");
    assert_eq!(eventful_run(seed), first, "seed {seed} did not replay");
    assert_ne!(eventful_run(seed.wrapping_add(1)).0, first.0, "seeds {seed} and the next gave the same run");
}
