//! Runs a tiny `ctbcast-latency` end to end, so a broken harness fails CI. Checks the
//! shape of the output only, never timing.
#![forbid(unsafe_code)]

mod support;

#[test]
fn a_tiny_run_reports_both_paths_the_split_and_mu() {
    let json = std::env::temp_dir().join(format!("usec-benches-ctbcast-{}.json", std::process::id()));
    let stdout = support::run(
        env!("CARGO_BIN_EXE_ctbcast-latency"),
        &["--iterations", "50", "--slow-iterations", "10", "--warmup", "5"],
        &json,
    );
    let last = stdout.lines().last().expect("some output");
    assert!(last.starts_with("ratio "), "last line {last:?}");
    assert!(stdout.contains("soft provider"), "unlabelled soft figures:\n{stdout}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("the JSON report")).expect("valid JSON");
    std::fs::remove_file(&json).expect("removing the JSON report");
    for fast in ["fast_first_delivery", "fast_all_delivered", "mu_propose_to_commit"] {
        assert_eq!(report[fast]["count"], 50, "{fast}");
    }
    assert_eq!(report["slow_delivery"]["count"], 10);
    // One register write and one read (of the silent participant's register) per slow path.
    assert_eq!(report["slow_register_write"]["count"], 10);
    assert_eq!(report["slow_register_read"]["count"], 10);
    assert!(report["slow_delivery"]["p50_ns"].as_u64() > report["fast_all_delivered"]["p50_ns"].as_u64());
}
