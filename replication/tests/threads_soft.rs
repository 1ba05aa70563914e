//! Three replicas in threads of this process on the soft provider, each turned by a
//! [`NodeThread`] (cooperative and napping pacing: the machine may have two cores): a
//! client proposes from the test's thread through a [`ClientHandle`](usec_replication::driver::ClientHandle),
//! and the test looks at the running replicas through [`NodeThread::with`].

mod support;

use std::time::{Duration, Instant};

use usec_lease_clock::clock::MonotonicClock;
use usec_lease_clock::detector::ScoreConfig;
use usec_lease_clock::heartbeat::ReaderConfig;
use usec_replication::cft::{MuConfig, RoleKind};
use usec_replication::driver::{DetectorConfig, MuDriver, NodeThread, Pacing};
use usec_replication::History;

fn start(device: &str, config: &MuConfig) -> Vec<MuDriver<History>> {
    // Slow detectors: three replicas and the test share the machine's cores.
    let detectors = DetectorConfig {
        reader: ReaderConfig { period_ns: 1_000_000, timeout_ns: 10_000_000 },
        score: ScoreConfig { score_max: 10, ..ScoreConfig::default() },
        bump_period_ns: 250_000,
        ..DetectorConfig::default()
    };
    support::soft_group::start("threads", device, config, detectors)
}

#[test]
fn node_threads_replicate_what_a_client_thread_proposes() {
    let device = format!("soft:mu-threads-{}", std::process::id());
    let config = MuConfig {
        capacity: 64,
        pipeline: 8,
        slot_bytes: 512,
        snapshot_bytes: 1 << 16,
        ..MuConfig::default()
    };
    let drivers = start(&device, &config);
    let mut client = drivers[0].client(7);
    let pacings = [
        Pacing::Cooperative { spins: 64 },
        Pacing::Napping { spins: 64, nap_ns: 50_000 },
        Pacing::Cooperative { spins: 0 },
    ];
    let nodes: Vec<NodeThread<History>> = drivers
        .into_iter()
        .zip(pacings)
        .map(|(driver, pacing)| NodeThread::spawn(driver, MonotonicClock::new(), pacing))
        .collect();

    // Node 0 (the lowest id) leads; the client proposes until it does.
    let commands: Vec<Vec<u8>> = (0..20).map(|index| format!("command {index}").into_bytes()).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    for (index, command) in commands.iter().enumerate() {
        let id = usec_replication::log::CommandId { client: 7, sequence: index as u64 + 1 };
        loop {
            match client.submit_as(id, command).unwrap().wait(Duration::from_secs(10)) {
                Ok(response) => {
                    assert_eq!(response, (index as u64 + 1).to_le_bytes(), "its position in the history");
                    break;
                }
                Err(error) => {
                    assert!(Instant::now() < deadline, "command {index} not committed in 30 s: {error}");
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
    }
    assert_eq!(nodes[0].with(|driver| driver.replica().role()).unwrap(), RoleKind::Leader);

    // Every replica applies all of them (the idle leader's commit writes tell followers).
    for node in &nodes {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let history = node.with(|driver| driver.replica().state_machine().applied.clone()).unwrap();
            if history == commands {
                break;
            }
            assert!(history.len() <= commands.len() && commands.starts_with(&history), "{history:?}");
            assert!(Instant::now() < deadline, "node {} applied {} of 20", node.id(), history.len());
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    for node in nodes {
        let driver = node.stop();
        assert_eq!(driver.counts().refused_log_writes, 0, "no leader change, nothing refused");
    }
}
