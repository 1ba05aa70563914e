//! `check-history`: checks saved histories (JSON-line event logs, one or more files that
//! merge into one history) for linearizability.
//!
//! ```text
//! check-history [--model kv|register] [--steps N] [--timeout-s S] FILE...
//! ```
//!
//! Prints the verdict (a counterexample when not linearizable); exits 0 when
//! linearizable, 1 when not, 2 when unknown, 3 on bad input.
#![forbid(unsafe_code)]

use std::fs::File;
use std::io::BufReader;
use std::process::ExitCode;
use std::time::Duration;

use serde::de::DeserializeOwned;
use usec_check::linearizability::{check, Options, Verdict};
use usec_check::models::{Kv, Register};
use usec_check::{history, Event, Model};

/// A model's history.
type History<M> = Vec<usec_check::Operation<<M as Model>::Input, <M as Model>::Output>>;

fn load<M: Model>(paths: &[String]) -> Result<History<M>, String>
where
    M::Input: DeserializeOwned,
    M::Output: DeserializeOwned,
{
    let mut events: Vec<Event<M::Input, M::Output>> = Vec::new();
    for path in paths {
        let file = File::open(path).map_err(|error| format!("{path}: {error}"))?;
        events
            .extend(history::read_events(BufReader::new(file)).map_err(|error| format!("{path}: {error}"))?);
    }
    history::operations(events).map_err(|error| error.to_string())
}

fn run<M>(model: &M, paths: &[String], options: &Options) -> Result<Verdict, String>
where
    M: Model + Sync,
    M::Input: DeserializeOwned + Sync,
    M::Output: DeserializeOwned + Sync,
    M::Key: Send + Sync,
{
    let operations = load::<M>(paths)?;
    let unanswered = operations.iter().filter(|operation| operation.output().is_none()).count();
    println!("{} operations ({unanswered} never answered) from {} file(s)", operations.len(), paths.len());
    Ok(check(model, &operations, options))
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (mut model, mut options, mut paths) = (String::from("kv"), Options::default(), Vec::new());
    let usage = "usage: check-history [--model kv|register] [--steps N] [--timeout-s S] FILE...";
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        let parsed = match arg.as_str() {
            "--model" => value("--model").map(|value| model = value),
            "--steps" => value("--steps")
                .and_then(|value| value.parse().map_err(|_| format!("--steps {value}: not a number")))
                .map(|steps| options.max_steps_per_key = steps),
            "--timeout-s" => value("--timeout-s")
                .and_then(|value| value.parse().map_err(|_| format!("--timeout-s {value}: not a number")))
                .map(|seconds| options.timeout = Some(Duration::from_secs(seconds))),
            "-h" | "--help" => Err(usage.to_string()),
            _ => {
                paths.push(arg);
                Ok(())
            }
        };
        if let Err(error) = parsed {
            eprintln!("{error}");
            return ExitCode::from(3);
        }
    }
    if paths.is_empty() {
        eprintln!("{usage}");
        return ExitCode::from(3);
    }
    let verdict = match model.as_str() {
        "kv" => run(&Kv, &paths, &options),
        "register" => run(&Register, &paths, &options),
        other => Err(format!("unknown model {other:?} (kv, register)")),
    };
    match verdict {
        Ok(verdict) => {
            println!("{verdict}");
            ExitCode::from(match verdict {
                Verdict::Linearizable => 0,
                Verdict::NotLinearizable(_) => 1,
                Verdict::Unknown { .. } => 2,
            })
        }
        Err(error) => {
            eprintln!("{error}");
            ExitCode::from(3)
        }
    }
}
