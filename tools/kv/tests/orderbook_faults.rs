//! Replicas' books after a fault run, with real processes: three usec-kv replicas of the
//! order book on the soft provider; a client sends a seeded order stream one command at a
//! time to whoever leads while the leader is SIGKILLed and restarted as a fresh process
//! (`--rejoin`), twice. Then every replica's `BOOK.DIGEST` (a local read of its own state)
//! must be the same, and equal to the digest of an unreplicated book fed what the client
//! had acknowledged.
//!
//! It caught a Mu stall: a replica restarted with `--rejoin` numbers its permission requests
//! from its own new clock, below its old process's last, and peers that remembered the old
//! numbers ignored them; when that replica was the lowest id the group had no leader until
//! its clock caught up (4 runs in 5 stalled). Peers now forget a restarted process's numbers.
//!
//! A command whose outcome the client never learned (the leader died with it, or answered
//! `-UNCERTAIN`) may or may not have been applied, before every later one (a sequential
//! client's commands are ordered in the log as sent): the reference keeps both books,
//! and the next acknowledged reply — order and trade ids leave no doubt — says which was
//! right.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::orderbook::{answer, digest, ORDERBOOK};
use common::Group;
use usec_replication::apps::orderbook::{
    to_args, Command, LoadConfig, LoadGenerator, RespOrderBook, Response,
};
use usec_replication::apps::resp::{reply, Value};
use usec_replication::StateMachine;

/// What became of one command.
#[derive(Debug)]
enum Outcome {
    /// The book's reply, as received.
    Acknowledged(Vec<u8>),
    /// Applied or not: unknown.
    Unknown,
}

/// A client that follows the leader and tells what became of each command.
struct Driver {
    ports: Vec<u16>,
    port: u16,
    stream: Option<TcpStream>,
}

impl Driver {
    /// The reply to `args`, or `None` if the connection broke first (then the next
    /// request goes to another replica).
    fn request(&mut self, args: &[Vec<u8>]) -> Option<Value> {
        if self.stream.is_none() {
            let stream = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], self.port))).ok();
            if let Some(stream) = &stream {
                stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            } else {
                self.next_replica();
                return None;
            }
            self.stream = stream;
        }
        let stream = self.stream.as_mut().expect("connected");
        let mut request = Vec::new();
        reply::request(&mut request, args.iter().map(Vec::as_slice));
        let (mut input, mut chunk) = (Vec::new(), [0u8; 4096]);
        let sent = stream.write_all(&request);
        let value = sent.ok().and_then(|()| loop {
            if let Some((value, _)) = Value::decode(&input).expect("RESP") {
                break Some(value);
            }
            match stream.read(&mut chunk) {
                Ok(read) if read > 0 => input.extend_from_slice(&chunk[..read]),
                _ => break None,
            }
        });
        if value.is_none() {
            self.next_replica();
        }
        value
    }

    fn next_replica(&mut self) {
        self.stream = None;
        let at = self.ports.iter().position(|&port| port == self.port).unwrap_or(0);
        self.port = self.ports[(at + 1) % self.ports.len()];
        std::thread::sleep(Duration::from_millis(20));
    }

    /// Sends `command` until the group takes it or may have: its outcome.
    fn run(&mut self, command: &Command) -> Outcome {
        let args = to_args(command);
        loop {
            let Some(value) = self.request(&args) else {
                eprintln!("client: no reply from port {}", self.port);
                return Outcome::Unknown;
            };
            let Value::Error(text) = &value else { return Outcome::Acknowledged(value.to_bytes()) };
            let text = String::from_utf8_lossy(text).into_owned();
            eprintln!("client: port {} answered {text}", self.port);
            if let Some(address) = text.strip_prefix("MOVED 0 ") {
                // Not applied: ask the leader.
                let leader: SocketAddr = address.parse().unwrap();
                self.port = leader.port();
                self.stream = None;
            } else if text.starts_with("CLUSTERDOWN") || text.starts_with("TRYAGAIN") {
                // Not applied: no leader yet, or it is busy.
                std::thread::sleep(Duration::from_millis(20));
            } else if text.starts_with("UNCERTAIN") {
                return Outcome::Unknown;
            } else {
                // The book's own refusal.
                return Outcome::Acknowledged(value.to_bytes());
            }
        }
    }
}

/// Runs the stream from `seed` against the group until `stop`; every command and what
/// became of it.
fn client(
    ports: Vec<u16>,
    seed: u64,
    acknowledged: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> Vec<(Command, Outcome)> {
    let config = LoadConfig { symbols: 3, accounts: 20, ..LoadConfig::default() };
    let mut load = LoadGenerator::new(seed, config);
    let mut driver = Driver { port: ports[0], ports, stream: None };
    let mut history = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let command = load.next_command();
        let outcome = driver.run(&command);
        if let Outcome::Acknowledged(bytes) = &outcome {
            let (value, _) = Value::decode(bytes).unwrap().unwrap();
            let response = Response::from_resp(&value)
                .unwrap_or_else(|| panic!("{command:?} got {:?}", String::from_utf8_lossy(bytes)));
            load.observe(&command, &response);
            acknowledged.fetch_add(1, Ordering::Relaxed);
        }
        history.push((command, outcome));
    }
    history
}

/// The books an unreplicated engine may hold after `history`: every way the unknown
/// outcomes can have gone that agrees with every acknowledged reply (equal books counted
/// once).
fn reference_books(history: &[(Command, Outcome)]) -> Vec<RespOrderBook> {
    let mut books = vec![RespOrderBook::default()];
    for (step, (command, outcome)) in history.iter().enumerate() {
        let args = to_args(command);
        let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        match outcome {
            Outcome::Acknowledged(reply) => {
                books.retain_mut(|book| answer(book, &args) == *reply);
                assert!(
                    !books.is_empty(),
                    "step {step}: no unreplicated book answers {command:?} with {:?}",
                    String::from_utf8_lossy(reply)
                );
            }
            Outcome::Unknown => {
                let mut applied = books.clone();
                for book in &mut applied {
                    answer(book, &args);
                }
                books.extend(applied);
                books.sort_by_key(|book| book.snapshot());
                books.dedup_by_key(|book| book.snapshot());
                assert!(
                    books.len() <= 64,
                    "step {step}: {} possible books; too many unknowns in a row",
                    books.len()
                );
            }
        }
    }
    books
}

/// Waits until `acknowledged` has grown by `more` (the group makes progress).
fn progress(group: &Group, acknowledged: &AtomicU64, more: u64, what: &str) {
    let target = acknowledged.load(Ordering::Relaxed) + more;
    let deadline = Instant::now() + Duration::from_secs(60);
    while acknowledged.load(Ordering::Relaxed) < target {
        if Instant::now() > deadline {
            for &port in &group.ports {
                let info = common::Client::try_connect(port)
                    .map(|mut client| client.request(&["INFO", "replication"]));
                println!(
                    "replica on {port}: {:?}",
                    info.map(|info| String::from_utf8_lossy(&info).into_owned())
                );
            }
            panic!("no progress {what}: {} acknowledged", acknowledged.load(Ordering::Relaxed));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn replicas_books_are_identical_after_leaders_are_killed_and_restarted() {
    let seed = std::env::var("USEC_SEED").map_or(11, |seed| seed.parse().expect("USEC_SEED is a number"));
    println!("seed {seed} (replay the order stream with USEC_SEED={seed})");
    let mut group = Group::start_with("orderbook-faults", 3, ORDERBOOK);
    let acknowledged = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let running = {
        let (ports, acknowledged, stop) = (group.ports.clone(), acknowledged.clone(), stop.clone());
        std::thread::spawn(move || client(ports, seed, acknowledged, stop))
    };
    progress(&group, &acknowledged, 200, "at the start");
    for round in 0..2 {
        let leader = group.leader();
        println!("round {round}: SIGKILL the leader, replica {leader}");
        group.replicas[leader].0.kill().unwrap();
        group.replicas[leader].0.wait().unwrap();
        progress(&group, &acknowledged, 200, "after the leader was killed");
        println!("round {round}: replica {leader} restarted (--rejoin)");
        group.restart(leader);
        progress(&group, &acknowledged, 200, "after the replica rejoined");
    }
    stop.store(true, Ordering::Relaxed);
    let history = running.join().unwrap();
    let unknown = history.iter().filter(|(_, outcome)| matches!(outcome, Outcome::Unknown)).count();
    println!(
        "{} commands, {} acknowledged, {unknown} of unknown outcome",
        history.len(),
        history.len() - unknown
    );

    // Every replica, once it applied all there is, holds the same book.
    let deadline = Instant::now() + Duration::from_secs(60);
    let digests = loop {
        let digests: Vec<Vec<u8>> = group.ports.iter().map(|&port| digest(port)).collect();
        if digests.iter().all(|digest| *digest == digests[0]) {
            break digests;
        }
        assert!(
            Instant::now() < deadline,
            "replicas disagree: {:?}",
            digests.iter().map(|d| String::from_utf8_lossy(d).into_owned()).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    // And that book is one an unreplicated engine fed the acknowledged commands holds.
    let books = reference_books(&history);
    let reference: Vec<Vec<u8>> =
        books.iter().map(|book| answer(&mut book.clone(), &[b"BOOK.DIGEST"])).collect();
    assert!(
        reference.contains(&digests[0]),
        "the replicas' book {:?} is none of the {} an unreplicated engine may hold",
        String::from_utf8_lossy(&digests[0]),
        reference.len()
    );
}
