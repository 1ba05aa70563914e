//! [`NodeSet`]: a set of node ids in a fixed bitmap, one bit per possible id, so that
//! adding and removing never allocate (the quorum waiter updates it from the completion
//! loop).

use std::fmt;

use crate::spec::NodeId;

const WORDS: usize = (NodeId::MAX as usize + 1) / 64;

/// A set of node ids: 512 bytes, no heap.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct NodeSet {
    words: [u64; WORDS],
}

impl NodeSet {
    /// The empty set.
    pub(crate) const fn new() -> NodeSet {
        NodeSet { words: [0; WORDS] }
    }

    /// Adds `node`; returns whether it was new.
    pub(crate) fn insert(&mut self, node: NodeId) -> bool {
        let (word, bit) = place(node);
        let new = self.words[word] & bit == 0;
        self.words[word] |= bit;
        new
    }

    /// Removes `node`; returns whether it was there.
    pub(crate) fn remove(&mut self, node: NodeId) -> bool {
        let (word, bit) = place(node);
        let present = self.words[word] & bit != 0;
        self.words[word] &= !bit;
        present
    }

    /// Whether `node` is in.
    pub(crate) fn contains(&self, node: NodeId) -> bool {
        let (word, bit) = place(node);
        self.words[word] & bit != 0
    }

    /// The members, in id order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.words.iter().enumerate().flat_map(|(index, &word)| {
            (0..64u16)
                .filter(move |bit| word & (1 << bit) != 0)
                .map(move |bit| NodeId::new(index as u16 * 64 + bit).expect("bits stay below 4096"))
        })
    }
}

impl Default for NodeSet {
    fn default() -> NodeSet {
        NodeSet::new()
    }
}

impl fmt::Debug for NodeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

fn place(node: NodeId) -> (usize, u64) {
    let id = usize::from(node.get());
    (id / 64, 1 << (id % 64))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn it_agrees_with_a_btree_set(steps in proptest::collection::vec((any::<bool>(), 0u16..=NodeId::MAX), 0..64)) {
            let (mut set, mut model) = (NodeSet::new(), BTreeSet::new());
            for (add, id) in steps {
                let node = NodeId::new(id).unwrap();
                if add {
                    prop_assert_eq!(set.insert(node), model.insert(node));
                } else {
                    prop_assert_eq!(set.remove(node), model.remove(&node));
                }
                prop_assert_eq!(set.contains(node), model.contains(&node));
            }
            prop_assert_eq!(set.iter().collect::<Vec<_>>(), model.into_iter().collect::<Vec<_>>());
        }
    }
}
