//! `usec-cluster start`: a local group from one command, with a status line every second
//! and a console, until Ctrl-C (or `quit`).

use std::sync::atomic::Ordering;
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::console::{self, Command};
use crate::events::{self, Event};
use crate::group::{GroupOptions, LocalGroup};

/// How long the replicas may take to start serving.
const START_TIMEOUT: Duration = Duration::from_secs(90);
/// How often the loop looks at the group between status lines.
const LOOK_PERIOD: Duration = Duration::from_millis(50);

/// Runs a local group until a stopping signal or `quit`.
pub fn run(options: &GroupOptions, status_period: Duration) -> Result<()> {
    let events = events::listen(true);
    let mut group = LocalGroup::start(options)?;
    println!(
        "usec-cluster: starting {} replicas of {} on soft:{} ({}), usec-kv {}",
        options.replicas,
        options.app.name(),
        group.plan().run,
        group.fabric_dir().display(),
        options.kv_bin.display()
    );
    let started = Instant::now();
    let mut announced = false;
    let mut last_leader = None;
    let mut next_status = started + status_period;
    loop {
        let now = Instant::now();
        match events.recv_timeout(next_status.saturating_duration_since(now).min(LOOK_PERIOD)) {
            Ok(Event::Signal(signal)) => {
                println!("usec-cluster: {signal}: stopping");
                break;
            }
            Ok(Event::Line(line)) => match console::parse(&line) {
                Ok(Some(Command::Quit)) => {
                    println!("usec-cluster: quit: stopping");
                    break;
                }
                Ok(Some(command)) => match execute(&mut group, command) {
                    Ok(said) => println!("usec-cluster: {said}"),
                    Err(error) => println!("usec-cluster: {error:#}"),
                },
                Ok(None) => {}
                Err(error) => println!("usec-cluster: {error}"),
            },
            Ok(Event::StdinClosed) | Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {}
        }
        for news in group.refresh()? {
            if !announced {
                bail!("{news} before the group was up");
            }
            println!("usec-cluster: {news}");
        }
        if !announced && group.all_ready() {
            announce(&group);
            announced = true;
        }
        if !announced && started.elapsed() > START_TIMEOUT {
            bail!("the replicas did not all start within {} s", START_TIMEOUT.as_secs());
        }
        let leader = group.leader();
        if let (true, Some(node)) = (announced && leader != last_leader, leader) {
            println!("usec-cluster: leader is replica {node} ({})", group.resp_addresses()[node]);
            last_leader = leader;
        }
        if Instant::now() >= next_status {
            println!("{}", group.status_line());
            next_status = (next_status + status_period).max(Instant::now());
        }
    }
    if let Some(door) = group.front_door() {
        let stats = door.stats();
        println!(
            "usec-cluster: the front door took {} clients; it sent {} requests again to a new leader and answered {} \
             -UNCERTAIN",
            stats.clients.load(Ordering::Relaxed),
            stats.resent.load(Ordering::Relaxed),
            stats.uncertain.load(Ordering::Relaxed)
        );
    }
    let summary = group.stop()?;
    println!("usec-cluster: stopped: {summary}");
    Ok(())
}

fn announce(group: &LocalGroup) {
    for (node, address) in group.resp_addresses().iter().enumerate() {
        let pid = group.pid(node).map_or("-".to_string(), |pid| pid.to_string());
        println!("usec-cluster: replica {node} serves RESP on {address} (pid {pid})");
    }
    let first = group.resp_addresses()[0];
    if let Some(door) = group.front_door() {
        let door = door.address();
        println!("usec-cluster: front door {door}: relays every client to the leader, across failovers");
        println!("usec-cluster: try `redis-cli -p {}`, or `redis-cli -c -p {}` (replicas redirect writes to the leader with -MOVED)", door.port(), first.port());
    } else {
        println!(
            "usec-cluster: try `redis-cli -c -p {}` (replicas redirect writes to the leader with -MOVED)",
            first.port()
        );
    }
    println!("usec-cluster: {}", console::HELP);
}

/// Carries out a console command: what was done.
pub fn execute(group: &mut LocalGroup, command: Command) -> Result<String> {
    Ok(match command {
        Command::Kill(target) => group.kill(group.resolve(target)?)?,
        Command::Pause(target) => group.pause(group.resolve(target)?)?,
        Command::Resume(target) => group.resume(group.resolve(target)?)?,
        Command::Restart(target) => group.restart(group.resolve(target)?)?,
        Command::Status => group.status_line(),
        Command::Help => console::HELP.to_string(),
        Command::Quit => unreachable!("the loop stops on quit"),
    })
}
