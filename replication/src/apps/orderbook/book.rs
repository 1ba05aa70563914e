//! [`SymbolBook`]: one symbol's bids and asks — price levels, each a queue in time
//! priority — and the matching of an incoming order against them.

use std::collections::BTreeMap;

use super::command::Side;

/// An order resting in the book.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Resting {
    pub(crate) id: u64,
    pub(crate) account: u32,
    /// Still open (always more than 0 while it rests).
    pub(crate) open: u64,
    pub(crate) filled: u64,
    pub(crate) cancelled: u64,
}

/// The orders at one price, keyed by priority (lower goes first).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Level {
    pub(crate) queue: BTreeMap<u64, Resting>,
    /// The sum of the queue's open quantities.
    pub(crate) open: u64,
}

/// One trade of a resting order, as matching reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Trade {
    pub(crate) maker_order: u64,
    pub(crate) maker: u32,
    pub(crate) price: u64,
    pub(crate) quantity: u64,
    pub(crate) maker_open: u64,
}

/// One symbol's book. Levels sit in B-trees by price: the best bid is the last bid
/// level, the best ask the first ask level. Within a level, a B-tree by priority rather
/// than a deque, so that a cancel from the middle of a long queue costs a logarithm.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SymbolBook {
    pub(crate) name: Box<[u8]>,
    pub(crate) bids: BTreeMap<u64, Level>,
    pub(crate) asks: BTreeMap<u64, Level>,
}

impl SymbolBook {
    pub(crate) fn new(name: &[u8]) -> SymbolBook {
        SymbolBook { name: name.into(), bids: BTreeMap::new(), asks: BTreeMap::new() }
    }

    pub(crate) fn side(&self, side: Side) -> &BTreeMap<u64, Level> {
        match side {
            Side::Buy => &self.bids,
            Side::Sell => &self.asks,
        }
    }

    fn side_mut(&mut self, side: Side) -> &mut BTreeMap<u64, Level> {
        match side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        }
    }

    /// The best price on `side`: the highest bid or the lowest ask.
    pub(crate) fn best(&self, side: Side) -> Option<u64> {
        match side {
            Side::Buy => self.bids.last_key_value().map(|(&price, _)| price),
            Side::Sell => self.asks.first_key_value().map(|(&price, _)| price),
        }
    }

    /// Levels of `side`, best first.
    pub(crate) fn levels(&self, side: Side) -> Box<dyn Iterator<Item = (u64, &Level)> + '_> {
        let levels = self.side(side).iter().map(|(&price, level)| (price, level));
        match side {
            Side::Buy => Box::new(levels.rev()),
            Side::Sell => Box::new(levels),
        }
    }

    /// Puts `order` at the back of its level's queue (`priority` is larger than any
    /// given before).
    pub(crate) fn insert(&mut self, side: Side, price: u64, priority: u64, order: Resting) {
        assert!(order.open > 0, "only open orders rest");
        let level = self.side_mut(side).entry(price).or_default();
        level.open += order.open;
        let previous = level.queue.insert(priority, order);
        assert!(previous.is_none(), "priorities are never reused");
    }

    /// Takes an order out of the book.
    pub(crate) fn remove(&mut self, side: Side, price: u64, priority: u64) -> Resting {
        let levels = self.side_mut(side);
        let level = levels.get_mut(&price).expect("the order index points at a level");
        let order = level.queue.remove(&priority).expect("the order index points at an order");
        level.open -= order.open;
        if level.queue.is_empty() {
            levels.remove(&price);
        }
        order
    }

    /// Lowers a resting order's open quantity to `open` (more than 0), in place: it keeps
    /// its priority. Returns the order as it is now.
    pub(crate) fn reduce(&mut self, side: Side, price: u64, priority: u64, open: u64) -> &Resting {
        let level = self.side_mut(side).get_mut(&price).expect("the order index points at a level");
        let order = level.queue.get_mut(&priority).expect("the order index points at an order");
        assert!(0 < open && open <= order.open, "a reduction in place");
        level.open -= order.open - open;
        order.cancelled += order.open - open;
        order.open = open;
        order
    }

    /// Matches an incoming order on `taker` side for `quantity`, at `limit` or better
    /// (any price when `None`), against the other side: best price first, and at each
    /// price the earliest order first. Each trade is at the resting order's price and is
    /// handed to `on_trade`. Returns the quantity left.
    pub(crate) fn match_incoming(
        &mut self,
        taker: Side,
        limit: Option<u64>,
        mut quantity: u64,
        mut on_trade: impl FnMut(Trade),
    ) -> u64 {
        let levels = self.side_mut(taker.opposite());
        while quantity > 0 {
            let best = match taker {
                Side::Buy => levels.first_entry(),
                Side::Sell => levels.last_entry(),
            };
            let Some(mut level_entry) = best else { break };
            let price = *level_entry.key();
            if limit.is_some_and(|limit| !taker.accepts(limit, price)) {
                break;
            }
            let level = level_entry.get_mut();
            while quantity > 0 {
                let Some(mut maker_entry) = level.queue.first_entry() else { break };
                let maker = maker_entry.get_mut();
                let traded = quantity.min(maker.open);
                maker.open -= traded;
                maker.filled += traded;
                level.open -= traded;
                quantity -= traded;
                on_trade(Trade {
                    maker_order: maker.id,
                    maker: maker.account,
                    price,
                    quantity: traded,
                    maker_open: maker.open,
                });
                if maker.open == 0 {
                    maker_entry.remove();
                }
            }
            if level.queue.is_empty() {
                level_entry.remove();
            }
        }
        quantity
    }
}
