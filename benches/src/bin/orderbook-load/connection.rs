//! One client connection: a seeded order stream sent as RESP requests, up to `pipeline`
//! of them in flight, each reply timed from the write that carried its request and read
//! back as the book's response, from which the stream learns which of its orders are open.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use usec_benches::latency::Recorder;
use usec_replication::apps::orderbook::{to_args, Command, LoadConfig, LoadGenerator, Response};
use usec_replication::apps::resp::{reply, Value};

/// What one connection measured after the warm-up.
#[derive(Debug, Default)]
pub struct Tally {
    /// Every command's latency.
    pub all: Recorder,
    /// New orders' (`BUY`/`SELL`) latency.
    pub orders: Recorder,
    /// Trades reported to takers.
    pub trades: u64,
    /// Replies that were not the book's (redirections, `TRYAGAIN`, `UNCERTAIN`), and the
    /// first few of them.
    pub errors: u64,
    /// The first errors, as sent.
    pub first_errors: Vec<String>,
}

/// When to stop and what to count.
#[derive(Clone, Copy, Debug)]
pub struct Schedule {
    /// Replies before this are not counted.
    pub measure_from: Instant,
    /// No request is sent after this; the run ends when the last reply is in.
    pub stop_at: Instant,
}

/// Drives one connection to `address` until `schedule.stop_at`.
pub fn drive(
    address: SocketAddr,
    seed: u64,
    config: LoadConfig,
    pipeline: usize,
    schedule: Schedule,
) -> Result<Tally> {
    let mut stream = TcpStream::connect(address).with_context(|| format!("connecting to {address}"))?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut load = LoadGenerator::new(seed, config);
    let mut in_flight: VecDeque<(Command, Instant)> = VecDeque::with_capacity(pipeline);
    let (mut out, mut input) = (Vec::new(), Vec::new());
    let mut chunk = vec![0u8; 64 << 10];
    let mut tally = Tally::default();
    loop {
        let now = Instant::now();
        if now < schedule.stop_at {
            out.clear();
            let batch = pipeline - in_flight.len();
            for _ in 0..batch {
                let command = load.next_command();
                let args = to_args(&command);
                reply::request(&mut out, args.iter().map(Vec::as_slice));
                in_flight.push_back((command, now));
            }
            stream.write_all(&out).context("sending")?;
        } else if in_flight.is_empty() {
            return Ok(tally);
        }
        let read = stream.read(&mut chunk).context("reading replies")?;
        if read == 0 {
            bail!("the server closed the connection");
        }
        input.extend_from_slice(&chunk[..read]);
        let mut taken = 0;
        while let Some((value, len)) = Value::decode(&input[taken..]).context("a reply that is not RESP")? {
            taken += len;
            let (command, sent) = in_flight.pop_front().context("a reply to no request")?;
            let counted = sent >= schedule.measure_from;
            let latency_ns = sent.elapsed().as_nanos() as u64;
            match Response::from_resp(&value) {
                Some(response) => {
                    if let (true, Response::Order(execution)) = (counted, &response) {
                        tally.trades += execution.fills.len() as u64;
                    }
                    load.observe(&command, &response);
                }
                None => {
                    tally.errors += 1;
                    if tally.first_errors.len() < 5 {
                        tally
                            .first_errors
                            .push(String::from_utf8_lossy(&value.to_bytes()).trim_end().to_string());
                    }
                }
            }
            if counted {
                tally.all.record_ns(latency_ns);
                if matches!(command, Command::Submit(_)) {
                    tally.orders.record_ns(latency_ns);
                }
            }
        }
        input.drain(..taken);
    }
}

/// Where the group's leader serves, asked of `address` (itself, if it leads or serves
/// alone): the first `-MOVED` a read through the log gets, followed; `-CLUSTERDOWN`
/// waited out.
pub fn find_leader(address: SocketAddr) -> Result<SocketAddr> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut stream = TcpStream::connect(address).with_context(|| format!("connecting to {address}"))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut request = Vec::new();
        reply::request(&mut request, [&b"BOOK"[..], b"SYM0", b"1"].into_iter());
        stream.write_all(&request)?;
        let mut input = Vec::new();
        let mut chunk = [0u8; 4096];
        let value = loop {
            if let Some((value, _)) = Value::decode(&input)? {
                break value;
            }
            let read = stream.read(&mut chunk)?;
            if read == 0 {
                bail!("{address} closed the connection");
            }
            input.extend_from_slice(&chunk[..read]);
        };
        match value {
            Value::Error(text) if text.starts_with(b"MOVED ") => {
                let text = String::from_utf8_lossy(&text);
                let leader = text.rsplit(' ').next().unwrap_or_default();
                return leader.parse().with_context(|| format!("a redirection to {leader:?}"));
            }
            Value::Error(text) if text.starts_with(b"CLUSTERDOWN") && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Value::Error(text) => bail!("{address} answered {}", String::from_utf8_lossy(&text)),
            _ => return Ok(address),
        }
    }
}
