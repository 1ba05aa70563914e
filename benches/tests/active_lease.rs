//! Runs a tiny `active-lease` end to end, so a broken harness fails CI. Checks the shape
//! of the output only, never timing.
#![forbid(unsafe_code)]

mod support;

#[test]
fn a_tiny_run_reports_four_scenarios_the_cores_and_the_load() {
    let json = std::env::temp_dir().join(format!("usec-benches-active-lease-{}.json", std::process::id()));
    let stdout = support::run(
        env!("CARGO_BIN_EXE_active-lease"),
        &["--samples", "20", "--batch", "100", "--blocks", "2"],
        &json,
    );
    for expected in ["1 used: core", "load average (1, 5, 15 min) before", "is_active alone, (b) − (a): p50"]
    {
        assert!(stdout.contains(expected), "no {expected:?} in:\n{stdout}");
    }
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("the JSON report")).expect("valid JSON");
    std::fs::remove_file(&json).expect("removing the JSON report");
    let scenarios = report["scenarios"].as_array().expect("a list of scenarios");
    assert_eq!(scenarios.len(), 4, "{report}");
    for scenario in scenarios {
        assert_eq!(scenario["batches"]["count"], 20, "{scenario}");
        assert!(scenario["p50_per_call_ns"].as_f64().is_some_and(|cost| cost > 0.0), "{scenario}");
    }
    assert!(report["inactive_answers"].as_u64().is_some_and(|count| count <= 2 * 20 * 100), "{report}");
}
