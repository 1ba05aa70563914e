//! Majorities of memory nodes, and what a read concludes from the copies of a majority.
//!
//! Memory nodes fail only by crashing (they run no protocol code, and only a register's
//! owner can write it), so the usual majority argument holds: a write acknowledged by a
//! majority meets every later read of a majority in at least one node, which holds it or
//! something newer. A reader therefore takes the highest valid incarnation it finds.
//!
//! What a correct writer never produces, a read reports as [`ReadResult::Byzantine`]: two
//! different values under one incarnation (in one node's sub-slots or across nodes), or a
//! register unreadable (torn after every retry) on as many nodes as make a majority. One
//! torn copy among readable ones is not enough: a correct writer whose WRITE to a node
//! broke halfway twice in a row can leave that node's copy torn, and the others still
//! answer.

use super::sub_slot::RegisterView;

/// How many of `n` memory nodes make a majority: `n / 2 + 1`, right for even `n` too
/// (uBFT's prototype waited for `(n + 1) / 2`, which is half, not a majority, of an even
/// count).
pub fn majority(n: usize) -> usize {
    n / 2 + 1
}

/// Why a read blames the writer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Misbehaviour {
    /// Two different values under one incarnation.
    Conflicting {
        /// The incarnation written twice.
        incarnation: u64,
    },
    /// Both sub-slots invalid after every retry, on these memory nodes (a majority).
    Unreadable {
        /// The memory nodes (by index) whose copies stayed torn.
        memory_nodes: Vec<usize>,
    },
}

/// What a read of a register found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadResult {
    /// Never written (or written by a writer that left only empty copies on the majority
    /// that answered).
    Absent,
    /// The newest write: its incarnation and value.
    Value {
        /// Its incarnation.
        incarnation: u64,
        /// Its value, padded with zeros to the layout's value size.
        value: Vec<u8>,
    },
    /// The writer did what no correct writer does.
    Byzantine(Misbehaviour),
    /// Not enough memory nodes answered: more than a minority failed.
    Unavailable,
}

/// What the copies of a majority of `memory_nodes` say (each with its memory node's
/// index).
pub fn conclude(memory_nodes: usize, copies: &[(usize, RegisterView)]) -> ReadResult {
    let mut newest: Option<(u64, &Vec<u8>)> = None;
    let mut torn = Vec::new();
    for (memory_node, view) in copies {
        match view {
            RegisterView::Conflicting { incarnation } => {
                return ReadResult::Byzantine(Misbehaviour::Conflicting { incarnation: *incarnation })
            }
            RegisterView::Torn => torn.push(*memory_node),
            RegisterView::Empty => {}
            RegisterView::Value { incarnation, value } => match newest {
                Some((known, known_value)) if known == *incarnation && known_value != value => {
                    return ReadResult::Byzantine(Misbehaviour::Conflicting { incarnation: known })
                }
                Some((known, _)) if known >= *incarnation => {}
                _ => newest = Some((*incarnation, value)),
            },
        }
    }
    match newest {
        Some((incarnation, value)) => ReadResult::Value { incarnation, value: value.clone() },
        None if torn.len() >= majority(memory_nodes) => {
            ReadResult::Byzantine(Misbehaviour::Unreadable { memory_nodes: torn })
        }
        None => ReadResult::Absent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(incarnation: u64, byte: u8) -> RegisterView {
        RegisterView::Value { incarnation, value: vec![byte; 4] }
    }

    #[test]
    fn majorities_are_more_than_half_for_even_counts_too() {
        let expected = [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3), (6, 4), (7, 4)];
        for (n, quorum) in expected {
            assert_eq!(majority(n), quorum, "n = {n}");
            assert!(2 * majority(n) > n, "two majorities of {n} meet");
        }
    }

    #[test]
    fn the_newest_valid_copy_wins() {
        let copies = [(0, value(3, 1)), (2, value(4, 2))];
        assert_eq!(conclude(3, &copies), ReadResult::Value { incarnation: 4, value: vec![2; 4] });
        let copies = [(0, RegisterView::Empty), (1, value(1, 9))];
        assert_eq!(conclude(3, &copies), ReadResult::Value { incarnation: 1, value: vec![9; 4] });
        let copies = [(0, RegisterView::Torn), (1, value(1, 9))];
        assert_eq!(conclude(3, &copies), ReadResult::Value { incarnation: 1, value: vec![9; 4] });
        assert_eq!(conclude(3, &[(0, RegisterView::Empty), (1, RegisterView::Empty)]), ReadResult::Absent);
    }

    #[test]
    fn what_no_correct_writer_writes_is_byzantine() {
        let copies = [(0, value(4, 1)), (1, value(4, 2))];
        assert_eq!(conclude(3, &copies), ReadResult::Byzantine(Misbehaviour::Conflicting { incarnation: 4 }));
        let copies = [(0, RegisterView::Conflicting { incarnation: 2 }), (1, value(7, 2))];
        assert_eq!(conclude(3, &copies), ReadResult::Byzantine(Misbehaviour::Conflicting { incarnation: 2 }));
        let copies = [(0, RegisterView::Torn), (2, RegisterView::Torn)];
        assert_eq!(
            conclude(3, &copies),
            ReadResult::Byzantine(Misbehaviour::Unreadable { memory_nodes: vec![0, 2] })
        );
        // One torn copy next to an empty one: a correct writer's broken WRITE can do that.
        assert_eq!(conclude(3, &[(0, RegisterView::Torn), (1, RegisterView::Empty)]), ReadResult::Absent);
    }
}
