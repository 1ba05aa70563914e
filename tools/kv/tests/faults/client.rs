//! Client threads that drive the group over RESP and record every operation: its
//! invocation before the request is sent, its answer once it is read.
//!
//! What a reply means for the history:
//!
//! | reply | recorded as |
//! |---|---|
//! | the state machine's answer (`+OK`, a bulk, an integer, `-ERR …`) | returned |
//! | `-MOVED 0 host:port` (a follower; the client goes there) | failed: not applied |
//! | `-CLUSTERDOWN`, `-TRYAGAIN` | failed: not applied |
//! | `-UNCERTAIN` | unknown: may have been applied |
//! | none: the connection broke, or no answer within [`REPLY_TIMEOUT`] | unknown |
//!
//! Keys come in generations: a handful at a time, so that the clients contend, and a new
//! generation every [`EPOCH_OPS`] operations (of all clients together) and after every
//! operation whose outcome is unknown, so that each key's history — what the checker
//! searches — stays short however long the run, and holds few operations that may or may
//! not have happened: each can take effect anywhere after its invocation, and a search
//! through many unknown APPENDs to one key, which give different values in each order,
//! grows exponentially. (Leadership that changes hands answers many commands at once
//! with `-UNCERTAIN`.) For the same reason appended tokens have different lengths: an
//! APPEND's answer, the new length, then tells which of them went before it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use usec_check::models::{KvInput, KvOutput};
use usec_check::{Bytes, Invocation, Recorder};
use usec_replication::apps::resp::reply;
use usec_replication::apps::resp::scan::reply_len;

/// The history's recorder.
pub type KvRecorder = Recorder<KvInput, KvOutput>;

/// How long a client waits for a reply before it gives up on the connection (and leaves
/// what it waited for unknown). Far longer than a reply takes on a loaded machine; it
/// bounds how long clients of a stopped leader wait before they look for another.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(1);

/// How long the patient client waits: it sits out a stopped leader, to be answered by it
/// once it resumes — when it may not know yet that it was deposed.
pub const PATIENT_REPLY_TIMEOUT: Duration = Duration::from_secs(60);

/// Operations (of all clients) per generation of keys.
pub const EPOCH_OPS: u64 = 750;

/// Register keys per generation.
pub const REGISTERS: u64 = 3;

/// What the clients and the test's controller share.
#[derive(Debug)]
pub struct Shared {
    /// Every replica's RESP port, by node id.
    pub ports: Vec<u16>,
    /// Set to make the clients finish.
    pub stop: AtomicBool,
    /// Writes acknowledged with the state machine's answer (progress, for the controller).
    pub acked_writes: AtomicU64,
    /// Operations invoked, by all clients.
    pub invoked: AtomicU64,
    /// The generation of keys the clients use now.
    pub generation: AtomicU64,
}

/// The kinds of keys, each with the operations it gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// `r<generation>.<n>`: SET and GETSET of unique values, DEL, GET, EXISTS.
    Register,
    /// `c<generation>`: INCR and GET, nothing else (so its final value bounds the
    /// increments applied).
    Counter,
    /// `a<generation>`: APPEND of unique comma-ended tokens (`<client>.<n>x…x,`) and GET,
    /// nothing else (so its final value lists the appends applied).
    Appended,
}

impl KeyKind {
    /// The kind of `key`.
    pub fn of(key: &[u8]) -> KeyKind {
        match key.first() {
            Some(b'r') => KeyKind::Register,
            Some(b'c') => KeyKind::Counter,
            Some(b'a') => KeyKind::Appended,
            _ => panic!("not a key of these clients: {:?}", key.escape_ascii().to_string()),
        }
    }
}

/// The key of an input.
pub fn key_of(input: &KvInput) -> &Bytes {
    match input {
        KvInput::Get(key)
        | KvInput::Set(key, _)
        | KvInput::GetSet(key, _)
        | KvInput::Del(key)
        | KvInput::Exists(key)
        | KvInput::IncrBy(key, _)
        | KvInput::Append(key, _) => key,
    }
}

/// Whether an input may change the state.
pub fn is_write(input: &KvInput) -> bool {
    !matches!(input, KvInput::Get(_) | KvInput::Exists(_))
}

/// The RESP request of an input.
pub fn request(input: &KvInput, out: &mut Vec<u8>) {
    let by;
    let args: Vec<&[u8]> = match input {
        KvInput::Get(key) => vec![b"GET", key.as_slice()],
        KvInput::Set(key, value) => vec![b"SET", key.as_slice(), value.as_slice()],
        KvInput::GetSet(key, value) => vec![b"SET", key.as_slice(), value.as_slice(), b"GET"],
        KvInput::Del(key) => vec![b"DEL", key.as_slice()],
        KvInput::Exists(key) => vec![b"EXISTS", key.as_slice()],
        KvInput::IncrBy(key, 1) => vec![b"INCR", key.as_slice()],
        KvInput::IncrBy(key, amount) => {
            by = amount.to_string();
            vec![b"INCRBY", key.as_slice(), by.as_bytes()]
        }
        KvInput::Append(key, value) => vec![b"APPEND", key.as_slice(), value.as_slice()],
    };
    reply::request(out, args.into_iter());
}

/// What a reply says about its operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The state machine's answer.
    Output(KvOutput),
    /// Not applied: ask the replica at this port.
    Moved(u16),
    /// Not applied: no leader now, or the replica could not take it.
    Retry,
    /// Perhaps applied.
    Uncertain,
}

/// Reads a reply as an answer; `Err` for a reply these clients never expect.
pub fn classify(bytes: &[u8]) -> Result<Answer, String> {
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    let line_end = bytes.windows(2).position(|pair| pair == b"\r\n").ok_or_else(|| text(bytes))?;
    let line = &bytes[1..line_end];
    let number = || -> Result<i64, String> {
        std::str::from_utf8(line).ok().and_then(|digits| digits.parse().ok()).ok_or_else(|| text(bytes))
    };
    Ok(match bytes[0] {
        b'+' if line == b"OK" => Answer::Output(KvOutput::Ok),
        b':' => Answer::Output(KvOutput::Integer(number()?)),
        b'$' if line == b"-1" => Answer::Output(KvOutput::Value(None)),
        b'$' => {
            let len = usize::try_from(number()?).map_err(|_| text(bytes))?;
            let value = &bytes[line_end + 2..line_end + 2 + len];
            Answer::Output(KvOutput::Value(Some(Bytes::from(value))))
        }
        b'-' => {
            let error = text(line);
            if let Some(address) = error.strip_prefix("MOVED 0 ") {
                let address: SocketAddr = address.parse().map_err(|_| text(bytes))?;
                Answer::Moved(address.port())
            } else if error.starts_with("CLUSTERDOWN ") || error.starts_with("TRYAGAIN ") {
                Answer::Retry
            } else if error.starts_with("UNCERTAIN ") {
                Answer::Uncertain
            } else if let Some(message) = error.strip_prefix("ERR ") {
                Answer::Output(KvOutput::Error(message.to_string()))
            } else {
                return Err(error);
            }
        }
        _ => return Err(text(bytes)),
    })
}

/// A connection to one replica.
#[derive(Debug)]
pub struct Connection {
    pub port: u16,
    stream: TcpStream,
    buffer: Vec<u8>,
}

impl Connection {
    /// Connects to the replica at `port`, if it accepts.
    pub fn open(port: u16) -> Option<Connection> {
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        let stream = TcpStream::connect_timeout(&address, Duration::from_secs(1)).ok()?;
        stream.set_nodelay(true).ok()?;
        Some(Connection { port, stream, buffer: Vec::new() })
    }

    /// Sends bytes; `false` if the connection broke.
    pub fn send(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).is_ok()
    }

    /// The next reply, waiting at most `timeout` for it; `None` if the connection broke
    /// or it did not come in time.
    pub fn reply(&mut self, timeout: Duration) -> Option<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        loop {
            match reply_len(&self.buffer) {
                Ok(Some(len)) => return Some(self.buffer.drain(..len).collect()),
                Ok(None) => {}
                Err(error) => panic!("port {}: a malformed reply ({error:?}): {:?}", self.port, self.buffer),
            }
            let left = deadline.checked_duration_since(Instant::now()).filter(|left| !left.is_zero())?;
            self.stream.set_read_timeout(Some(left)).ok()?;
            let mut chunk = [0u8; 64 << 10];
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buffer.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Sends one request and reads its reply.
    pub fn request(&mut self, args: &[&[u8]], timeout: Duration) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        reply::request(&mut out, args.iter().copied());
        if !self.send(&out) {
            return None;
        }
        self.reply(timeout)
    }
}

/// One client thread's state.
pub struct Client {
    /// The client's id in the history.
    pub id: u64,
    /// Requests sent at once, before reading their replies (redis-benchmark's `-P`).
    pub pipeline: usize,
    /// How long it waits for a reply.
    pub reply_timeout: Duration,
    rng: ChaCha8Rng,
    shared: Arc<Shared>,
    recorder: KvRecorder,
    connection: Option<Connection>,
    /// Where to connect next (a redirection), if anywhere in particular.
    next_port: Option<u16>,
    unique: u64,
}

impl Client {
    /// Client `id`, its choices drawn from `seed`, waiting `reply_timeout` for a reply.
    pub fn new(
        id: u64,
        seed: u64,
        pipeline: usize,
        reply_timeout: Duration,
        shared: Arc<Shared>,
        recorder: KvRecorder,
    ) -> Client {
        let rng = ChaCha8Rng::seed_from_u64(seed ^ id.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        Client {
            id,
            pipeline,
            reply_timeout,
            rng,
            shared,
            recorder,
            connection: None,
            next_port: None,
            unique: 0,
        }
    }

    /// Runs until the controller says stop. Operations out when it does are left
    /// unknown.
    pub fn run(mut self) {
        while !self.shared.stop.load(Ordering::Relaxed) {
            if self.connection.is_none() {
                let port = self
                    .next_port
                    .take()
                    .unwrap_or_else(|| self.shared.ports[self.rng.gen_range(0..self.shared.ports.len())]);
                self.connection = Connection::open(port);
                if self.connection.is_none() {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            }
            self.batch();
        }
    }

    /// Sends `pipeline` operations and reads their answers.
    fn batch(&mut self) {
        let mut bytes = Vec::new();
        let mut out = Vec::with_capacity(self.pipeline);
        for _ in 0..self.pipeline {
            let input = self.next_input();
            request(&input, &mut bytes);
            let invocation = self.recorder.invoke(self.id, input.clone());
            out.push((input, invocation));
        }
        let connection = self.connection.as_mut().expect("connected before a batch");
        if !connection.send(&bytes) {
            self.connection = None; // what was sent may have arrived: all left unknown
            self.shared.generation.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let mut pause = false;
        let mut unknown = false;
        for (input, invocation) in out {
            let Some(connection) = self.connection.as_mut() else {
                drop(invocation); // after a broken reply: unknown
                continue;
            };
            let Some(reply) = connection.reply(self.reply_timeout) else {
                drop(invocation);
                self.connection = None;
                unknown = true;
                continue;
            };
            let answer = classify(&reply).unwrap_or_else(|reply| {
                panic!("client {}: {input:?} got a reply no client expects: {reply:?}", self.id)
            });
            match answer {
                Answer::Output(output) => {
                    if is_write(&input) && !matches!(output, KvOutput::Error(_)) {
                        self.shared.acked_writes.fetch_add(1, Ordering::Relaxed);
                    }
                    self.recorder.ok(invocation, output);
                }
                Answer::Moved(port) => {
                    self.recorder.fail(invocation);
                    self.next_port = Some(port);
                }
                Answer::Retry => {
                    self.recorder.fail(invocation);
                    pause = true;
                }
                Answer::Uncertain => {
                    drop(invocation);
                    unknown = true;
                }
            }
        }
        if unknown {
            self.shared.generation.fetch_add(1, Ordering::Relaxed);
        }
        if self.next_port.is_some() || pause {
            // The replies after a redirection are read (they are on their way), then the
            // client goes where it was sent; without a leader known, it waits a little
            // and asks a replica drawn at random.
            self.connection = None;
        }
        if pause {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The next operation: its key from the current generation, its value unique.
    fn next_input(&mut self) -> KvInput {
        let invoked = self.shared.invoked.fetch_add(1, Ordering::Relaxed) + 1;
        if invoked % EPOCH_OPS == 0 {
            self.shared.generation.fetch_add(1, Ordering::Relaxed);
        }
        let generation = self.shared.generation.load(Ordering::Relaxed);
        self.unique += 1;
        let value = format!("{}.{}", self.id, self.unique);
        let token = format!("{value}{},", "x".repeat(self.rng.gen_range(0..12)));
        let register = Bytes::from(format!("r{generation}.{}", self.rng.gen_range(0..REGISTERS)).as_str());
        let counter = Bytes::from(format!("c{generation}").as_str());
        let appended = Bytes::from(format!("a{generation}").as_str());
        match self.rng.gen_range(0..100) {
            0..=19 => KvInput::Set(register, Bytes::from(value.as_str())),
            20..=29 => KvInput::GetSet(register, Bytes::from(value.as_str())),
            30..=33 => KvInput::Del(register),
            34..=49 => KvInput::Get(register),
            50..=53 => KvInput::Exists(register),
            54..=69 => KvInput::IncrBy(counter, 1),
            70..=74 => KvInput::Get(counter),
            75..=91 => KvInput::Append(appended, Bytes::from(token.as_str())),
            _ => KvInput::Get(appended),
        }
    }
}

/// Requests sent to one replica at once, recorded, whose answers are read later: sent to a
/// stopped leader, they are read by it only once it resumes, when it may not know yet that
/// it was deposed.
pub struct Probe {
    connection: Option<Connection>,
    out: Vec<(KvInput, Invocation)>,
}

impl Probe {
    /// Sends `inputs` to the replica at `port` as client `id`.
    pub fn send(port: u16, id: u64, inputs: Vec<KvInput>, recorder: &KvRecorder) -> Probe {
        let mut connection = Connection::open(port);
        let mut bytes = Vec::new();
        let mut out = Vec::new();
        for input in inputs {
            request(&input, &mut bytes);
            out.push((input.clone(), recorder.invoke(id, input)));
        }
        if let Some(sent) = connection.as_mut().map(|connection| connection.send(&bytes)) {
            if !sent {
                connection = None;
            }
        }
        Probe { connection, out }
    }

    /// Reads the answers (waiting up to `timeout` for each) and records them; how many
    /// came with the state machine's answer.
    pub fn finish(self, timeout: Duration, recorder: &KvRecorder) -> usize {
        let Probe { mut connection, out } = self;
        let mut answered = 0;
        for (input, invocation) in out {
            let reply = connection.as_mut().and_then(|connection| connection.reply(timeout));
            let Some(reply) = reply else {
                connection = None;
                drop(invocation);
                continue;
            };
            match classify(&reply).unwrap_or_else(|reply| panic!("the probe's {input:?} got {reply:?}")) {
                Answer::Output(output) => {
                    recorder.ok(invocation, output);
                    answered += 1;
                }
                Answer::Moved(_) | Answer::Retry => recorder.fail(invocation),
                Answer::Uncertain => drop(invocation),
            }
        }
        answered
    }
}

/// Reads and writes of every key of the latest `generations` generations.
pub fn probe_inputs(shared: &Shared, generations: u64, tag: &str) -> Vec<KvInput> {
    let latest = shared.generation.load(Ordering::Relaxed);
    let mut inputs = Vec::new();
    for generation in latest.saturating_sub(generations - 1)..=latest {
        let mut keys: Vec<String> = (0..REGISTERS).map(|n| format!("r{generation}.{n}")).collect();
        keys.push(format!("c{generation}"));
        keys.push(format!("a{generation}"));
        inputs.extend(keys.iter().map(|key| KvInput::Get(Bytes::from(key.as_str()))));
    }
    // A write too: a deposed leader must not acknowledge it unless it is kept.
    let register = Bytes::from(format!("r{latest}.0").as_str());
    inputs.push(KvInput::Set(register, Bytes::from(tag)));
    inputs
}
