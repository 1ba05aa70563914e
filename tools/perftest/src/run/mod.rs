//! One run, start to end, in perftest's order: open the device, meet the peer (version,
//! page size, MTU), print the info block, exchange the QP keys, connect, print the address
//! lines, then run the test's own sequence ([`flow`]).

pub mod bandwidth;
pub mod flow;
pub mod latency;
pub mod wait;

use std::io::Write as _;

use anyhow::Result;

use crate::clock::Clock;
use crate::control::handshake::{self, Agreement};
use crate::control::{Control, QpInfo};
use crate::report::{TestInfo, WAITING_BANNER};
use crate::resources::{address_line, Resources};
use crate::run_info::{pin, usable_cores, RunInfo};
use crate::settings::{Role, Settings};
use crate::test_kind::{Family, Verb};

/// What the loops work with.
pub struct Session<'a> {
    /// The run's settings.
    pub settings: &'a Settings,
    /// The verbs objects.
    pub resources: &'a mut Resources,
    /// The peer's QPs.
    pub peers: &'a [QpInfo],
    /// The control connection.
    pub control: &'a mut Control,
    /// Timestamps.
    pub clock: &'a Clock,
}

/// Runs the test `settings` describe.
pub fn run(settings: &Settings) -> Result<()> {
    let usable = usable_cores();
    if let Some(core) = settings.core {
        pin(core, &usable)?;
    }
    let clock = Clock::calibrate();
    let run_info = RunInfo::collect(usable.len(), settings.core, clock.describe());
    let mut resources = Resources::create(settings)?;
    let control = match &settings.role {
        Role::Server => {
            let listener = Control::listen(settings.port)?;
            println!("{WAITING_BANNER}");
            flush();
            Control::accept(&listener, settings.control_timeout)?
        }
        Role::Client { host } => {
            Control::connect(host, settings.port, settings.connect_timeout, settings.control_timeout)?
        }
    };
    run_connected(settings, &mut resources, control, &clock, run_info)
}

fn run_connected(
    settings: &Settings,
    resources: &mut Resources,
    mut control: Control,
    clock: &Clock,
    run_info: RunInfo,
) -> Result<()> {
    let test = settings.test;
    let introduction = resources.introduction(settings);
    let agreement = handshake::agree(&mut control, &introduction)?;
    let info = test_info(settings, resources, &agreement, run_info);
    println!("{}", info.render());
    let keys = resources.keys();
    let order = handshake::keys_before_connect(test, keys.len());
    let theirs = handshake::exchange_keys(&mut control, settings, &agreement, &keys, &order)?;
    // perftest's buffers hold the largest message, or at least a page.
    let peer_len = settings.max_size().max(u64::from(agreement.cycle_bytes));
    let peers = handshake::peer_qps(&theirs, &agreement, &introduction.endpoints[0], peer_len)?;
    resources.connect(&peers, settings)?;
    for qp in &resources.describe() {
        println!("{}", address_line(qp, test.verb()).render("local"));
    }
    let order = handshake::keys_after_connect(test, keys.len());
    handshake::exchange_keys(&mut control, settings, &agreement, &keys, &order)?;
    for qp in &peers {
        println!("{}", address_line(qp, test.verb()).render("remote"));
    }
    flush();
    let meeting = flow::Meeting { agreement: &agreement, barrier_key: keys[0], info: &info };
    flow::run(settings, resources, &peers, control, clock, &meeting)
}

fn test_info(settings: &Settings, resources: &Resources, agreement: &Agreement, run: RunInfo) -> TestInfo {
    let verb = settings.test.verb();
    let client = settings.role.is_client();
    let bandwidth = settings.test.family() == Family::Bandwidth;
    let mut title = settings.test.title(settings.atomic);
    if bandwidth {
        let mut extra = String::new();
        if settings.bidirectional {
            extra.push_str("Bidirectional ");
        }
        if settings.post_list > 1 {
            extra.push_str("Post List ");
        }
        title = title.replacen("BW ", &format!("{extra}BW "), 1);
    }
    TestInfo {
        title,
        device: resources.context.name().to_string(),
        qps: settings.qps,
        transport: resources.transport(),
        tx_depth: (client || settings.bidirectional).then_some(settings.tx_depth),
        post_list: (settings.post_list > 1).then_some(settings.post_list),
        rx_depth: (verb == Verb::Send && (!client || settings.bidirectional)).then_some(settings.rx_depth),
        cq_mod: bandwidth.then_some(settings.cq_mod),
        mtu_bytes: agreement.mtu.bytes(),
        link_type: resources.link_type(),
        gid_index: resources.gid_index,
        inline_or_reads: resources.inline_or_reads(verb),
        provider: resources.provider(),
        run,
    }
}

/// Flushes stdout, so that what is printed shows before a long wait.
pub fn flush() {
    let _ = std::io::stdout().flush();
}
