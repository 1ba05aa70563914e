//! Runs a tiny `paxos-decide` end to end, so a broken harness fails CI. Checks the shape
//! of the output only, never timing.
#![forbid(unsafe_code)]

mod support;

#[test]
fn a_tiny_run_reports_the_three_distributions() {
    let json = std::env::temp_dir().join(format!("usec-benches-paxos-{}.json", std::process::id()));
    let stdout = support::run(
        env!("CARGO_BIN_EXE_paxos-decide"),
        &["--instances", "100", "--warmup", "10", "--round-trips", "100"],
        &json,
    );
    let last = stdout.lines().last().expect("some output");
    assert!(last.starts_with("ratio "), "last line {last:?}");
    assert!(stdout.contains("soft (userspace RDMA"), "unlabelled soft figures:\n{stdout}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("the JSON report")).expect("valid JSON");
    std::fs::remove_file(&json).expect("removing the JSON report");
    assert_eq!(report["cas_round_trip"]["count"], 100);
    assert_eq!(report["uncontended"]["count"], 100, "one sample per instance");
    // Each of three proposers samples the instances it proposed, not those it skipped.
    let contended = report["contended"]["count"].as_u64().expect("a count");
    assert!((100..=300).contains(&contended), "{contended} contended samples");
    assert!(report["contended"]["p50_ns"].as_u64().is_some_and(|p50| p50 > 0));
    assert!(report["load_before"].is_array() || report["load_before"].is_null());
}
