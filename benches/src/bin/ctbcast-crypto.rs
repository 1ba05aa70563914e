//! `ctbcast-crypto`: what CTBcast's slow path costs in CPU, piece by piece, per message —
//! Ed25519 sign and `verify_strict`, BLAKE3 of messages of several sizes, a ring entry's
//! encode and checked decode — and the receiver's whole CPU share of each path through the
//! real sans-IO `Receiver`, its registers answered at once (no network, no memory nodes:
//! what the protocol adds on top of them).
//!
//! Every sample is one operation timed on its own with `Instant` (two clock reads included;
//! the report gives their cost). Single thread, optionally pinned.
#![forbid(unsafe_code)]

use std::hint::black_box;
use std::time::Instant;

use anyhow::Result;
use clap::Parser;
use ed25519_dalek::SigningKey;
use usec_benches::latency::{LatencySummary, Recorder};
use usec_benches::pinning::{pin_current_thread, usable_cores};
use usec_benches::run_info::{load_average, RunInfo};
use usec_qp_pool::NodeId;
use usec_replication::bft::ctbcast::signature::{message_hash, sign, verify};
use usec_replication::bft::ctbcast::{
    Action, Body, Broadcaster, CtbConfig, Entry, Event, Keyring, Receiver, RegisterReadResult,
};

/// Per-message CPU costs of CTBcast's fast and slow paths.
#[derive(Debug, Parser)]
#[command(version)]
struct Options {
    /// Samples per measurement.
    #[arg(long, default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(1..))]
    iterations: u64,
    /// Unrecorded runs first.
    #[arg(long, default_value_t = 500)]
    warmup: u64,
    /// Core to pin to (default: unpinned).
    #[arg(long)]
    core: Option<usize>,
}

fn measure(options: &Options, mut operation: impl FnMut(u64)) -> LatencySummary {
    let mut recorder = Recorder::new();
    for iteration in 0..options.warmup {
        operation(iteration);
    }
    for iteration in 0..options.iterations {
        let start = Instant::now();
        operation(options.warmup + iteration);
        recorder.record_ns(start.elapsed().as_nanos() as u64);
    }
    recorder.summary()
}

/// Like [`measure`], for operations that need unmeasured setup: `operation` times its own
/// part and returns it in nanoseconds.
fn measure_part(options: &Options, mut operation: impl FnMut(u64) -> u64) -> LatencySummary {
    let mut recorder = Recorder::new();
    for iteration in 0..options.warmup {
        operation(iteration);
    }
    for iteration in 0..options.iterations {
        recorder.record_ns(operation(options.warmup + iteration));
    }
    recorder.summary()
}

fn node(id: u16) -> NodeId {
    NodeId::new(id).expect("small id")
}

/// A broadcaster (node 0) and receiver 1 of a three-process stream, and receiver 1's
/// entries for `count` messages (message, signature, and receiver 2's echo of each).
struct Stream {
    receiver: Receiver,
    entries: Vec<(Vec<u8>, Vec<u8>, Vec<u8>)>,
}

fn stream(count: u64, message: &[u8], verify_ahead: bool) -> Result<Stream> {
    let key = SigningKey::from_bytes(&[1; 32]);
    let config = CtbConfig { tail: 128, fast_path_timeout_ns: 1_000, verify_ahead, ..CtbConfig::default() };
    let keys = Keyring::new([(node(0), key.verifying_key())]);
    let mut broadcaster = Broadcaster::new(config.clone(), key)?;
    let mut entries = Vec::new();
    for index in 0..count {
        broadcaster.broadcast(message)?;
        broadcaster.tick();
        let to_1: Vec<Vec<u8>> = std::iter::from_fn(|| broadcaster.poll_action())
            .filter_map(|action| match action {
                Action::Send { to, bytes } if to == node(1) => Some(bytes),
                _ => None,
            })
            .collect();
        let echo = Entry { index, broadcaster: 0, sender: 2, body: Body::EchoCopy(message) }.encode();
        entries.push((to_1[0].clone(), to_1[1].clone(), echo));
    }
    Ok(Stream { receiver: Receiver::new(config, node(1), keys)?, entries })
}

fn main() -> Result<()> {
    let options = Options::parse();
    let run = RunInfo::collect(usable_cores().len());
    run.warn_if_debug();
    let pinning = pin_current_thread(options.core);
    let load_before = load_average();

    let key = SigningKey::from_bytes(&[7; 32]);
    let public = key.verifying_key();
    let b = node(0);
    let hash = message_hash(b"a prepare message of some sixty-four bytes, padded to length...");
    let signature = sign(&key, b, 3, &hash);
    let mut rows: Vec<(String, LatencySummary)> = Vec::new();

    rows.push((
        "ed25519 sign (statement 50 B)".into(),
        measure(&options, |i| {
            black_box(sign(&key, b, i, &hash));
        }),
    ));
    rows.push((
        "ed25519 verify_strict".into(),
        measure(&options, |_| {
            assert!(verify(&public, b, 3, black_box(&hash), &signature));
        }),
    ));
    for size in [64usize, 1 << 10, 8 << 10] {
        let message = vec![0xA5u8; size];
        rows.push((
            format!("blake3 of a {size} B message"),
            measure(&options, |_| {
                black_box(message_hash(black_box(&message)));
            }),
        ));
    }
    let message = vec![0x5Au8; 64];
    let entry = Entry { index: 9, broadcaster: 0, sender: 0, body: Body::Message(&message) };
    let mut buffer = Vec::with_capacity(128);
    rows.push((
        "ring entry encode + decode (64 B, xxh3)".into(),
        measure(&options, |_| {
            buffer.clear();
            entry.encode_into(&mut buffer);
            black_box(Entry::decode(&buffer).expect("valid"));
        }),
    ));

    // The receiver's whole fast path: message in, echo in, delivered.
    let samples = options.warmup + options.iterations;
    let mut fast = stream(samples, &message, false)?;
    rows.push((
        "receiver fast path (message + echo -> delivered)".into(),
        measure(&options, |i| {
            let (message_entry, _, echo) = &fast.entries[i as usize];
            fast.receiver.handle_entry(0, node(0), message_entry).expect("a good message");
            fast.receiver.handle_entry(0, node(2), echo).expect("a good echo");
            while fast.receiver.poll_action().is_some() {}
            assert!(matches!(fast.receiver.poll_event(), Some(Event::Delivered { .. })));
        }),
    ));

    // The receiver's slow path from its timeout to delivery, signature in hand
    // (sign-ahead), the register write and the other receiver's read completing at once;
    // then the same with the signature verified ahead, while idle.
    for verify_ahead in [false, true] {
        let mut slow = stream(samples, &message, verify_ahead)?;
        let mut now = 0;
        let name = if verify_ahead {
            "receiver slow path, verified ahead (timeout -> write, read -> delivered)"
        } else {
            "receiver slow path (timeout -> verify, write, read -> delivered)"
        };
        rows.push((
            name.into(),
            measure_part(&options, |i| {
                let (message_entry, signature_entry, _) = &slow.entries[i as usize];
                now += 10_000;
                slow.receiver.handle_entry(now, node(0), message_entry).expect("a good message");
                slow.receiver.handle_entry(now, node(0), signature_entry).expect("a good signature");
                while slow.receiver.poll_action().is_some() {}
                slow.receiver.tick(now); // idle: verifies ahead if configured
                let start = Instant::now();
                slow.receiver.tick(now + 1_000);
                let Some(Action::RegisterWrite { index, .. }) = slow.receiver.poll_action() else {
                    panic!("no write")
                };
                slow.receiver.handle_register_written(index);
                let Some(Action::RegisterRead { owner, .. }) = slow.receiver.poll_action() else {
                    panic!("no read")
                };
                slow.receiver.handle_register_read(index, owner, RegisterReadResult::Value(None));
                assert!(matches!(slow.receiver.poll_event(), Some(Event::Delivered { .. })));
                start.elapsed().as_nanos() as u64
            }),
        ));
    }

    println!(
        "ctbcast-crypto: per-message CPU of CTBcast's pieces ({} samples each, {} warm-up)",
        options.iterations, options.warmup
    );
    println!(
        "run: {}; pinned: {pinning}; load before: {load_before:?}, after: {:?}",
        run.provenance(),
        load_average()
    );
    println!("timer overhead: ~{} ns per sample (two clock reads)", run.timer_overhead_ns);
    for (name, summary) in &rows {
        println!(
            "{name:<74} p50 {:>7} ns  p99 {:>7} ns  p99.9 {:>7} ns",
            summary.p50_ns, summary.p99_ns, summary.p99_9_ns
        );
    }
    Ok(())
}
