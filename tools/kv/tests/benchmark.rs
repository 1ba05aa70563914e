//! redis-benchmark drives usec-kv (unreplicated, and a 3-replica group through its leader)
//! to completion without errors, with and without pipelining. Figures are printed, not
//! judged: a debug build on a shared machine measures nothing.

mod common;

use std::process::Command;

use common::{kv_unreplicated, require, Group};

fn benchmark(port: u16, pipeline: u32) {
    require("redis-benchmark");
    let output = Command::new("redis-benchmark")
        .args(["-p", &port.to_string(), "-t", "set,get", "-n", "20000", "-c", "50", "-q"])
        .args(["-P", &pipeline.to_string()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("port {port} -P {pipeline}: {stdout}{stderr}");
    assert!(output.status.success(), "redis-benchmark failed: {stdout}{stderr}");
    for line in stdout.split(['\r', '\n']) {
        assert!(!line.contains("ERR") && !line.contains("rror"), "redis-benchmark saw an error: {line}");
    }
    assert!(stdout.contains("SET: ") && stdout.contains("GET: "), "{stdout}");
}

#[test]
fn redis_benchmark_completes_unreplicated() {
    let (_kv, port) = kv_unreplicated();
    benchmark(port, 1);
    benchmark(port, 16);
}

#[test]
fn redis_benchmark_completes_on_three_replicas() {
    let group = Group::start("bench", 3);
    let leader = group.ports[group.leader()];
    benchmark(leader, 1);
    benchmark(leader, 16);
}
