//! Mu replicas on three hosts over RoCE: the crash scenario of the soft process test
//! ([`common::crash_scenario`]) with one `usec-mu-node` per host of `tools/rxe-vm/run
//! --hosts 3` — host `i` a network namespace with its own address `10.78.0.<10+i>` and
//! its own rxe device, whose RoCEv2 GID (the index given in `RXE_VM_HOST<i>`) is that
//! address, so the replicas' WRITEs and READs cross a bridge between distinct hosts.
//!
//! The second test runs the three replicas on membership views and replaces one:
//! [`common::views_replacement_scenario`].
//!
//! It runs only there: `tools/test-all` runs it with `--ignored` inside the VM; anywhere
//! else it is reported ignored, and run anyway it fails saying why.
//!
//! The VM's CPU is emulated (tens of times slower than the host's) and rxe's permission
//! changes are system calls: the replicas get slower heartbeats, longer suspicion, and a
//! leader that writes its commit index and reads its followers' status far less often
//! than on the soft provider; the test's waits are generous.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::Duration;

use common::group::{Launcher, Limits};
use common::{crash_scenario, views_replacement_scenario};

/// One host of the VM, from `RXE_VM_HOST<i>` (`device,address,gid-index`).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Host {
    device: String,
    addr: Ipv4Addr,
    gid_index: u8,
}

impl Host {
    fn parse(text: &str) -> Option<Host> {
        let mut fields = text.split(',');
        let (Some(device), Some(addr), Some(gid_index), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return None;
        };
        Some(Host {
            device: device.to_string(),
            addr: addr.parse().ok()?,
            gid_index: gid_index.parse().ok()?,
        })
    }
}

fn rxe_launcher() -> Launcher {
    let count: usize = std::env::var("RXE_VM_HOSTS")
        .expect("runs inside `tools/rxe-vm/run --hosts 3` (RXE_VM_HOSTS is unset): see tools/test-all")
        .parse()
        .expect("RXE_VM_HOSTS is a count");
    assert!(count >= 3, "three hosts needed, the VM has {count}");
    let on_host = std::env::var("RXE_VM_ON_HOST").expect("RXE_VM_ON_HOST is set with RXE_VM_HOSTS");
    let hosts: Vec<Host> = (0..3)
        .map(|id| {
            let name = format!("RXE_VM_HOST{id}");
            let text = std::env::var(&name).unwrap_or_else(|_| panic!("{name} is unset"));
            Host::parse(&text).unwrap_or_else(|| panic!("{name}={text:?} is not device,address,gid-index"))
        })
        .collect();
    let listen_hosts = hosts.clone();
    Launcher {
        label: "rxe",
        command: Box::new(move |id| {
            let host = &hosts[usize::from(id)];
            let mut command = Command::new(&on_host);
            command.arg(id.to_string()).arg(env!("CARGO_BIN_EXE_usec-mu-node")).args([
                "--device",
                &host.device,
                "--gid-index",
                &host.gid_index.to_string(),
            ]);
            command
        }),
        listen: Box::new(move |id| SocketAddr::from((listen_hosts[usize::from(id)].addr, 0))),
        args: [
            "--capacity",
            "64",
            "--clock",
            "os",
            "--pacing",
            "napping",
            "--nap-us",
            "200",
            "--heartbeat-period-us",
            "5000",
            "--heartbeat-timeout-us",
            "50000",
            "--suspect-after",
            "8",
            "--permission-retry-us",
            "50000",
            "--inbox-us",
            "200",
            "--idle-commit-us",
            "1000",
            "--status-read-us",
            "20000",
            "--client-pause-us",
            "2000",
            "--client-retry-us",
            "5000",
            "--bootstrap-deadline-s",
            "120",
        ]
        .map(String::from)
        .to_vec(),
        limits: Limits {
            answer: Duration::from_secs(60),
            ready: Duration::from_secs(150),
            leader: Duration::from_secs(60),
            progress: Duration::from_secs(60),
            step_down: Duration::from_secs(60),
            catch_up: Duration::from_secs(120),
            converge: Duration::from_secs(60),
            poll: Duration::from_millis(20),
        },
    }
}

#[test]
#[ignore = "runs inside `tools/rxe-vm/run --hosts 3` (tools/test-all's VM step passes --ignored)"]
fn three_hosts_a_stopped_leader_steps_down_a_crashed_follower_rejoins_a_killed_leader_is_replaced() {
    crash_scenario(rxe_launcher());
}

#[test]
#[ignore = "runs inside `tools/rxe-vm/run --hosts 3` (tools/test-all's VM step passes --ignored)"]
fn three_hosts_on_views_a_replaced_follower_votes_again_and_outlives_the_leader() {
    let mut launcher = rxe_launcher();
    // The emulated CPU: a lease and acceptor scans of tens of milliseconds, in step with
    // the slow heartbeats above.
    launcher.args.extend(["--views", "--lease-us", "50000", "--view-scan-us", "20000"].map(String::from));
    views_replacement_scenario(launcher);
}

#[test]
fn host_descriptions_parse() {
    assert_eq!(
        Host::parse("rxe_h1,10.78.0.11,1"),
        Some(Host { device: "rxe_h1".into(), addr: Ipv4Addr::new(10, 78, 0, 11), gid_index: 1 })
    );
    assert_eq!(Host::parse("rxe_h1,10.78.0.11"), None);
    assert_eq!(Host::parse("rxe_h1,10.78.0.x,1"), None);
    assert_eq!(Host::parse("rxe_h1,10.78.0.11,1,2"), None);
}
