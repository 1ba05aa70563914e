//! What the benchmarks' end-to-end tests share.

use std::path::Path;
use std::process::Command;

/// Runs benchmark `binary` with `args` and `--json json`; its standard output, once it
/// exited successfully (the test fails with both outputs otherwise).
pub fn run(binary: &str, args: &[&str], json: &Path) -> String {
    let output =
        Command::new(binary).args(args).arg("--json").arg(json).output().expect("the benchmark starts");
    let stdout = String::from_utf8(output.stdout).expect("UTF-8 output");
    assert!(
        output.status.success(),
        "{binary} failed ({}):\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}
