//! Leases under the sim provider: the real holder and grantor talking through
//! [`LeaseChannel`]s on simulated nodes whose clocks drift (seeded rates within ρ), with a
//! holder paused past its lease. At every step of virtual time the harness asks each
//! holder whether it would believe in the lease if it looked now, and checks that no two
//! would.

#[path = "../common/mod.rs"]
mod common;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use usec_lease_clock::clock::{Clock, SimClock};
use usec_lease_clock::lease::{
    DriftBound, GrantorConfig, GrantorStart, HolderConfig, LeaseChannel, LeaseGrantor, LeaseHolder,
    LeaseMessage,
};
use usec_verbs::sim::{LatencyModel, NodeId, SimFabric};
use usec_verbs::{ConnectOptions, Context};

const STEP_NS: u64 = 250;

struct HolderNode {
    node: NodeId,
    clock: SimClock,
    holder: LeaseHolder,
    channel: LeaseChannel,
    paused: bool,
    _context: Context,
}

struct LeaseSim {
    fabric: SimFabric,
    grantor_clock: SimClock,
    grantor: LeaseGrantor,
    grantor_channels: Vec<LeaseChannel>,
    holders: Vec<HolderNode>,
    /// `(virtual time, holders believing)` whenever two or more believed.
    overlaps: Vec<(u64, Vec<usize>)>,
    /// Per holder, the virtual times of its first and last belief seen.
    believed: Vec<Option<(u64, u64)>>,
    _grantor_context: Context,
}

impl LeaseSim {
    /// A grantor and `drifts.len() - 1` holders; `drifts` gives each clock's rate (ppm),
    /// the grantor's last; the grantor assumes `assumed`.
    fn new(name: &str, seed: u64, drifts: &[i32], grantor: GrantorConfig) -> LeaseSim {
        let fabric = SimFabric::create(name, seed).expect("a fresh fabric");
        fabric.set_auto_advance(false);
        fabric.set_latency(LatencyModel::uniform(500, 2_000));
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let clock = |drift_ppm: i32, rng: &mut ChaCha8Rng| {
            SimClock::with_drift(&fabric, drift_ppm, rng.gen_range(0..1 << 40))
        };
        let (_, grantor_context) = fabric.open_node().unwrap();
        let grantor_pd = grantor_context.alloc_pd().unwrap();
        let grantor_clock = clock(drifts[drifts.len() - 1], &mut rng);
        let holder_config = HolderConfig { renew_before_ns: 12_000, retry_after_ns: 1_000 };
        let (mut holders, mut grantor_channels) = (Vec::new(), Vec::new());
        for (index, &drift_ppm) in drifts[..drifts.len() - 1].iter().enumerate() {
            let (node, context) = fabric.open_node().unwrap();
            let pd = context.alloc_pd().unwrap();
            // The grantor is node 0, holder `index` node `index + 1`.
            let holder_node = usec_qp_pool::NodeId::new(index as u16 + 1).unwrap();
            let mut channel = LeaseChannel::new(&pd, usec_qp_pool::NodeId::new(0).unwrap(), 8).unwrap();
            let mut grantor_channel = LeaseChannel::new(&grantor_pd, holder_node, 8).unwrap();
            let (holder_end, grantor_end) = (channel.endpoint(), grantor_channel.endpoint());
            channel.connect(&grantor_end, &ConnectOptions::default()).unwrap();
            grantor_channel.connect(&holder_end, &ConnectOptions::default()).unwrap();
            grantor_channels.push(grantor_channel);
            let holder = LeaseHolder::new(holder_node, holder_config);
            holders.push(HolderNode {
                node,
                clock: clock(drift_ppm, &mut rng),
                holder,
                channel,
                paused: false,
                _context: context,
            });
        }
        let grantor = LeaseGrantor::new(grantor, GrantorStart::Fresh, grantor_clock.now_ns()).unwrap();
        let believed = vec![None; holders.len()];
        LeaseSim {
            fabric,
            grantor_clock,
            grantor,
            grantor_channels,
            holders,
            overlaps: Vec::new(),
            believed,
            _grantor_context: grantor_context,
        }
    }

    fn run_for(&mut self, ns: u64) {
        let end = self.fabric.now_ns() + ns;
        while self.fabric.now_ns() < end {
            self.fabric.advance_by(STEP_NS);
            for holder in self.holders.iter_mut().filter(|holder| !holder.paused) {
                tick_holder(holder);
            }
            for channel in &mut self.grantor_channels {
                while let Some(message) = channel.poll().expect("grantor channel") {
                    let LeaseMessage::Request(request) = message else {
                        panic!("a reply sent to the grantor")
                    };
                    // Read after the request arrived.
                    let reply = self.grantor.on_request(self.grantor_clock.now_ns(), &request);
                    channel.send(&LeaseMessage::Reply(reply)).expect("grantor send");
                }
            }
            self.check_beliefs();
        }
    }

    /// Whether each holder would believe if it looked now (paused ones included).
    fn check_beliefs(&mut self) {
        let now = self.fabric.now_ns();
        let believing: Vec<usize> = (0..self.holders.len())
            .filter(|&index| {
                let holder = &self.holders[index];
                holder.holder.is_valid(holder.clock.now_ns())
            })
            .collect();
        for &index in &believing {
            let span = self.believed[index].get_or_insert((now, now));
            span.1 = now;
        }
        if believing.len() > 1 {
            self.overlaps.push((now, believing));
        }
    }

    fn pause(&mut self, index: usize) {
        self.fabric.pause(self.holders[index].node);
        self.holders[index].paused = true;
    }

    fn resume(&mut self, index: usize) {
        self.fabric.resume(self.holders[index].node);
        self.holders[index].paused = false;
    }
}

fn tick_holder(node: &mut HolderNode) {
    // Read before the request is sent.
    if let Some(request) = node.holder.poll_request(node.clock.now_ns()) {
        node.channel.send(&LeaseMessage::Request(request)).expect("holder send");
    }
    while let Some(message) = node.channel.poll().expect("holder channel") {
        let LeaseMessage::Reply(reply) = message else { panic!("a request sent to a holder") };
        node.holder.on_reply(node.clock.now_ns(), &reply);
    }
}

#[test]
fn a_holder_paused_past_its_lease_finds_it_gone_and_the_handover_waits() {
    let first = common::seed("paused holder");
    for seed in first..first + 5 {
        let rho_ppm = 1_000;
        let mut rng = ChaCha8Rng::seed_from_u64(!seed);
        let drifts: Vec<i32> = (0..3).map(|_| rng.gen_range(-rho_ppm..=rho_ppm)).collect();
        let config =
            GrantorConfig { lease_ns: 20_000, drift: DriftBound::from_ppm(1_000).unwrap(), slack_ns: 500 };
        let mut sim = LeaseSim::new(&format!("lease-pause-{seed}"), seed, &drifts, config);
        sim.holders[1].holder.set_wanted(false);
        sim.run_for(200_000);
        let (first_held, _) = sim.believed[0].expect("holder 0 got the lease");
        // Renewals keep the lease without a gap: believed at every step since the first.
        assert!(
            sim.holders[0].holder.is_valid(sim.holders[0].clock.now_ns()),
            "seed {seed}: renewals lapsed"
        );
        assert!(first_held < 10_000, "seed {seed}: the first grant took {first_held} ns");

        sim.holders[1].holder.set_wanted(true);
        sim.run_for(100_000);
        assert_eq!(sim.believed[1], None, "seed {seed}: holder 1 was granted while holder 0 renews");

        let paused_at = sim.fabric.now_ns();
        sim.pause(0);
        sim.run_for(200_000);
        let (handover, _) = sim.believed[1].expect("holder 1 gets the lease once holder 0 is silent");
        let (_, last_zero) = sim.believed[0].unwrap();
        assert!(
            last_zero < handover,
            "seed {seed}: holder 0 believed until {last_zero}, holder 1 from {handover}"
        );
        // Holder 0's last renewal was asked at most renew_before + RTT before the pause;
        // the grantor then waits W ≈ 20.6 µs, and holder 1 re-asks every µs.
        assert!(
            handover - paused_at < 40_000,
            "seed {seed}: handover {} ns after the pause",
            handover - paused_at
        );

        sim.resume(0);
        let holder = &sim.holders[0];
        assert!(
            !holder.holder.is_valid(holder.clock.now_ns()),
            "seed {seed}: the resumed holder still believes"
        );
        sim.run_for(100_000);
        assert_eq!(
            sim.believed[0].unwrap().1,
            last_zero,
            "seed {seed}: holder 0 believed again after resuming"
        );
        assert_eq!(sim.overlaps, vec![], "seed {seed}: two holders believed at once (drifts {drifts:?})");
        eprintln!(
            "seed {seed}: drifts {drifts:?} ppm; holder 0's belief ended at {last_zero}, holder 1's began at {handover} \
             ({} ns later), {} grants",
            handover - last_zero,
            sim.grantor.grants()
        );
    }
}

/// Holder 0 renews, then stops wanting the lease; holder 1 takes over.
fn handover(name: &str, drifts: &[i32], drift: DriftBound) -> LeaseSim {
    let config = GrantorConfig { lease_ns: 20_000, drift, slack_ns: 0 };
    let mut sim = LeaseSim::new(name, 7, drifts, config);
    sim.holders[1].holder.set_wanted(false);
    sim.run_for(100_000);
    sim.holders[1].holder.set_wanted(true);
    sim.holders[0].holder.set_wanted(false);
    sim.run_for(100_000);
    assert!(sim.believed[1].is_some(), "{name}: holder 1 never got the lease");
    sim
}

/// Holder 0's clock 20 % slow, the grantor's (and holder 1's) 20 % fast. A grantor that
/// forgets the drift factor hands the lease over while holder 0 still believes; with the
/// factor the same run is safe.
#[test]
fn without_the_drift_factor_the_sim_shows_an_overlap() {
    let drifts = [-200_000, 200_000, 200_000];
    let naive = handover("lease-no-drift-factor", &drifts, DriftBound::zero());
    assert!(!naive.overlaps.is_empty(), "the naive grantor got away with it: {:?}", naive.believed);
    let (at, who) = &naive.overlaps[0];
    eprintln!(
        "naive grantor: overlap at {at} ns between holders {who:?}, {} steps of {STEP_NS} ns",
        naive.overlaps.len()
    );
    let careful = handover("lease-with-drift-factor", &drifts, DriftBound::from_ppm(200_000).unwrap());
    assert_eq!(careful.overlaps, vec![], "beliefs {:?}", careful.believed);
}
