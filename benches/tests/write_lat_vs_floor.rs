//! Runs a tiny `write-lat-vs-floor` end to end, so a broken harness fails CI. Checks the
//! shape of the output only, never timing.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::Command;

fn run_tiny(extra: &[&str], json: &PathBuf) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_write-lat-vs-floor"))
        .args(["--iterations", "200", "--warmup", "20", "--block-warmup", "20", "--json"])
        .arg(json)
        .args(extra)
        .output()
        .expect("the benchmark starts");
    let stdout = String::from_utf8(output.stdout).expect("UTF-8 output");
    assert!(
        output.status.success(),
        "benchmark failed ({}):\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn check(extra: &[&str]) {
    let json =
        std::env::temp_dir().join(format!("usec-benches-test-{}-{}.json", std::process::id(), extra.len()));
    let stdout = run_tiny(extra, &json);
    let last = stdout.lines().last().expect("some output");
    let ratio: f64 = last
        .strip_prefix("ratio ")
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("last line {last:?} is not `ratio <x>`"));
    assert!(ratio.is_finite() && ratio > 0.0, "ratio {ratio}");
    assert!(stdout.contains("soft provider (shared memory)"), "unlabelled soft figures:\n{stdout}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("the JSON report")).expect("valid JSON");
    std::fs::remove_file(&json).expect("removing the JSON report");
    for side in ["baseline", "candidate"] {
        let latency = &report[side]["latency"];
        assert_eq!(latency["count"], 200, "{side}: {latency}");
        assert!(latency["p50_ns"].as_u64().is_some_and(|p50| p50 > 0), "{side}: {latency}");
    }
    assert_eq!(report["candidate"]["label"], "soft provider (shared memory)");
    assert!(report["ratio"].as_f64().is_some_and(|json_ratio| (json_ratio - ratio).abs() < 0.006));
}

#[test]
fn tiny_runs_report_both_medians_and_the_ratio_last() {
    // One test, run in sequence: each run busy-polls two cores.
    check(&[]);
    check(&["--no-inline", "--size", "128"]);
}
