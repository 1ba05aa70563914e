//! The order book replicated by Mu on three simulated replicas, with a leader crashed in
//! the middle of a command and replicas paused and resumed: every replica ends with the
//! same book (equal snapshots), and — for one client whose commands are decided in the
//! order it sends them — the same book and the same responses as an unreplicated one.

use usec_replication::apps::orderbook::{Command, LoadConfig, LoadGenerator, OrderBook, Response};
use usec_replication::cft::MuConfig;
use usec_replication::driver::sim::SimGroup;
use usec_replication::driver::{DetectorConfig, Ticket};
use usec_replication::log::CommandId;
use usec_replication::StateMachine;

const MS: u64 = 1_000_000;

fn seed(test: &str, default: u64) -> u64 {
    let seed =
        std::env::var("USEC_SEED").map_or(default, |seed| seed.parse().expect("USEC_SEED is a number"));
    println!("{test}: seed {seed} (replay with USEC_SEED={seed})");
    seed
}

fn group(name: &str, seed: u64) -> SimGroup<OrderBook> {
    let config = MuConfig {
        capacity: 64,
        pipeline: 8,
        slot_bytes: 512,
        snapshot_bytes: 4 << 20,
        ..MuConfig::default()
    };
    let name = format!("orderbook-{name}-{}", std::process::id());
    SimGroup::new(&name, seed, 3, &config, DetectorConfig::default(), &[], OrderBook::new).unwrap()
}

/// The replica that leads and runs, once there is exactly one.
fn leader(group: &mut SimGroup<OrderBook>) -> usize {
    let running = |group: &SimGroup<OrderBook>| -> Vec<usize> {
        group.leaders().into_iter().filter(|&index| !group.members[index].paused).collect()
    };
    assert!(group.run_until(20 * MS, |group| running(group).len() == 1), "no single leader");
    running(group)[0]
}

/// Proposes `command` as `id` through whoever leads until it is decided; its response.
fn decide(group: &mut SimGroup<OrderBook>, id: CommandId, command: &[u8]) -> Vec<u8> {
    for _ in 0..50 {
        let via = leader(group);
        let ticket = group.driver(via).unwrap().client(id.client).submit_as(id, command).unwrap();
        if let Some(Ok(response)) = wait(group, &ticket) {
            return response;
        }
    }
    panic!("{id:?} never decided");
}

fn wait(
    group: &mut SimGroup<OrderBook>,
    ticket: &Ticket,
) -> Option<Result<Vec<u8>, usec_replication::driver::ClientError>> {
    let mut outcome = None;
    group.run_until(20 * MS, |_| {
        outcome = outcome.take().or_else(|| ticket.try_take());
        outcome.is_some()
    });
    outcome
}

fn live_snapshots(group: &SimGroup<OrderBook>) -> Vec<(usize, Vec<u8>)> {
    (0..group.members.len())
        .filter_map(|index| {
            group.driver(index).map(|driver| (index, driver.replica().state_machine().snapshot()))
        })
        .collect()
}

#[test]
fn one_client_gets_what_an_unreplicated_book_answers_through_a_crash() {
    let seed = seed("one_client_gets_what_an_unreplicated_book_answers", 1);
    let mut group = group("one-client", seed);
    let mut load = LoadGenerator::new(seed, LoadConfig { symbols: 3, accounts: 12, ..LoadConfig::default() });
    let mut reference = OrderBook::new();
    let commands = 1_000;
    let mut paused = None;
    for sequence in 1..=commands {
        let command = load.next_command();
        let bytes = command.to_bytes();
        let id = CommandId { client: 1, sequence };
        if sequence == 100 {
            // A follower stops; the others go on without it, far past what the log holds.
            let leader = leader(&mut group);
            let follower = (0..3).find(|&index| index != leader).unwrap();
            group.pause(follower);
            paused = Some(follower);
        }
        if sequence == 400 {
            group.resume(paused.take().unwrap());
        }
        if sequence == 600 {
            // The leader crashes with this command in flight: it may or may not have
            // been decided; the client retries it as the same id through the next leader.
            let old = leader(&mut group);
            let _ticket = group.driver(old).unwrap().client(1).submit_as(id, &bytes).unwrap();
            group.run_for(3_000);
            group.crash(old);
        }
        let response = decide(&mut group, id, &bytes);
        let mut expected = Vec::new();
        reference.apply(&bytes, &mut expected);
        assert_eq!(
            Response::decode(&response),
            Response::decode(&expected),
            "command {sequence} ({command:?}) answered differently"
        );
        load.observe(&command, &Response::decode(&response).unwrap());
    }
    group.run_for(2 * MS);
    let snapshots = live_snapshots(&group);
    let restored: u64 = (0..3)
        .filter_map(|index| group.driver(index))
        .map(|driver| driver.replica().stats().snapshots_restored)
        .sum();
    println!(
        "{} ms of virtual time; {} open orders; {} bytes of snapshot; {restored} snapshots restored",
        group.fabric.now_ns() / MS,
        reference.open_orders(),
        snapshots[0].1.len()
    );
    assert_eq!(snapshots.len(), 2);
    assert!(restored > 0, "the paused follower came back through a snapshot of the book");
    for (index, snapshot) in &snapshots {
        assert!(
            *snapshot == reference.snapshot(),
            "replica {index}'s book differs from the unreplicated one"
        );
    }
    assert!(reference.open_orders() > 0 && load.open_orders() > 0, "a book with something in it");
}

/// A client of the concurrent test: its own order stream, one command at a time.
struct Client {
    id: u64,
    load: LoadGenerator,
    sequence: u64,
    out: Option<(Command, Vec<u8>, Option<Ticket>)>,
    retry_at_ns: u64,
}

#[test]
fn concurrent_clients_leave_identical_books_through_faults() {
    let seed = seed("concurrent_clients_leave_identical_books", 2);
    let mut group = group("concurrent", seed);
    let config = LoadConfig { symbols: 2, accounts: 16, ..LoadConfig::default() };
    let mut clients: Vec<Client> = (1..=4)
        .map(|id| Client {
            id,
            load: LoadGenerator::new(seed * 100 + id, config.clone()),
            sequence: 0,
            out: None,
            retry_at_ns: 0,
        })
        .collect();
    let (mut decided, mut crashed, mut paused) = (0u64, false, false);
    let target = 2_000;
    let deadline = group.fabric.now_ns() + 2_000 * MS;
    while decided < target {
        assert!(group.fabric.now_ns() < deadline, "stuck after {decided} commands");
        if decided >= target / 3 && !crashed {
            let old = leader(&mut group);
            group.crash(old);
            crashed = true;
        }
        if decided >= 2 * target / 3 && !paused {
            let follower =
                (0..3).find(|&index| group.driver(index).is_some() && index != leader(&mut group)).unwrap();
            group.pause(follower);
            group.run_for(MS / 2);
            group.resume(follower);
            paused = true;
        }
        let now = group.fabric.now_ns();
        let running: Vec<usize> =
            group.leaders().into_iter().filter(|&index| !group.members[index].paused).collect();
        for client in &mut clients {
            if client.out.is_none() {
                client.sequence += 1;
                let command = client.load.next_command();
                let bytes = command.to_bytes();
                client.out = Some((command, bytes, None));
            }
            let (command, bytes, ticket) = client.out.as_mut().unwrap();
            match ticket.as_ref().and_then(Ticket::try_take) {
                Some(Ok(response)) => {
                    client.load.observe(command, &Response::decode(&response).unwrap());
                    client.out = None;
                    decided += 1;
                    continue;
                }
                Some(Err(_)) => *ticket = None,
                None => {}
            }
            // (Re)submit as the same id to the leader when none is out or it is stale.
            let stale = now >= client.retry_at_ns;
            if let (Some(&via), true) = (running.first(), ticket.is_none() || stale) {
                let id = CommandId { client: client.id, sequence: client.sequence };
                *ticket = group.driver(via).unwrap().client(client.id).submit_as(id, bytes).ok();
                client.retry_at_ns = now + 5 * MS;
            }
        }
        group.step();
    }
    group.run_for(2 * MS);
    let snapshots = live_snapshots(&group);
    assert_eq!(snapshots.len(), 2);
    assert!(
        snapshots[0].1 == snapshots[1].1,
        "replicas {} and {} hold different books",
        snapshots[0].0,
        snapshots[1].0
    );
    let mut book = OrderBook::new();
    book.restore(&snapshots[0].1).unwrap();
    assert!(book.open_orders() > 0, "a book with something in it");
}
