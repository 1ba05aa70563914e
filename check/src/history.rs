//! Histories: operations with their invocation and response times, and the event-log
//! format they are saved in.
//!
//! A client records an operation's invocation *before* it sends the request and its
//! response *after* the answer arrived, both on a clock every client shares (the
//! [`Recorder`](crate::Recorder) uses `CLOCK_MONOTONIC`, which one host's processes
//! share). Then if operation A's response time is below B's invocation time, A really
//! finished before B started, and any linearization must put A first.
//!
//! What a client records when no answer came:
//! - the request may have reached the service (a timeout, a closed connection, a killed
//!   replica): the operation stays without a response — [`Outcome::Unknown`]. It may or
//!   may not have taken effect, at any time after its invocation;
//! - the service certainly did not apply it (refused before sending, or a reply that says
//!   it was not applied): [`Event::Fail`]; the operation is dropped from the history.
//!
//! # The event log
//!
//! One JSON object per line, in the order they happened; `(client, op)` names an
//! operation, `op` counting each client's operations:
//!
//! ```text
//! {"invoke":{"client":1,"op":1,"at_ns":1000,"input":{"Set":["x","a"]}}}
//! {"invoke":{"client":2,"op":1,"at_ns":1200,"input":{"Get":"x"}}}
//! {"ok":{"client":1,"op":1,"at_ns":1500,"output":"Ok"}}
//! {"fail":{"client":2,"op":1,"at_ns":1700}}
//! ```
//!
//! Several files (one per client process) merge into one history: each event carries its
//! own time.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::Error;

/// One operation of a history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation<I, O> {
    /// Who issued it (for the reader of a counterexample; the checker does not need it).
    pub client: u64,
    /// What was asked.
    pub input: I,
    /// When it was invoked.
    pub invoke_ns: u64,
    /// How it ended.
    pub outcome: Outcome<O>,
}

/// How an operation ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome<O> {
    /// The answer came.
    Returned {
        /// When it arrived.
        at_ns: u64,
        /// What it was.
        output: O,
    },
    /// No answer came: the operation may have taken effect at any time after its
    /// invocation, or never.
    Unknown,
}

impl<I, O> Operation<I, O> {
    /// An operation that returned `output` at `return_ns`.
    pub fn returned(client: u64, input: I, invoke_ns: u64, return_ns: u64, output: O) -> Operation<I, O> {
        Operation { client, input, invoke_ns, outcome: Outcome::Returned { at_ns: return_ns, output } }
    }

    /// An operation whose answer never came.
    pub fn unknown(client: u64, input: I, invoke_ns: u64) -> Operation<I, O> {
        Operation { client, input, invoke_ns, outcome: Outcome::Unknown }
    }

    /// When its answer came, if it did.
    pub fn return_ns(&self) -> Option<u64> {
        match self.outcome {
            Outcome::Returned { at_ns, .. } => Some(at_ns),
            Outcome::Unknown => None,
        }
    }

    /// Its answer, if it came.
    pub fn output(&self) -> Option<&O> {
        match &self.outcome {
            Outcome::Returned { output, .. } => Some(output),
            Outcome::Unknown => None,
        }
    }
}

/// One line of the event log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Event<I, O> {
    /// An operation was invoked.
    Invoke {
        /// The client.
        client: u64,
        /// The client's operation number.
        op: u64,
        /// When.
        at_ns: u64,
        /// What was asked.
        input: I,
    },
    /// Its answer came.
    Ok {
        /// The client.
        client: u64,
        /// The client's operation number.
        op: u64,
        /// When.
        at_ns: u64,
        /// The answer.
        output: O,
    },
    /// It certainly did not take effect.
    Fail {
        /// The client.
        client: u64,
        /// The client's operation number.
        op: u64,
        /// When.
        at_ns: u64,
    },
}

impl<I, O> Event<I, O> {
    fn name(&self) -> (u64, u64) {
        match *self {
            Event::Invoke { client, op, .. }
            | Event::Ok { client, op, .. }
            | Event::Fail { client, op, .. } => (client, op),
        }
    }
}

/// Writes events as JSON lines.
pub fn write_events<I: Serialize, O: Serialize>(
    events: &[Event<I, O>],
    mut out: impl Write,
) -> Result<(), Error> {
    for event in events {
        write_event(event, &mut out)?;
    }
    out.flush().map_err(Error::Io)
}

pub(crate) fn write_event<I: Serialize, O: Serialize>(
    event: &Event<I, O>,
    out: &mut impl Write,
) -> Result<(), Error> {
    serde_json::to_writer(&mut *out, event).map_err(|error| Error::Encode(error.to_string()))?;
    out.write_all(b"\n").map_err(Error::Io)
}

/// Reads JSON-line events (empty lines are skipped).
pub fn read_events<I: DeserializeOwned, O: DeserializeOwned>(
    input: impl BufRead,
) -> Result<Vec<Event<I, O>>, Error> {
    let mut events = Vec::new();
    for (index, line) in input.lines().enumerate() {
        let line = line.map_err(Error::Io)?;
        if line.trim().is_empty() {
            continue;
        }
        let event = serde_json::from_str(&line)
            .map_err(|error| Error::Malformed { line: index + 1, why: error.to_string() })?;
        events.push(event);
    }
    Ok(events)
}

/// Turns events (from one log or several, in any order) into operations, ordered by
/// invocation time. An invocation without an answer is [`Outcome::Unknown`]; a failed one
/// is dropped.
pub fn operations<I, O>(
    events: impl IntoIterator<Item = Event<I, O>>,
) -> Result<Vec<Operation<I, O>>, Error> {
    let mut invoked: BTreeMap<(u64, u64), Operation<I, O>> = BTreeMap::new();
    let mut ends: Vec<Event<I, O>> = Vec::new();
    for event in events {
        let name = event.name();
        match event {
            Event::Invoke { client, at_ns, input, .. } => {
                if invoked.insert(name, Operation::unknown(client, input, at_ns)).is_some() {
                    return Err(Error::Inconsistent { client: name.0, op: name.1, why: "invoked twice" });
                }
            }
            end => ends.push(end),
        }
    }
    let mut failed = Vec::new();
    for end in ends {
        let name = end.name();
        let inconsistent = |why| Error::Inconsistent { client: name.0, op: name.1, why };
        let operation = invoked.get_mut(&name).ok_or_else(|| inconsistent("ends but was never invoked"))?;
        if !matches!(operation.outcome, Outcome::Unknown) || failed.contains(&name) {
            return Err(inconsistent("ends twice"));
        }
        let at_ns = match &end {
            Event::Ok { at_ns, .. } | Event::Fail { at_ns, .. } | Event::Invoke { at_ns, .. } => *at_ns,
        };
        if at_ns < operation.invoke_ns {
            return Err(inconsistent("ends before it was invoked"));
        }
        match end {
            Event::Ok { at_ns, output, .. } => operation.outcome = Outcome::Returned { at_ns, output },
            _ => failed.push(name),
        }
    }
    for name in failed {
        invoked.remove(&name);
    }
    let mut operations: Vec<_> = invoked.into_values().collect();
    operations.sort_by_key(|operation| operation.invoke_ns);
    Ok(operations)
}
