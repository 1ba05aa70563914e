//! [`Recorder`]: where client threads write down what they asked and what they were
//! answered, stamped with a monotonic clock every process on the host shares.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;

use crate::error::Error;
use crate::history::{self, Event, Operation};

/// Now on `CLOCK_MONOTONIC`, in nanoseconds: the same clock for every thread and every
/// process of a host, so histories recorded by several client processes merge.
pub fn monotonic_ns() -> u64 {
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .expect("CLOCK_MONOTONIC is always there on Linux");
    let seconds = u64::try_from(now.tv_sec()).expect("the monotonic clock is never negative");
    let nanoseconds = u64::try_from(now.tv_nsec()).expect("the monotonic clock is never negative");
    seconds * 1_000_000_000 + nanoseconds
}

/// An operation invoked and not yet ended; hand it back to [`Recorder::ok`] or
/// [`Recorder::fail`]. Dropping it leaves the operation without a response, which is what
/// a client that gave up on an answer must record.
#[derive(Debug)]
#[must_use = "an operation never ended is recorded as one whose outcome is unknown"]
pub struct Invocation {
    /// The client.
    pub client: u64,
    /// The client's operation number.
    pub op: u64,
    /// When it was invoked.
    pub at_ns: u64,
}

struct Inner<I, O> {
    events: Vec<Event<I, O>>,
    last_op: HashMap<u64, u64>,
    sink: Option<BufWriter<File>>,
    sink_error: Option<std::io::Error>,
}

impl<I, O> Drop for Inner<I, O> {
    fn drop(&mut self) {
        if let Some(sink) = self.sink.as_mut() {
            let _ = sink.flush(); // nobody is left to tell; `Recorder::flush` reports errors
        }
    }
}

/// A history being recorded, shared by any number of client threads (clone it: clones
/// record into the same history).
///
/// Every event is stamped while the recorder's lock is held, so the events are in time
/// order as recorded. The lock is held for a clock read and a push: recording costs
/// well under a microsecond, small next to a request over the network.
pub struct Recorder<I, O> {
    inner: Arc<Mutex<Inner<I, O>>>,
}

impl<I, O> Clone for Recorder<I, O> {
    fn clone(&self) -> Recorder<I, O> {
        Recorder { inner: self.inner.clone() }
    }
}

impl<I, O> std::fmt::Debug for Recorder<I, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let events = self.inner.lock().map_or(0, |inner| inner.events.len());
        f.debug_struct("Recorder").field("events", &events).finish()
    }
}

impl<I: Clone + Serialize, O: Clone + Serialize> Default for Recorder<I, O> {
    fn default() -> Recorder<I, O> {
        Recorder::new()
    }
}

impl<I: Clone + Serialize, O: Clone + Serialize> Recorder<I, O> {
    /// A recorder that keeps the history in memory.
    pub fn new() -> Recorder<I, O> {
        Recorder {
            inner: Arc::new(Mutex::new(Inner {
                events: Vec::new(),
                last_op: HashMap::new(),
                sink: None,
                sink_error: None,
            })),
        }
    }

    /// A recorder that also appends every event to the file at `path` (created or
    /// truncated) as it happens, so that the history up to a crash of the recording
    /// process survives as far as it was flushed.
    pub fn streaming_to(path: &Path) -> Result<Recorder<I, O>, Error> {
        let file = File::create(path).map_err(Error::Io)?;
        let recorder = Recorder::new();
        recorder.lock().sink = Some(BufWriter::new(file));
        Ok(recorder)
    }

    fn lock(&self) -> MutexGuard<'_, Inner<I, O>> {
        // A client thread that panicked while recording left nothing half-done: a push.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn record(inner: &mut Inner<I, O>, event: Event<I, O>) {
        if let Some(sink) = inner.sink.as_mut() {
            if let Err(error) = history::write_event(&event, sink) {
                if inner.sink_error.is_none() {
                    inner.sink_error = Some(match error {
                        Error::Io(error) => error,
                        other => std::io::Error::other(other.to_string()),
                    });
                }
            }
        }
        inner.events.push(event);
    }

    /// Records that `client` invokes `input`, now. Call it before sending the request.
    pub fn invoke(&self, client: u64, input: I) -> Invocation {
        let mut inner = self.lock();
        let op = inner.last_op.entry(client).or_insert(0);
        *op += 1;
        let op = *op;
        let at_ns = monotonic_ns();
        Self::record(&mut inner, Event::Invoke { client, op, at_ns, input });
        Invocation { client, op, at_ns }
    }

    /// Records the answer to `invocation`, now. Call it once the answer arrived.
    pub fn ok(&self, invocation: Invocation, output: O) {
        let mut inner = self.lock();
        let at_ns = monotonic_ns();
        Self::record(&mut inner, Event::Ok { client: invocation.client, op: invocation.op, at_ns, output });
    }

    /// Records that `invocation` certainly did not take effect.
    pub fn fail(&self, invocation: Invocation) {
        let mut inner = self.lock();
        let at_ns = monotonic_ns();
        Self::record(&mut inner, Event::Fail { client: invocation.client, op: invocation.op, at_ns });
    }

    /// The events so far, in time order.
    pub fn events(&self) -> Vec<Event<I, O>> {
        self.lock().events.clone()
    }

    /// The operations so far; those still waiting for an answer have none.
    pub fn operations(&self) -> Vec<Operation<I, O>> {
        history::operations(self.events()).expect("a recorder's own events are consistent")
    }

    /// Writes the events so far to `path` as JSON lines.
    pub fn save(&self, path: &Path) -> Result<(), Error> {
        let file = File::create(path).map_err(Error::Io)?;
        history::write_events(&self.lock().events, BufWriter::new(file))
    }

    /// Pushes what a streaming recorder buffered to its file; the first write error, if
    /// any happened since the start.
    pub fn flush(&self) -> Result<(), Error> {
        let mut inner = self.lock();
        if let Some(error) = inner.sink_error.take() {
            return Err(Error::Io(error));
        }
        match inner.sink.as_mut() {
            Some(sink) => sink.flush().map_err(Error::Io),
            None => Ok(()),
        }
    }
}
