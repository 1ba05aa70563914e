//! The invariants, checked as events happen.
//!
//! - **Agreement**: correct replicas decide the same batch for every slot, and reach the
//!   same history digest after the same slot.
//! - **Integrity**: every executed request is one a client submitted, with its operation.
//! - **Exactly once**: a correct replica executes each (client, number) at most once, and
//!   every correct replica executes it at the same slot with the same result.
//! - **Client safety**: a result a client accepted is the one correct replicas computed.
//! - No correct replica ever sees two batches meet the decision rule for one slot.

use std::collections::{BTreeMap, BTreeSet};

use usec_replication::bft::consensus::{batch_digest, ClientId, Event};

#[derive(Debug, Default)]
pub struct Checker {
    pub failure: Option<String>,
    decided: BTreeMap<u64, [u8; 32]>,
    digests: BTreeMap<u64, [u8; 32]>,
    submitted: BTreeMap<(ClientId, u64), Vec<u8>>,
    /// (client, number) to (slot, result) as correct replicas executed it.
    executed: BTreeMap<(ClientId, u64), (u64, Vec<u8>)>,
    executed_by: BTreeSet<(usize, ClientId, u64)>,
    accepted: BTreeMap<(ClientId, u64), Vec<u8>>,
    pub decisions: u64,
    pub fast: u64,
    pub slow: u64,
    pub views_entered: u64,
    pub stable: u64,
}

impl Checker {
    fn fail(&mut self, why: String) {
        if self.failure.is_none() {
            self.failure = Some(why);
        }
    }

    pub fn submitted(&mut self, client: ClientId, number: u64, operation: Vec<u8>) {
        self.submitted.insert((client, number), operation);
    }

    pub fn accepted(&mut self, client: ClientId, number: u64, result: Vec<u8>) {
        if let Some((_, executed)) = self.executed.get(&(client, number)) {
            if *executed != result {
                self.fail(format!(
                    "{client} accepted for request {number} a result no correct replica computed"
                ));
            }
        }
        self.accepted.insert((client, number), result);
    }

    /// A correct replica's event; `executed` is its (last executed slot, history digest).
    pub fn record(&mut self, replica: usize, event: Event, executed: (u64, [u8; 32])) {
        match event {
            Event::Decided { slot, batch, path } => {
                self.decisions += 1;
                match path {
                    usec_replication::bft::consensus::DecisionPath::Fast => self.fast += 1,
                    usec_replication::bft::consensus::DecisionPath::Slow => self.slow += 1,
                }
                let digest = batch_digest(&batch);
                if *self.decided.entry(slot).or_insert(digest) != digest {
                    self.fail(format!("replica {replica} decided another batch for slot {slot}"));
                }
            }
            Event::ConflictingDecision { slot, .. } => {
                self.fail(format!("replica {replica} saw two batches decided for slot {slot}"));
            }
            Event::Executed { slot, client, number, operation, result } => {
                if self.submitted.get(&(client, number)) != Some(&operation) {
                    self.fail(format!(
                        "replica {replica} executed request {number} of {client}, never submitted"
                    ));
                }
                if !self.executed_by.insert((replica, client, number)) {
                    self.fail(format!("replica {replica} executed request {number} of {client} twice"));
                }
                match self.executed.get(&(client, number)) {
                    Some((at, theirs)) if (*at, theirs) != (slot, &result) => {
                        self.fail(format!("request {number} of {client}: slot {slot} here, {at} elsewhere, or another result"));
                    }
                    Some(_) => {}
                    None => {
                        if let Some(accepted) = self.accepted.get(&(client, number)) {
                            if *accepted != result {
                                self.fail(format!("{client} accepted for request {number} a result no correct replica computed"));
                            }
                        }
                        self.executed.insert((client, number), (slot, result));
                    }
                }
                let (slot, digest) = executed;
                if *self.digests.entry(slot).or_insert(digest) != digest {
                    self.fail(format!("replica {replica}: history digest after slot {slot} differs"));
                }
            }
            Event::StateInstalled { slot, history } => {
                if *self.digests.entry(slot).or_insert(history) != history {
                    self.fail(format!(
                        "replica {replica}: installed a state whose history after slot {slot} differs"
                    ));
                }
            }
            Event::ViewEntered { .. } => self.views_entered += 1,
            Event::CheckpointStable { .. } => self.stable += 1,
            Event::ViewChangeStarted { .. } => {}
        }
    }
}
