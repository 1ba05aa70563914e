//! The receiver: takes the broadcaster's messages, echoes them, and delivers each index
//! once — on the fast path when every other receiver echoed the same message, otherwise on
//! the slow path (see [`super::slow_path`]) once its fast-path deadline passes.
//!
//! Call order, as quinn's `Connection`: feed inputs ([`Receiver::handle_entry`] for each
//! entry read from a ring in our memory, [`Receiver::handle_register_written`] and
//! [`Receiver::handle_register_read`] for register completions), call
//! [`Receiver::tick`] whenever [`Receiver::poll_timeout`] has passed, then drain
//! [`Receiver::poll_action`] (work for the driver) and [`Receiver::poll_event`] (for the
//! consumer). Time is passed in; the receiver reads no clock.
//!
//! Why consistency holds: a correct receiver keeps the first message it gets for an index
//! and echoes exactly that one, and the fast path needs the echo of *every* other
//! receiver, so a fast delivery of `m` means every correct receiver holds `m`. The slow
//! path keeps the rest consistent (see its module).

use std::collections::VecDeque;

use usec_qp_pool::NodeId;

use super::action::{AbandonReason, Action, DeliveryPath, Event};
use super::config::{CtbConfig, INDEX_LIMIT};
use super::entry::{Body, Entry, SignatureBytes};
use super::instance::{Echo, Instance, Phase, Window};
use super::reject::{Reject, Stats};
use super::signature::Keyring;
use crate::error::{Error, Result};

/// The receiving side of one CTBcast stream, at one receiver.
#[derive(Debug)]
pub struct Receiver {
    pub(super) config: CtbConfig,
    pub(super) me: NodeId,
    pub(super) my_position: usize,
    pub(super) keys: Keyring,
    pub(super) window: Window,
    /// `(deadline, index)` in deadline order (every deadline is `now + timeout`).
    deadlines: VecDeque<(u64, u64)>,
    /// Indices whose message and signature are both in, to verify ahead of need.
    to_verify: VecDeque<u64>,
    /// Per register slot, the index whose write is in flight.
    pub(super) register_busy: Vec<Option<u64>>,
    pub(super) actions: VecDeque<Action>,
    pub(super) events: VecDeque<Event>,
    pub(super) stats: Stats,
    /// The latest time an input brought (register completions come without one).
    pub(super) now_ns: u64,
}

impl Receiver {
    /// Receiver `me` of `config`'s stream; `keys` holds the broadcaster's public key.
    pub fn new(config: CtbConfig, me: NodeId, keys: Keyring) -> Result<Receiver> {
        config.validate()?;
        let my_position = config
            .receiver_position(me)
            .ok_or_else(|| Error::Config(format!("ctbcast: {me} is not a receiver of this stream")))?;
        if keys.key(config.broadcaster).is_none() {
            return Err(Error::Config(format!(
                "ctbcast: no public key for broadcaster {}",
                config.broadcaster
            )));
        }
        Ok(Receiver {
            window: Window::new(config.tail),
            register_busy: vec![None; config.tail as usize],
            config,
            me,
            my_position,
            keys,
            deadlines: VecDeque::new(),
            to_verify: VecDeque::new(),
            actions: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
            now_ns: 0,
        })
    }

    /// An entry read from the ring `from` writes into our memory. Refusals are counted and
    /// change nothing.
    pub fn handle_entry(
        &mut self,
        now_ns: u64,
        from: NodeId,
        bytes: &[u8],
    ) -> std::result::Result<(), Reject> {
        self.now_ns = self.now_ns.max(now_ns);
        let entry = Entry::decode(bytes).map_err(|reject| self.stats.refuse(reject))?;
        self.check_entry(from, &entry).map_err(|reject| self.stats.refuse(reject))?;
        let result = match entry.body {
            Body::Message(message) => self.on_message(now_ns, entry.index, message),
            Body::EchoCopy(copy) => self.on_echo(now_ns, entry.index, from, Echo::Copy(copy.to_vec())),
            Body::EchoHash(hash) => self.on_echo(now_ns, entry.index, from, Echo::Hash(hash)),
            Body::Signature(signature) => self.on_signature(entry.index, signature),
            Body::SignatureRequest => unreachable!("refused by check_entry"),
        };
        result.map_err(|reject| self.stats.refuse(reject))
    }

    /// Runs what is due at `now_ns`: slow paths whose fast-path deadline passed, and
    /// signature requests to repeat; then, with [`CtbConfig::verify_ahead`], verifies the
    /// signatures that came ahead of need. Call it when [`Receiver::poll_timeout`] has
    /// passed, and when idle if [`Receiver::has_deferred_work`].
    pub fn tick(&mut self, now_ns: u64) {
        self.now_ns = self.now_ns.max(now_ns);
        while let Some(&(deadline, index)) = self.deadlines.front() {
            if deadline > now_ns {
                break;
            }
            self.deadlines.pop_front();
            match self.window.get_mut(index).map(|instance| &instance.phase) {
                Some(Phase::Fast) => self.enter_slow_path(now_ns, index),
                Some(Phase::AwaitSignature) => self.request_signature(now_ns, index),
                Some(Phase::Reading(_)) => self.retry_reads(index),
                _ => {}
            }
        }
        while let Some(index) = self.to_verify.pop_front() {
            self.verify_ahead(index);
        }
    }

    /// Whether [`Receiver::tick`] has verifying to do (only with `verify_ahead`).
    pub fn has_deferred_work(&self) -> bool {
        !self.to_verify.is_empty()
    }

    /// Queues `index`'s signature for verification ahead of need, if it is time.
    fn queue_verify(&mut self, index: u64) {
        if !self.config.verify_ahead {
            return;
        }
        let ready = self.window.get(index).is_some_and(|instance| {
            instance.message.is_some() && instance.signature.is_some() && !instance.signature_verified
        });
        if ready {
            // Bounded: a verification dropped here is done by the slow path if needed.
            if self.to_verify.len() >= 2 * self.config.tail as usize {
                self.to_verify.pop_front();
            }
            self.to_verify.push_back(index);
        }
    }

    fn verify_ahead(&mut self, index: u64) {
        let broadcaster = self.config.broadcaster;
        let Some(instance) = self.window.get_mut(index) else { return };
        let Some(signature) = instance.signature.filter(|_| !instance.signature_verified) else { return };
        if instance.is_done() {
            return;
        }
        let hash = instance.hash().expect("queued with its message");
        self.stats.signatures_checked += 1;
        if self.keys.verify(broadcaster, index, &hash, &signature) {
            instance.signature_verified = true;
        } else {
            instance.signature = None;
            self.stats.refuse(Reject::ForgedSignature { index });
        }
    }

    /// When [`Receiver::tick`] wants to run next.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.deadlines.front().map(|&(deadline, _)| deadline)
    }

    /// The next piece of work for the driver.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next delivery, proof or abandonment.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// What it has done and refused.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The lowest index still kept: an index below it that was not delivered never will be.
    pub fn oldest_kept(&self) -> u64 {
        self.window.oldest_kept()
    }

    /// The configuration.
    pub fn config(&self) -> &CtbConfig {
        &self.config
    }

    #[cfg(test)]
    pub(super) fn deadlines_len(&self) -> usize {
        self.deadlines.len()
    }

    /// Who may send what: messages and signatures come from the broadcaster, echoes from
    /// the other receivers, and an entry must name this stream and its own channel.
    fn check_entry(&self, from: NodeId, entry: &Entry<'_>) -> std::result::Result<(), Reject> {
        if entry.broadcaster != self.config.broadcaster.get() {
            return Err(Reject::WrongBroadcaster {
                expected: self.config.broadcaster,
                found: entry.broadcaster,
            });
        }
        if entry.sender != from.get() {
            return Err(Reject::WrongSender { from, claimed: entry.sender });
        }
        let allowed = match entry.body {
            Body::Message(_) | Body::Signature(_) => from == self.config.broadcaster,
            Body::EchoCopy(_) | Body::EchoHash(_) => {
                from != self.me && self.config.receiver_position(from).is_some()
            }
            Body::SignatureRequest => false,
        };
        if !allowed {
            return Err(Reject::UnexpectedSender { from, kind: entry.body.kind_name() });
        }
        if entry.index >= INDEX_LIMIT {
            return Err(Reject::IndexOutOfRange(entry.index));
        }
        if let Body::Message(bytes) | Body::EchoCopy(bytes) = entry.body {
            if bytes.len() > self.config.max_message_bytes {
                return Err(Reject::TooLarge { len: bytes.len(), max: self.config.max_message_bytes });
            }
        }
        Ok(())
    }

    /// Refuses indices outside the window, for entries that do not move it.
    fn check_window(&self, index: u64) -> std::result::Result<(), Reject> {
        let (oldest_kept, newest_accepted) = (self.window.oldest_kept(), self.window.newest_accepted());
        if index < oldest_kept {
            return Err(Reject::Stale { index, oldest_kept });
        }
        if index > newest_accepted {
            return Err(Reject::TooFarAhead { index, newest_accepted });
        }
        Ok(())
    }

    fn on_message(&mut self, now_ns: u64, index: u64, message: &[u8]) -> std::result::Result<(), Reject> {
        let oldest_kept = self.window.oldest_kept();
        if index < oldest_kept {
            return Err(Reject::Stale { index, oldest_kept });
        }
        if let Some(held) = self.window.get_mut(index).and_then(|instance| instance.message.as_deref()) {
            let kind = "message";
            return Err(if held == message {
                Reject::Duplicate { kind, index }
            } else {
                Reject::Conflicting { kind, index }
            });
        }
        // The broadcaster moved on: whatever falls a whole tail behind is given up.
        let (events, stats) = (&mut self.events, &mut self.stats);
        self.window.advance(index, |evicted| {
            if evicted.message.is_some() && !evicted.is_done() {
                stats.abandoned += 1;
                events.push_back(Event::Abandoned { index: evicted.index, reason: AbandonReason::OutOfTail });
            }
        });
        let receivers = self.config.receivers.len();
        let instance = self.window.get_or_insert(index, receivers);
        instance.message = Some(message.to_vec());
        instance.phase = Phase::Fast;
        self.send_echoes(index, message);
        self.push_deadline(now_ns + self.config.fast_path_timeout_ns, index);
        self.try_fast_path(now_ns, index);
        self.queue_verify(index);
        Ok(())
    }

    fn on_echo(
        &mut self,
        now_ns: u64,
        index: u64,
        from: NodeId,
        echo: Echo,
    ) -> std::result::Result<(), Reject> {
        self.check_window(index)?;
        let position = self.config.receiver_position(from).expect("checked by check_entry");
        let receivers = self.config.receivers.len();
        let instance = self.window.get_or_insert(index, receivers);
        if let Some(held) = &instance.echoes[position] {
            let kind = "echo";
            return Err(if *held == echo {
                Reject::Duplicate { kind, index }
            } else {
                Reject::Conflicting { kind, index }
            });
        }
        instance.echoes[position] = Some(echo);
        self.try_fast_path(now_ns, index);
        Ok(())
    }

    fn on_signature(&mut self, index: u64, signature: SignatureBytes) -> std::result::Result<(), Reject> {
        self.check_window(index)?;
        let receivers = self.config.receivers.len();
        let instance = self.window.get_or_insert(index, receivers);
        if instance.phase == Phase::Delivered && instance.signature.is_none() {
            // Signed ahead of need by a correct broadcaster, and the fast path was faster.
            self.stats.late_signatures += 1;
            return Ok(());
        }
        if instance.signature_verified || instance.is_done() {
            let kind = "signature";
            let same = instance.signature == Some(signature);
            return Err(if same {
                Reject::Duplicate { kind, index }
            } else {
                Reject::Conflicting { kind, index }
            });
        }
        // Unchecked until needed: a signature costs ~30 µs to verify, and on the fast path
        // it is never needed.
        instance.signature = Some(signature);
        if instance.phase == Phase::AwaitSignature {
            return self.use_signature(index);
        }
        self.queue_verify(index);
        Ok(())
    }

    /// Delivers on the fast path if every echo is in and matches; takes the slow path at
    /// once if an echo disagrees (the fast path can no longer succeed).
    fn try_fast_path(&mut self, now_ns: u64, index: u64) {
        let me = self.my_position;
        let instance = self.window.get_mut(index).expect("caller made it");
        if instance.message.is_none() || instance.is_done() {
            return;
        }
        if instance.all_echoes_match(me) {
            self.deliver(index, DeliveryPath::Fast);
        } else if instance.phase == Phase::Fast && !instance.no_echo_conflicts() {
            self.enter_slow_path(now_ns, index);
        }
    }

    fn send_echoes(&mut self, index: u64, message: &[u8]) {
        let hash;
        let body = if message.len() < self.config.echo_copy_below_bytes {
            Body::EchoCopy(message)
        } else {
            hash = self.window.get_mut(index).and_then(Instance::hash).expect("message is in");
            Body::EchoHash(hash)
        };
        let bytes =
            Entry { index, broadcaster: self.config.broadcaster.get(), sender: self.me.get(), body }.encode();
        for &to in &self.config.receivers {
            if to != self.me {
                self.actions.push_back(Action::Send { to, bytes: bytes.clone() });
            }
        }
    }

    pub(super) fn push_deadline(&mut self, deadline: u64, index: u64) {
        // Entries of indices that left the window or no longer wait are dead weight: drop
        // them once the queue is as long as the window can justify (two per instance),
        // so a flood of new indices cannot grow it.
        if self.deadlines.len() >= 4 * self.config.tail as usize {
            let window = &self.window;
            self.deadlines.retain(|&(_, index)| {
                window
                    .get(index)
                    .is_some_and(|instance| matches!(instance.phase, Phase::Fast | Phase::AwaitSignature))
            });
        }
        self.deadlines.push_back((deadline, index));
    }

    pub(super) fn deliver(&mut self, index: u64, path: DeliveryPath) {
        let instance = self.window.get_mut(index).expect("delivering a kept index");
        instance.phase = Phase::Delivered;
        let message = instance.message.clone().expect("delivering a received message");
        match path {
            DeliveryPath::Fast => self.stats.delivered_fast += 1,
            DeliveryPath::Slow => self.stats.delivered_slow += 1,
        }
        self.events.push_back(Event::Delivered { index, message, path });
    }
}
