//! Runs a tiny `kv-read-latency` end to end, so a broken harness fails CI. Checks the
//! shape of the output and of the JSON only, never timing — except that a local read and
//! a read through the log were both timed, every sample of each (the benchmark itself
//! refuses to report when a read went the other way). The failure detectors are patient
//! (a heartbeat READ every millisecond): a test machine busy with other builds starves the
//! followers of their core.
#![forbid(unsafe_code)]

mod support;

#[test]
fn a_tiny_run_times_local_and_logged_gets_and_says_which_cores() {
    let json = std::env::temp_dir().join(format!("usec-benches-kv-read-latency-{}.json", std::process::id()));
    let args = ["--iterations", "300", "--warmup", "50", "--blocks", "2", "--heartbeat-period-ns", "1000000"];
    let stdout = support::run(env!("CARGO_BIN_EXE_kv-read-latency"), &args, &json);
    for expected in [
        "soft provider (shared memory)",
        "cores used: leader",
        "load average before",
        "GET served locally (lease):  p50",
        "GET through the log:         p50",
    ] {
        assert!(stdout.contains(expected), "no {expected:?} in:\n{stdout}");
    }
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("the JSON report")).expect("valid JSON");
    std::fs::remove_file(&json).expect("removing the JSON report");
    for side in ["local", "log"] {
        assert_eq!(report[side]["count"], 300, "{report}");
        assert!(report[side]["p50_ns"].as_u64().is_some_and(|p50| p50 > 0), "{report}");
    }
    assert!(report["ratio"].as_f64().is_some_and(|ratio| ratio.is_finite() && ratio > 0.0), "{report}");
    assert!(report["local_refused"].as_u64().is_some(), "{report}");
    assert_eq!(report["lease_ns"], 1_000_000, "{report}");
}
