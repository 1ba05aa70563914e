//! [`Relay`]: one client of the front door and its connection to the leader, sans IO.
//!
//! Requests are cut whole (the KV's own parser) and kept, in order, until answered;
//! replies are cut whole (the KV's reply scanner) and matched to them. That is what lets
//! the client keep its connection when the leader changes:
//!
//! - A reply saying the request was not applied — `-MOVED` (the replica no longer
//!   leads), `-CLUSTERDOWN` (no leader yet), `-TRYAGAIN`, and for a read `-UNCERTAIN`
//!   (leadership changed under it) — sends the request back to wait, and once everything
//!   sent to that replica is answered the relay asks for the leader again and sends it
//!   there.
//! - When the connection to the leader is lost, each request sent and not answered is
//!   sent again to the next leader if it only reads; a write gets `-UNCERTAIN …` (it may
//!   or may not have been applied, as the KV itself says when leadership changes under a
//!   command).
//! - A client's pipeline never runs out of order: a request is sent again only while no
//!   write after it on the connection may have run, and reads after it that ran already
//!   run again after it (their first answers were not passed on yet). One that cannot be
//!   sent again gets the reply that sent it back (the `-MOVED`, or `-UNCERTAIN` for a
//!   read).
//!
//! Drive it so: feed what the client sent to [`Relay::client_bytes`] and what the
//! upstream sent to [`Relay::upstream_bytes`]; write out [`Relay::upstream_out`] and
//! [`Relay::client_out`], draining what was written; connect when [`Relay::wants_upstream`]
//! and say so with [`Relay::upstream_connected`]; close the upstream when
//! [`Relay::must_reroute`], or when it fails, and say so with [`Relay::upstream_lost`];
//! close the client once [`Relay::finished`].

use std::collections::VecDeque;

use usec_replication::apps::resp::reply;
use usec_replication::apps::resp::scan::{reply_len, MalformedReply};
use usec_replication::apps::resp::{Args, Limits, Parsed, RequestParser};

/// The most a relay buffers from the client before it stops reading it.
pub const MAX_BUFFERED_BYTES: usize = 4 << 20;

/// The most requests a relay keeps unanswered before it stops reading the client.
pub const MAX_PENDING_REQUESTS: usize = 1 << 16;

/// Requests larger than this are refused (far above the KV's own entry limit).
pub const MAX_REQUEST_BYTES: usize = 8 << 20;

/// The reply to a request the leader was sent but never answered.
pub const UNCERTAIN: &str =
    "UNCERTAIN the front door lost the leader before its reply; the command may or may not have been applied";

/// Says whether a request only reads, so that running it again changes nothing.
pub type ReadOnly = Box<dyn FnMut(Args<'_>) -> bool + Send>;

/// The state of the connection to the leader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Link {
    /// None: requests wait.
    Down,
    /// Requests go through.
    Up,
    /// The replica said it does not lead: requests wait until those sent are answered,
    /// then the connection goes.
    Draining,
}

/// Where a request is.
#[derive(Debug)]
enum Stage {
    /// To go with the next batch sent. `fallback`: the reply it gets if it cannot be
    /// sent again (the reply that sent it back, or `-UNCERTAIN` for a read that was in
    /// flight); `None` if it was never sent.
    Waiting { fallback: Option<Vec<u8>> },
    /// Sent to the current upstream: its reply is due.
    Sent,
    /// Answered. `observable`: what it did may be seen (a write that ran, or may have) —
    /// then no request before it may run again. `rerun`: a read that ran and may run again
    /// after a request before it that goes again (it is not passed on until then).
    Done { reply: Vec<u8>, observable: bool, rerun: bool },
}

#[derive(Debug)]
struct Pending {
    request: Vec<u8>,
    read_only: bool,
    stage: Stage,
}

/// Counts of what a relay did, since last taken.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Requests answered `-UNCERTAIN`.
    pub uncertain: u64,
    /// Requests sent again (to the next leader).
    pub resent: u64,
    /// Error replies passed to the client (from replicas, or kept as a fallback).
    pub errors: u64,
}

/// One client's relay.
pub struct Relay {
    parser: RequestParser,
    read_only: ReadOnly,
    inbox: Vec<u8>,
    /// Every request not yet answered to the client, in order.
    queue: VecDeque<Pending>,
    sent: usize,
    waiting: usize,
    to_upstream: Vec<u8>,
    from_upstream: Vec<u8>,
    to_client: Vec<u8>,
    link: Link,
    /// The error that ends the client's stream, sent once everything before it is
    /// answered.
    refusal: Option<Vec<u8>>,
    finishing: bool,
    counts: Counts,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay").field("queue", &self.queue.len()).field("link", &self.link).finish()
    }
}

fn error_reply(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    reply::error(&mut out, text);
    out
}

/// Whether `reply` says its request was not applied — or, for a read, that its outcome
/// is unknown (a read applies nothing: it can run again).
fn not_applied(reply: &[u8], read_only: bool) -> bool {
    [&b"-MOVED "[..], b"-CLUSTERDOWN", b"-TRYAGAIN"].iter().any(|word| reply.starts_with(word))
        || (read_only && reply.starts_with(b"-UNCERTAIN"))
}

impl Relay {
    /// A relay for a new client, with no upstream yet; `read_only` tells requests that
    /// may be sent again.
    pub fn new(read_only: ReadOnly) -> Relay {
        let limits = Limits { max_request_bytes: MAX_REQUEST_BYTES, ..Limits::default() };
        Relay {
            parser: RequestParser::new(limits),
            read_only,
            inbox: Vec::new(),
            queue: VecDeque::new(),
            sent: 0,
            waiting: 0,
            to_upstream: Vec::new(),
            from_upstream: Vec::new(),
            to_client: Vec::new(),
            link: Link::Down,
            refusal: None,
            finishing: false,
            counts: Counts::default(),
        }
    }

    /// Whether to read from the client now.
    pub fn reads_client(&self) -> bool {
        self.refusal.is_none()
            && !self.finishing
            && self.inbox.len() + self.to_upstream.len() < MAX_BUFFERED_BYTES
            && self.queue.len() < MAX_PENDING_REQUESTS
    }

    /// Whether to read from the upstream now.
    pub fn reads_upstream(&self) -> bool {
        self.to_client.len() < MAX_BUFFERED_BYTES
    }

    /// Takes bytes the client sent.
    pub fn client_bytes(&mut self, bytes: &[u8]) {
        if self.refusal.is_some() || self.finishing {
            return;
        }
        self.inbox.extend_from_slice(bytes);
        loop {
            match self.parser.parse(&self.inbox) {
                Ok(Parsed::Request { len }) => {
                    let args = self.parser.args(&self.inbox);
                    // An empty frame gets no reply: nothing to forward.
                    if !args.is_empty() {
                        let read_only = (self.read_only)(args);
                        let request = self.inbox[..len].to_vec();
                        let stage = if self.link == Link::Up {
                            self.to_upstream.extend_from_slice(&request);
                            self.sent += 1;
                            Stage::Sent
                        } else {
                            self.waiting += 1;
                            Stage::Waiting { fallback: None }
                        };
                        self.queue.push_back(Pending { request, read_only, stage });
                    }
                    self.inbox.drain(..len);
                }
                Ok(Parsed::TooLarge { .. }) => {
                    let limit =
                        format!("ERR request over the front door's limit of {MAX_REQUEST_BYTES} bytes");
                    self.refuse(error_reply(&limit));
                    break;
                }
                Ok(Parsed::Incomplete { discard }) => {
                    self.inbox.drain(..discard);
                    break;
                }
                Err(error) => {
                    self.refuse(error.reply());
                    break;
                }
            }
        }
        self.finish_if_refused();
    }

    fn refuse(&mut self, error: Vec<u8>) {
        self.inbox.clear();
        self.refusal = Some(error);
    }

    /// Takes bytes the upstream sent; an error means the upstream is unusable (a
    /// malformed reply, or one nothing was sent for): lose it.
    pub fn upstream_bytes(&mut self, bytes: &[u8]) -> Result<(), MalformedReply> {
        self.from_upstream.extend_from_slice(bytes);
        let mut start = 0;
        let mut result = Ok(());
        loop {
            let len = match reply_len(&self.from_upstream[start..]) {
                Ok(Some(len)) => len,
                Ok(None) => break,
                Err(error) => {
                    result = Err(error);
                    break;
                }
            };
            let reply = self.from_upstream[start..start + len].to_vec();
            let Some(pending) = self.queue.iter_mut().find(|pending| matches!(pending.stage, Stage::Sent))
            else {
                result = Err(MalformedReply(start));
                break;
            };
            self.sent -= 1;
            if not_applied(&reply, pending.read_only) {
                pending.stage = Stage::Waiting { fallback: Some(reply) };
                self.waiting += 1;
                if self.link == Link::Up {
                    self.link = Link::Draining;
                }
            } else {
                self.counts.errors += u64::from(reply.starts_with(b"-"));
                let read_only = pending.read_only;
                pending.stage = Stage::Done { reply, observable: !read_only, rerun: read_only };
            }
            start += len;
        }
        self.from_upstream.drain(..start);
        self.settle();
        result
    }

    /// The upstream connection is up: what waits goes to it, in order.
    pub fn upstream_connected(&mut self) {
        assert_eq!(self.link, Link::Down, "one upstream at a time");
        assert_eq!(self.sent, 0, "nothing is due from a new upstream");
        self.link = Link::Up;
        for pending in &mut self.queue {
            let again = match &pending.stage {
                Stage::Waiting { fallback } => fallback.is_some(),
                // Behind a request that goes again (or it would have been passed on).
                Stage::Done { rerun: true, .. } => true,
                Stage::Done { .. } | Stage::Sent => continue,
            };
            self.counts.resent += u64::from(again);
            self.to_upstream.extend_from_slice(&pending.request);
            pending.stage = Stage::Sent;
            self.sent += 1;
        }
        self.waiting = 0;
    }

    /// The upstream connection is gone (failed, or closed by the driver).
    pub fn upstream_lost(&mut self) {
        for pending in &mut self.queue {
            if matches!(pending.stage, Stage::Sent) {
                pending.stage = if pending.read_only {
                    self.waiting += 1;
                    Stage::Waiting { fallback: Some(error_reply(UNCERTAIN)) }
                } else {
                    self.counts.uncertain += 1;
                    self.counts.errors += 1;
                    Stage::Done { reply: error_reply(UNCERTAIN), observable: true, rerun: false }
                };
            }
        }
        self.sent = 0;
        self.to_upstream.clear();
        self.from_upstream.clear();
        self.link = Link::Down;
        self.settle();
    }

    /// Gives up sending again any request that a write after it may have run before, and
    /// passes on what is answered, in order.
    fn settle(&mut self) {
        let mut later_observable = false;
        for pending in self.queue.iter_mut().rev() {
            match &mut pending.stage {
                // Not known yet: it may turn out not applied, and then what is before it
                // may still go again.
                Stage::Sent => {}
                Stage::Done { observable, rerun, .. } => {
                    *rerun &= !later_observable;
                    later_observable |= *observable;
                }
                Stage::Waiting { fallback } if later_observable => {
                    let reply = fallback
                        .take()
                        .expect("requests are sent in order: one never sent has none sent after it");
                    if reply == error_reply(UNCERTAIN) {
                        self.counts.uncertain += 1;
                    }
                    self.counts.errors += 1;
                    self.waiting -= 1;
                    pending.stage = Stage::Done { reply, observable: false, rerun: false };
                }
                Stage::Waiting { .. } => {}
            }
        }
        while let Some(Pending { stage: Stage::Done { reply, .. }, .. }) = self.queue.front_mut() {
            self.to_client.append(reply);
            self.queue.pop_front();
        }
        self.finish_if_refused();
    }

    /// Whether requests wait for an upstream connection.
    pub fn wants_upstream(&self) -> bool {
        self.link == Link::Down && self.waiting > 0
    }

    /// Whether the upstream said it does not lead and has answered all it was sent: close
    /// it and say [`Relay::upstream_lost`].
    pub fn must_reroute(&self) -> bool {
        self.link == Link::Draining && self.sent == 0
    }

    /// Requests sent upstream and not answered.
    pub fn outstanding(&self) -> usize {
        self.sent
    }

    /// Bytes to write to the upstream: drain what was written.
    pub fn upstream_out(&mut self) -> &mut Vec<u8> {
        &mut self.to_upstream
    }

    /// Bytes to write to the client: drain what was written.
    pub fn client_out(&mut self) -> &mut Vec<u8> {
        &mut self.to_client
    }

    /// Whether the client's stream ended in an error that has been written out: close it.
    pub fn finished(&self) -> bool {
        self.finishing && self.to_client.is_empty()
    }

    /// What it did since last asked.
    pub fn take_counts(&mut self) -> Counts {
        std::mem::take(&mut self.counts)
    }

    fn finish_if_refused(&mut self) {
        if self.queue.is_empty() {
            if let Some(error) = self.refusal.take() {
                self.to_client.extend_from_slice(&error);
                self.finishing = true;
            }
        }
    }
}

#[cfg(test)]
mod tests;
