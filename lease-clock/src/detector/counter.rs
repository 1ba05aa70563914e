//! The heartbeat counter: [`HeartbeatCounter`] on the node that beats, and
//! [`CounterTracker`] on the nodes that read it.

/// The local heartbeat: a counter the node bumps while it is alive, published in
/// registered memory for peers to READ. Sans-IO: [`Self::tick`] says when there is a new
/// value to publish; the driver stores it (one aligned 8-byte store, which a READ sees
/// whole).
#[derive(Clone, Debug)]
pub struct HeartbeatCounter {
    value: u64,
    bump_period_ns: u64,
    next_bump_ns: u64,
}

impl HeartbeatCounter {
    /// A counter at 0 that bumps at most once per `bump_period_ns` (0: on every tick).
    /// Keep the period well below the readers' period, so that every read sees a change.
    pub fn new(bump_period_ns: u64) -> HeartbeatCounter {
        HeartbeatCounter { value: 0, bump_period_ns, next_bump_ns: 0 }
    }

    /// Starts from `value` instead of 0 (a restarted node may pick any value; readers see
    /// a jump, which they count as a change).
    pub fn starting_at(mut self, value: u64) -> HeartbeatCounter {
        self.value = value;
        self
    }

    /// The value to publish, if it is time for a bump. Wraps at 2^64.
    pub fn tick(&mut self, now_ns: u64) -> Option<u64> {
        if now_ns < self.next_bump_ns {
            return None;
        }
        self.value = self.value.wrapping_add(1);
        self.next_bump_ns = now_ns.saturating_add(self.bump_period_ns);
        Some(self.value)
    }

    /// The value last returned by [`Self::tick`].
    pub fn value(&self) -> u64 {
        self.value
    }
}

/// What a reader remembers of a peer's counter, to tell a change from none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CounterTracker {
    last: Option<u64>,
    restarts: u64,
}

/// What a value read means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CounterChange {
    /// The first value: a baseline.
    First,
    /// The same value as last time.
    Unchanged,
    /// A different value (larger, wrapped, or smaller after a restart).
    Changed,
}

impl CounterTracker {
    /// Records `value` and classifies it.
    pub fn update(&mut self, value: u64) -> CounterChange {
        let change = match self.last {
            None => CounterChange::First,
            Some(last) if last == value => CounterChange::Unchanged,
            Some(last) => {
                // Going back by less than half the range is a restart; by more, a wrap.
                if value < last && last - value < 1 << 63 {
                    self.restarts += 1;
                }
                CounterChange::Changed
            }
        };
        self.last = Some(value);
        change
    }

    /// The last value read.
    pub fn last(&self) -> Option<u64> {
        self.last
    }

    /// How many times the counter went backwards (restarts of the peer).
    pub fn restarts(&self) -> u64 {
        self.restarts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_counter_bumps_at_most_once_per_period_and_wraps() {
        let mut counter = HeartbeatCounter::new(100);
        assert_eq!(counter.tick(0), Some(1));
        assert_eq!(counter.tick(99), None);
        assert_eq!(counter.tick(100), Some(2));
        let mut every_tick = HeartbeatCounter::new(0).starting_at(u64::MAX);
        assert_eq!(every_tick.tick(5), Some(0));
        assert_eq!(every_tick.tick(5), Some(1));
    }

    #[test]
    fn changes_wraps_and_restarts() {
        let mut tracker = CounterTracker::default();
        assert_eq!(tracker.update(u64::MAX - 1), CounterChange::First);
        assert_eq!(tracker.update(u64::MAX - 1), CounterChange::Unchanged);
        assert_eq!(tracker.update(3), CounterChange::Changed, "a wrap");
        assert_eq!(tracker.restarts(), 0);
        assert_eq!(tracker.update(1), CounterChange::Changed, "a restart");
        assert_eq!(tracker.restarts(), 1);
        assert_eq!(tracker.last(), Some(1));
    }
}
