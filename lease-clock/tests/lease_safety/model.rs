//! The model the lease property tests run the real holder and grantor in: explicit real
//! time, each node's clock an integer piecewise-linear function of it, and messages that
//! take whatever time the scenario says.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use usec_lease_clock::lease::{
    DriftBound, GrantorConfig, GrantorStart, HolderConfig, LeaseGrantor, LeaseHolder, LeaseReply,
    LeaseRequest, ReplyEffect,
};
use usec_qp_pool::NodeId;

/// Clock rates are in millionths: 1 000 000 is real time.
pub const MILLION: u64 = 1_000_000;

/// One node's clock: `offset_ns` at real time 0, then a rate per stretch of real time (the
/// last rate goes on forever). Reads `⌊F(t)⌋` where `F` is exact (kept in millionths of a
/// nanosecond), so the clock is integer-valued, monotonic, and its rate over any interval
/// is within the rates of its segments.
#[derive(Clone, Debug)]
pub struct ClockSpec {
    pub offset_ns: u64,
    /// `(duration_ns, rate)` stretches; rate in millionths.
    pub stretches: Vec<(u64, u64)>,
}

#[derive(Clone, Copy, Debug)]
struct Segment {
    start_ns: u64,
    base_micro: u128,
    rate: u64,
}

/// A [`ClockSpec`] made ready to read and invert.
#[derive(Clone, Debug)]
pub struct ModelClock {
    segments: Vec<Segment>,
}

impl ModelClock {
    pub fn new(spec: &ClockSpec) -> ModelClock {
        assert!(!spec.stretches.is_empty());
        let mut segments = Vec::new();
        let (mut start_ns, mut base_micro) = (0u64, u128::from(spec.offset_ns) * u128::from(MILLION));
        for &(duration_ns, rate) in &spec.stretches {
            assert!(rate > 0);
            segments.push(Segment { start_ns, base_micro, rate });
            base_micro += u128::from(duration_ns) * u128::from(rate);
            start_ns += duration_ns;
        }
        ModelClock { segments }
    }

    fn segment(&self, real_ns: u64) -> usize {
        self.segments.partition_point(|segment| segment.start_ns <= real_ns) - 1
    }

    /// The clock's reading at real time `real_ns`.
    pub fn read(&self, real_ns: u64) -> u64 {
        let segment = self.segments[self.segment(real_ns)];
        let micro = segment.base_micro + u128::from(real_ns - segment.start_ns) * u128::from(segment.rate);
        u64::try_from(micro / u128::from(MILLION)).expect("readings fit in u64")
    }

    /// The first real time at or after `from_ns` at which the clock reads `value` or more.
    pub fn first_reaching(&self, value: u64, from_ns: u64) -> u64 {
        let target = u128::from(value) * u128::from(MILLION);
        for index in self.segment(from_ns)..self.segments.len() {
            let segment = self.segments[index];
            let offset = target.saturating_sub(segment.base_micro).div_ceil(u128::from(segment.rate));
            let at = u64::try_from(u128::from(segment.start_ns) + offset).unwrap_or(u64::MAX).max(from_ns);
            let end = self.segments.get(index + 1).map_or(u64::MAX, |next| next.start_ns);
            if at < end {
                return at;
            }
        }
        unreachable!("the last segment goes on forever")
    }
}

/// A holder asks at real time `at_ns`; its request takes `request_delay_ns` to reach the
/// grantor and the reply `reply_delay_ns` to come back.
#[derive(Clone, Copy, Debug)]
pub struct Ask {
    pub holder: usize,
    pub at_ns: u64,
    pub request_delay_ns: u64,
    pub reply_delay_ns: u64,
}

/// Everything one run depends on.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// The clocks' true drift bound: every rate lies in `[1 − ρ, 1 + ρ]`.
    pub rho_ppm: u32,
    pub lease_ns: u64,
    pub slack_ns: u64,
    /// Holders first, the grantor last.
    pub clocks: Vec<ClockSpec>,
    pub asks: Vec<Ask>,
}

/// Two holders believed in the lease at once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Overlap {
    /// `(holder, start, end)` of the two beliefs, in real nanoseconds.
    pub first: (usize, u64, u64),
    pub second: (usize, u64, u64),
}

/// What a safe run did, to see that the scenarios exercise something.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunStats {
    pub grants: u64,
    /// Grants to a different holder than the previous grant.
    pub handovers: u64,
    pub beliefs: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    Ask(usize),
    Arrive(usize, LeaseRequestKey),
    Reply(usize, ReplyKey),
}

/// `LeaseRequest` and `LeaseReply` made orderable for the event queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct LeaseRequestKey(NodeId, u64);
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct ReplyKey(bool, NodeId, u64, u64);

impl ReplyKey {
    fn of(reply: &LeaseReply) -> ReplyKey {
        match *reply {
            LeaseReply::Granted { holder, request, lease_ns } => ReplyKey(true, holder, request, lease_ns),
            LeaseReply::Denied { holder, request, retry_after_ns } => {
                ReplyKey(false, holder, request, retry_after_ns)
            }
        }
    }

    fn reply(self) -> LeaseReply {
        let ReplyKey(granted, holder, request, value) = self;
        if granted {
            LeaseReply::Granted { holder, request, lease_ns: value }
        } else {
            LeaseReply::Denied { holder, request, retry_after_ns: value }
        }
    }
}

/// Runs `scenario` with a grantor that assumes the drift bound `grantor_drift` (the true
/// one, or a wrong one to show what breaks), and checks that no two holders' real-time
/// beliefs overlap.
pub fn run(scenario: &Scenario, grantor_drift: DriftBound) -> Result<RunStats, Overlap> {
    let clocks: Vec<ModelClock> = scenario.clocks.iter().map(ModelClock::new).collect();
    let holder_count = clocks.len() - 1;
    let grantor_clock = &clocks[holder_count];
    let config = HolderConfig { renew_before_ns: 0, retry_after_ns: 0 };
    let mut holders: Vec<LeaseHolder> = (0..holder_count)
        .map(|index| LeaseHolder::new(NodeId::new(index as u16).expect("a node id"), config))
        .collect();
    let grantor_config =
        GrantorConfig { lease_ns: scenario.lease_ns, drift: grantor_drift, slack_ns: scenario.slack_ns };
    let mut grantor = LeaseGrantor::new(grantor_config, GrantorStart::Fresh, grantor_clock.read(0))
        .expect("a valid config");

    let mut queue = BinaryHeap::new();
    for (index, ask) in scenario.asks.iter().enumerate() {
        queue.push(Reverse((ask.at_ns, queue.len() as u64, Event::Ask(index))));
    }
    let mut sequence = queue.len() as u64;
    let mut schedule = |queue: &mut BinaryHeap<_>, at_ns: u64, event: Event| {
        queue.push(Reverse((at_ns, sequence, event)));
        sequence += 1;
    };
    let (mut beliefs, mut stats, mut last_granted) = (Vec::new(), RunStats::default(), None);
    while let Some(Reverse((now, _, event))) = queue.pop() {
        match event {
            Event::Ask(index) => {
                let ask = scenario.asks[index];
                let request = holders[ask.holder].request(clocks[ask.holder].read(now));
                let key = LeaseRequestKey(request.holder, request.request);
                schedule(&mut queue, now + ask.request_delay_ns, Event::Arrive(index, key));
            }
            Event::Arrive(index, LeaseRequestKey(holder, request)) => {
                let request = LeaseRequest { holder, request };
                let reply = grantor.on_request(grantor_clock.read(now), &request);
                if let LeaseReply::Granted { holder, .. } = reply {
                    stats.grants += 1;
                    stats.handovers += u64::from(last_granted.is_some_and(|last| last != holder));
                    last_granted = Some(holder);
                }
                let ask = scenario.asks[index];
                schedule(
                    &mut queue,
                    now + ask.reply_delay_ns,
                    Event::Reply(ask.holder, ReplyKey::of(&reply)),
                );
            }
            Event::Reply(holder_index, key) => {
                let clock = &clocks[holder_index];
                let holder = &mut holders[holder_index];
                let local = clock.read(now);
                if let ReplyEffect::Granted { valid_until_ns } = holder.on_reply(local, &key.reply()) {
                    if holder.is_valid(local) {
                        let end = clock.first_reaching(valid_until_ns, now);
                        assert!(holder.is_valid(clock.read(end - 1)) && !holder.is_valid(clock.read(end)));
                        beliefs.push((holder_index, now, end));
                    }
                }
            }
        }
    }
    stats.beliefs = beliefs.len();
    for (index, &first) in beliefs.iter().enumerate() {
        for &second in &beliefs[index + 1..] {
            if first.0 != second.0 && first.1 < second.2 && second.1 < first.2 {
                return Err(Overlap { first, second });
            }
        }
    }
    Ok(stats)
}
