//! Mu: crash-tolerant state machine replication in which the leader replicates a command
//! with one RDMA WRITE into each follower's log, and RDMA permissions guarantee a single
//! writer per log.
//!
//! - [`Replica`] — one replica, sans IO; the order in which to call it is in its docs;
//! - its parts: [`follower`] (serving permission and snapshot requests, following),
//!   [`candidate`] (taking over), [`leader`] (the fast path), [`election`] (who should
//!   lead), [`local`] (its own log and state machine), [`peers`] (what it knows of the
//!   others), [`op`] (its work requests);
//! - [`views`]: leadership subordinate to membership views, and local reads;
//! - [`Port`], the narrow seam to the cluster, and [`cluster_port`], the port on a
//!   qp-pool cluster.
//!
//! # The protocol in one page
//!
//! Every replica has a log region (a ring of slots, plus a few records: see
//! [`crate::log::layout`]) that every peer may READ and at most one peer may WRITE, and a
//! control region every peer may write its own inbox lines of.
//!
//! - **Fast path.** The leader puts a batch of commands in an entry (index, its proposal
//!   number, its commit index, a checksum over all of it), writes it into its own slot, and
//!   WRITEs it into the same slot of every follower. An entry is decided once a majority
//!   (`n/2 + 1`, the leader included) holds it; the leader applies it and answers.
//!   Followers learn what is decided from later entries and from a commit record the leader
//!   writes when idle, and apply in log order.
//! - **Election.** Heartbeat READs (lease-clock's detectors) and the provider's peer-death
//!   signal say who is alive; the lowest live id should lead (Mu's rule). A replica that
//!   should lead becomes a candidate; one that sees a lower id alive steps down.
//! - **Permission switch.** A candidate asks every peer for the write right on its log
//!   (a record in their inbox); a peer that agrees revokes the previous writer — after
//!   which nothing of that writer lands — grants the candidate and acknowledges. A majority
//!   of acknowledgements suffices; Mu's code waits for all.
//! - **Recovery.** See [`candidate`]: a proposal number above every promise of the
//!   quorum, the decided prefix fetched (or a snapshot pulled), then every undecided
//!   position adopted from the quorum by highest proposal, until a position nobody holds.
//! - **Recycling.** Slot `i % capacity` is reused for entry `i` only once a majority has
//!   applied entry `i - capacity` (as their published status says); a follower left
//!   behind gets a snapshot WRITTEN into its snapshot area. A crashed follower never
//!   holds recycling up.
//!
//! # Why nothing decided is ever lost or changed
//!
//! Each log position is a Paxos instance whose acceptors are the replicas' slots, and a
//! slot only takes a WRITE from the replica its owner granted:
//!
//! 1. *One writer per log at a time.* A replica grants its log to one candidate at a time,
//!    revoking the previous holder first; after the revocation returns, no WRITE of the old
//!    holder lands (the verbs layer promises it for every provider). A replica writes its
//!    own log only while it is candidate or leader, and stops before it grants anyone.
//! 2. *No stale WRITE survives a new grant.* A replica asks a peer for its log only when
//!    every WRITE it posted to that log has completed (`tracked.rs`), and a leadership's
//!    entries follow its promise on the same QP (RC order). So a grant is never followed by
//!    a WRITE of an earlier leadership of the same replica; completions of earlier
//!    candidacies carry their term and are never taken for the current one's.
//! 3. *Proposal numbers order leaderships.* A candidate picks a number above every promise
//!    in its quorum (a majority, itself included) and writes it as the promise of each
//!    member before any entry. Two quorums intersect, so a later candidate whose quorum
//!    holds a member that took an earlier leader's entries sees that leader's promise (it
//!    landed before the member granted the later candidate) and picks a higher number.
//! 4. *Recovery adopts what may have been decided.* A decided entry sits on a majority,
//!    which intersects the candidate's quorum; the member in the intersection still holds
//!    it (nobody else can write the member's log any more, and recycling it would have
//!    needed a majority to apply it, which puts the quorum's commit index past it). By (3)
//!    it carries the highest proposal at its position among the quorum, so it is adopted.
//!    A leader writes a follower's log in order, so a decided entry has its predecessors
//!    on a majority too: recovery can stop at the first position nobody holds.
//! 5. *Commit indices only describe what a follower holds.* A leader starts copying into a
//!    follower from where the follower's own log is known-decided, and every commit index
//!    it writes there is at most what it copied (entries carry the commit index of their
//!    writing, never above their own index). A follower applies an entry only below a
//!    commit index it read after the entry landed (RC order), and reads the entry then.
//! 6. *A replica that lost its state does not vote until a leader confirmed it.* A process
//!    started with [`Start::Rejoin`] grants whoever asks (so a leader can catch it up) but
//!    tells candidates it does not count, and nobody defers to it in elections. It may
//!    have promised, before it lost its state, more than it now shows; so a leader does
//!    not count its acknowledgements either. The leader that admits it writes, with its
//!    promise, an index `k` just past its own log, and creates an entry there (empty if
//!    no command waits). The newcomer counts again once it applied up to `k`: that entry
//!    was written after the newcomer started and decided by a majority that left it out,
//!    so that leader was still the leader after the restart — any higher promise the old
//!    process made was made to a candidate whose quorum meets that majority, which would
//!    have revoked the leader's writes there first. A stale leader (deposed while paused)
//!    that catches the newcomer up cannot decide that entry, and so cannot make it count.
//!
//! The VOPR (`tests/vopr`) checks all of it under crashes, pauses, partitions and clock
//! drift, seed by seed.

pub mod candidate;
pub mod cluster_port;
pub mod config;
pub mod election;
pub mod event;
pub mod follower;
pub mod leader;
pub mod local;
pub mod op;
pub mod peers;
pub mod port;
pub mod replica;
mod tracked;
pub mod views;

pub use config::{MuConfig, Start};
pub use event::{Event, ProposeError, RoleKind, Takeover};
pub use port::{Area, Channel, Place, Port, PortError, Source};
pub use replica::Replica;
pub use views::ViewLease;
