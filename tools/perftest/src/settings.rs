//! perftest's rules applied to a command line: ranges, per-test defaults and the values
//! derived from others (`parser` and `force_dependecies` in perftest's
//! `src/perftest_parameters.c`). Pure: no device is opened here; what depends on the
//! device (inline limits, outstanding reads) is settled in [`crate::resources`].

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, ensure, Result};
use serde::{Deserialize, Serialize};

use crate::cli::Args;
use crate::test_kind::{AtomicType, Family, TestKind, Verb};

/// The largest size of `-a` (perftest's `MAX_SIZE`, 2^23).
pub const MAX_SIZE: u64 = 1 << 23;
/// perftest's `MIN_ITER` and `MAX_ITER`.
const ITERATIONS_RANGE: (u64, u64) = (5, 100_000_000);
/// perftest's `MIN_TX` and `MAX_TX`.
const TX_DEPTH_RANGE: (u32, u32) = (1, 15_000);
/// perftest's `MIN_RX` and `MAX_RX`.
const RX_DEPTH_RANGE: (u32, u32) = (1, 16_384);
/// perftest's `MIN_CQ_MOD` and `MAX_CQ_MOD`.
const CQ_MOD_RANGE: (u32, u32) = (1, 1024);
/// perftest's `MIN_QP_NUM` and `MAX_QP_NUM`.
const QPS_RANGE: (u32, u32) = (1, 16_384);
/// perftest's `MAX_GID_IX`.
const MAX_GID_INDEX: u32 = 64;
/// perftest's `MAX_INLINE`.
const MAX_INLINE: u32 = 912;
/// Seconds between the rows of `--run_infinitely` without `-D` (perftest's `DEF_DURATION`).
const DEFAULT_INTERVAL_S: u64 = 5;
/// perftest's `DEF_QP_TIME`.
const DEFAULT_QP_TIMEOUT: u8 = 14;
/// perftest's transport retry count (`ctx_modify_qp_to_rts`).
const DEFAULT_RETRY_COUNT: u8 = 7;
/// Above this size perftest asks for a completion per message unless `-Q` says otherwise
/// (`MSG_SIZE_CQ_MOD_LIMIT`).
const CQ_MOD_SIZE_LIMIT: u64 = 8192;
/// Beyond this many bandwidth iterations perftest skips the peak computation.
const PEAK_ITERATIONS_LIMIT: u64 = 20_000;

/// Which side of the test this process is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// Listens for the client.
    Server,
    /// Connects to the server at `host`.
    Client {
        /// Host name or address of the server.
        host: String,
    },
}

impl Role {
    /// `server` or `client`.
    pub fn name(&self) -> &'static str {
        match self {
            Role::Server => "server",
            Role::Client { .. } => "client",
        }
    }

    /// Whether this is the client.
    pub fn is_client(&self) -> bool {
        matches!(self, Role::Client { .. })
    }
}

/// MiB/sec (perftest's default) or Gb/sec (`--report_gbits`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum BandwidthUnits {
    /// 2^20 bytes per second, which perftest labels `MB/sec`.
    #[default]
    Mebibytes,
    /// 10^9 bits per second.
    Gigabits,
}

impl BandwidthUnits {
    /// Bytes per second in one unit (perftest's `format_factor`).
    pub fn bytes_per_unit(self) -> f64 {
        match self {
            BandwidthUnits::Mebibytes => 1_048_576.0,
            BandwidthUnits::Gigabits => 125_000_000.0,
        }
    }

    /// The unit as the table header prints it.
    pub fn label(self) -> &'static str {
        match self {
            BandwidthUnits::Mebibytes => "MB/sec",
            BandwidthUnits::Gigabits => "Gb/sec",
        }
    }
}

/// A timed run (`-D`): a warm-up margin, the sampled middle, and a closing margin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DurationPlan {
    /// The whole run, in seconds.
    pub total_s: u64,
    /// Each margin, in seconds (perftest: a quarter of the duration, rounded down).
    pub margin_s: u64,
}

impl DurationPlan {
    /// When the sampled window opens, from the start of the run.
    pub fn sample_start(&self) -> Duration {
        Duration::from_secs(self.margin_s)
    }

    /// When the sampled window closes.
    pub fn sample_end(&self) -> Duration {
        Duration::from_secs(self.total_s - self.margin_s)
    }

    /// When the run ends.
    pub fn end(&self) -> Duration {
        Duration::from_secs(self.total_s)
    }
}

/// Everything a run needs, checked and completed.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// The test.
    pub test: TestKind,
    /// Server or client.
    pub role: Role,
    /// TCP port of the control connection.
    pub port: u16,
    /// The device name, if one was given.
    pub device: Option<String>,
    /// The device's port.
    pub ib_port: u8,
    /// The GID index, if one was given.
    pub gid_index: Option<u8>,
    /// The message size (with `-a`, the largest: what buffers are sized for).
    pub size: u64,
    /// `-a`: every power of two from 2 to 2^23.
    pub all_sizes: bool,
    /// Exchanges per size (unused with a duration).
    pub iterations: u64,
    /// `-D`.
    pub duration: Option<DurationPlan>,
    /// `-I`, if given; otherwise the test's default applies (see [`Settings::default_inline`]).
    pub inline_request: Option<u32>,
    /// Send queue depth.
    pub tx_depth: u32,
    /// Receive queue depth (SEND tests; 1 otherwise).
    pub rx_depth: u32,
    /// A completion is asked for every `cq_mod` requests (bandwidth tests).
    pub cq_mod: u32,
    /// QPs (bandwidth tests).
    pub qps: u32,
    /// The atomic operation.
    pub atomic: AtomicType,
    /// Bandwidth units.
    pub units: BandwidthUnits,
    /// Skip the peak bandwidth.
    pub no_peak: bool,
    /// Where to write JSON, if anywhere.
    pub json_path: Option<PathBuf>,
    /// The core to pin to.
    pub core: Option<usize>,
    /// How long a client retries an absent server.
    pub connect_timeout: Duration,
    /// How long the peer may take over a control step, or leave a run without progress.
    pub control_timeout: Duration,
    /// `-b`: both sides send (bandwidth tests).
    pub bidirectional: bool,
    /// `-l`: requests per post call (bandwidth tests; 1 otherwise).
    pub post_list: u32,
    /// `--run_infinitely`: the seconds between rows of a run that never ends.
    pub infinite_interval_s: Option<u64>,
    /// `-u`: the local ACK timeout code.
    pub qp_timeout: u8,
    /// `--retry_count`: transport retries.
    pub retry_count: u8,
    /// `-U`: print the latency samples as measured.
    pub report_unsorted: bool,
    /// `--cpu_util` in a timed run: report the CPU's user share of the sampled window.
    pub cpu_util: bool,
}

impl Settings {
    /// Applies perftest's rules to `args`; the error is one line saying what is wrong.
    pub fn from_args(args: Args) -> Result<Settings> {
        let test = args.test;
        check_options_apply(&args)?;
        let size = message_size(&args)?;
        let duration = duration_plan(&args)?;
        let cq_mod = args.cq_mod.map(|cq_mod| in_range(cq_mod, CQ_MOD_RANGE, "CQ moderation")).transpose()?;
        let family = test.family();
        let mut settings = Settings {
            test,
            role: args.host.map_or(Role::Server, |host| Role::Client { host }),
            port: args.port,
            device: args.device,
            ib_port: device_port(args.ib_port)?,
            gid_index: args
                .gid_index
                .map(|index| in_range(index, (0, MAX_GID_INDEX), "Gid index"))
                .transpose()?
                .map(|index| index as u8),
            size,
            all_sizes: args.all,
            iterations: iterations(args.iterations, test)?,
            duration,
            inline_request: args
                .inline_size
                .map(|size| in_range(size, (0, MAX_INLINE), "Max inline"))
                .transpose()?,
            tx_depth: in_range(
                args.tx_depth.unwrap_or(if family == Family::Bandwidth { 128 } else { 1 }),
                TX_DEPTH_RANGE,
                "Tx depth",
            )?,
            rx_depth: in_range(
                args.rx_depth.unwrap_or(if test.verb() == Verb::Send { 512 } else { 1 }),
                RX_DEPTH_RANGE,
                " Rx depth",
            )?,
            cq_mod: cq_mod.unwrap_or(100),
            qps: in_range(args.qps.unwrap_or(1), QPS_RANGE, "num of Qps")?,
            atomic: args.atomic_type.unwrap_or_default(),
            units: if args.report_gbits { BandwidthUnits::Gigabits } else { BandwidthUnits::Mebibytes },
            no_peak: args.no_peak,
            json_path: match (args.out_json, args.out_json_file) {
                (_, Some(path)) => Some(path),
                (true, None) => Some(PathBuf::from("perftest_out.json")),
                (false, None) => None,
            },
            core: args.core,
            connect_timeout: Duration::from_secs(args.connect_timeout_s),
            control_timeout: Duration::from_secs(args.control_timeout_s),
            bidirectional: args.bidirectional,
            post_list: args.post_list.unwrap_or(1),
            infinite_interval_s: args.run_infinitely.then(|| args.duration.unwrap_or(DEFAULT_INTERVAL_S)),
            qp_timeout: in_range(args.qp_timeout.unwrap_or(DEFAULT_QP_TIMEOUT), (0, 31), "QP Timeout")?,
            retry_count: in_range(args.retry_count.unwrap_or(DEFAULT_RETRY_COUNT), (0, 7), "Retry Count")?,
            report_unsorted: args.report_unsorted,
            cpu_util: args.cpu_util && args.duration.is_some() && !args.run_infinitely,
        };
        if args.cpu_util && !settings.cpu_util {
            // perftest warns and goes on.
            eprintln!(" CPU Utilization works only with Duration mode.");
        }
        settings.derive(cq_mod.is_some())?;
        Ok(settings)
    }

    /// Whether the run counts iterations (no `-D`, no `--run_infinitely`).
    pub fn counts_iterations(&self) -> bool {
        self.duration.is_none() && self.infinite_interval_s.is_none()
    }

    /// perftest's `force_dependecies`, for the options this tool has.
    fn derive(&mut self, cq_mod_requested: bool) -> Result<()> {
        if self.counts_iterations() {
            self.tx_depth = self.tx_depth.min(clamp_u32(self.iterations));
            if self.test.verb() == Verb::Send {
                self.rx_depth = self.rx_depth.min(clamp_u32(self.iterations));
            }
        }
        // Large messages: one completion each, as perftest does unless -Q or -a.
        if self.size > CQ_MOD_SIZE_LIMIT && !self.all_sizes && !cq_mod_requested {
            self.cq_mod = 1;
        }
        self.cq_mod = self.cq_mod.min(self.tx_depth);
        if self.post_list > 1 {
            if self.counts_iterations() && self.iterations % u64::from(self.post_list) != 0 {
                bail!("Number of iterations must be a multiple of post list size");
            }
            if !cq_mod_requested {
                self.cq_mod = self.post_list;
            } else if self.post_list % self.cq_mod != 0 {
                bail!("Post list size must be a multiple of CQ moderation");
            }
            ensure!(
                self.post_list <= self.tx_depth,
                "Post list size ({}) must not exceed the tx depth ({}): a list would never fit",
                self.post_list,
                self.tx_depth
            );
        }
        if self.all_sizes {
            self.size = MAX_SIZE;
        }
        if self.duration.is_some() {
            self.no_peak = true;
        }
        if self.test == TestKind::SendBw && !self.role.is_client() && !self.bidirectional {
            self.no_peak = true;
        }
        if self.infinite_interval_s.is_some() {
            self.no_peak = true;
        }
        if self.duration.is_none()
            && self.test.family() == Family::Bandwidth
            && self.iterations > PEAK_ITERATIONS_LIMIT
        {
            self.no_peak = true;
        }
        // perftest's work-around for odd receive depths in SEND tests.
        if self.test.verb() == Verb::Send && self.rx_depth % 2 == 1 && !self.all_sizes {
            self.rx_depth += 1;
        }
        Ok(())
    }

    /// The sizes to run, in order.
    pub fn sizes(&self) -> Vec<u64> {
        if self.all_sizes {
            (1..=23).map(|exponent| 1u64 << exponent).collect()
        } else {
            vec![self.size]
        }
    }

    /// How long the side that waits for the peer's run of `size` gives it before deciding
    /// it is gone: a timed run's duration, else a loose bound from the messages moved (10 ms
    /// and a microsecond per byte each, far slower than any device), plus `step`.
    pub fn run_patience(&self, size: u64, step: Duration) -> Duration {
        let run = match self.duration {
            Some(plan) => plan.end(),
            None => {
                let messages = self.iterations.saturating_mul(u64::from(self.qps));
                let per_message_us = 10_000u64.saturating_add(size);
                Duration::from_micros(messages.saturating_mul(per_message_us))
            }
        };
        run.saturating_add(step)
    }

    /// The largest size run: what buffers are sized for.
    pub fn max_size(&self) -> u64 {
        self.size
    }

    /// perftest's inline default (`ctx_set_max_inline`, for a device it knows): 220 bytes
    /// for write_lat, 236 for send_lat, none for the rest.
    pub fn default_inline(&self) -> u32 {
        match self.test {
            TestKind::WriteLat => 220,
            TestKind::SendLat => 236,
            _ => 0,
        }
    }
}

/// Options that only some tests take, given to another, and what this tool does not do
/// (perftest's messages where it has one).
fn check_options_apply(args: &Args) -> Result<()> {
    let verb = args.test.verb();
    let bandwidth = args.test.family() == Family::Bandwidth;
    if let Some(connection) = args.connection.as_deref().filter(|connection| *connection != "RC") {
        bail!("connection type {connection} (-c) is not supported: usec-perftest runs RC (reliable connected) QPs only");
    }
    if args.rdma_cm {
        bail!(
            "-R (rdma_cm) is not supported: usec-perftest connects its QPs itself over the TCP connection; \
             start both sides without -R"
        );
    }
    if args.bidirectional && !bandwidth {
        bail!("Bidirectional is only available in BW test");
    }
    if args.post_list.is_some_and(|list| list > 1) && !bandwidth {
        bail!("Post list is supported in BW tests only");
    }
    if args.post_list == Some(0) {
        bail!("Send Post List size should be at least 1");
    }
    if args.run_infinitely {
        ensure!(bandwidth, "run_infinitely exists only in BW tests for now.");
        ensure!(
            !(args.bidirectional && verb == Verb::Send),
            "run_infinitely mode is not supported in SEND Bidirectional BW test"
        );
        ensure!(!args.all, "--run_infinitely runs one size: drop -a");
    }
    if args.report_unsorted && bandwidth {
        bail!(" is Available only on Latency tests");
    }
    if args.qps.is_some() && args.test.family() != Family::Bandwidth {
        bail!("Multiple QPs only available on bw tests");
    }
    if args.inline_size.is_some() && verb.reads_into_local_memory() {
        bail!("Inline feature not available on READ/Atomic verbs");
    }
    if args.atomic_type.is_some() && verb != Verb::Atomic {
        bail!("-A/--atomic_type only applies to atomic_lat: you are not running an atomic test");
    }
    if args.rx_depth.is_some_and(|depth| depth > 1) && verb != Verb::Send {
        bail!("On RDMA verbs rx depth can be only 1");
    }
    Ok(())
}

/// `-i`: at least 1, and a `u8` as verbs port numbers are.
fn device_port(port: u32) -> Result<u8> {
    ensure!(port >= 1, "IB Port can't be less than 1");
    u8::try_from(port).map_err(|_| anyhow::anyhow!("IB Port should be at most 255"))
}

/// `-n`, or the test's default: 5000 for write_bw, 1000 for the rest.
fn iterations(requested: Option<u64>, test: TestKind) -> Result<u64> {
    match requested {
        Some(iterations) => in_range(iterations, ITERATIONS_RANGE, "Iteration num"),
        None if test == TestKind::WriteBw => Ok(5000),
        None => Ok(1000),
    }
}

/// `-s`, or the test's default: 8 for atomics (the only size they take), 2 for latency,
/// 65536 for bandwidth.
fn message_size(args: &Args) -> Result<u64> {
    let verb = args.test.verb();
    let default = match (verb, args.test.family()) {
        (Verb::Atomic, _) => 8,
        (_, Family::Latency) => 2,
        (_, Family::Bandwidth) => 65_536,
    };
    let size = args.size.unwrap_or(default);
    let max = u64::from(u32::MAX / 2);
    ensure!((1..=max).contains(&size), "Message Size should be between 1 and {max}");
    if verb == Verb::Atomic && (size != 8 || args.all) {
        bail!("Message size cannot be changed for Atomic tests");
    }
    Ok(size)
}

/// `-D`: margins of a quarter of the duration each, not with `-a`.
fn duration_plan(args: &Args) -> Result<Option<DurationPlan>> {
    let plan = match args.duration {
        None => return Ok(None),
        Some(0) => bail!("Duration period must be positive"),
        // With --run_infinitely, -D is the time between rows.
        Some(_) if args.run_infinitely => return Ok(None),
        Some(total_s) => DurationPlan { total_s, margin_s: total_s / 4 },
    };
    ensure!(plan.total_s > 2 * plan.margin_s, "please check that DURATION > 2*MARGIN");
    ensure!(!args.all, "Duration mode currently doesn't support running on all sizes.");
    Ok(Some(plan))
}

fn in_range<T: PartialOrd + std::fmt::Display + Copy>(value: T, (min, max): (T, T), name: &str) -> Result<T> {
    ensure!(value >= min && value <= max, "{name} should be between {min} and {max}");
    Ok(value)
}

fn clamp_u32(value: u64) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    use super::*;

    fn settings(words: &str) -> Result<Settings> {
        let argv: Vec<OsString> =
            std::iter::once("usec-perftest").chain(words.split_whitespace()).map(OsString::from).collect();
        Settings::from_args(Args::parse_from_argv(argv).map_err(|error| anyhow::anyhow!("{error}"))?)
    }

    fn error(words: &str) -> String {
        settings(words).expect_err(words).to_string()
    }

    #[test]
    fn latency_defaults_are_perftests() {
        let write = settings("write_lat").unwrap();
        assert_eq!(write.role, Role::Server);
        assert_eq!((write.size, write.iterations, write.tx_depth, write.rx_depth), (2, 1000, 1, 1));
        assert_eq!((write.qps, write.cq_mod, write.port), (1, 1, 18515));
        assert_eq!(write.default_inline(), 220);
        assert_eq!(write.sizes(), vec![2]);
        assert!(write.duration.is_none() && write.json_path.is_none() && !write.no_peak);

        let send = settings("send_lat host").unwrap();
        assert_eq!(send.role, Role::Client { host: "host".into() });
        assert_eq!((send.rx_depth, send.default_inline()), (512, 236));

        let atomic = settings("atomic_lat").unwrap();
        assert_eq!((atomic.size, atomic.atomic, atomic.default_inline()), (8, AtomicType::FetchAndAdd, 0));
        assert_eq!(settings("read_lat").unwrap().default_inline(), 0);
    }

    #[test]
    fn bandwidth_defaults_are_perftests() {
        let write = settings("write_bw h").unwrap();
        assert_eq!((write.size, write.iterations, write.tx_depth), (65_536, 5000, 128));
        // 64 KiB messages are above the moderation limit: one completion each.
        assert_eq!(write.cq_mod, 1);
        assert_eq!(write.default_inline(), 0);
        let read = settings("read_bw h").unwrap();
        assert_eq!(read.iterations, 1000);
        let small = settings("send_bw -s 64 h").unwrap();
        assert_eq!((small.cq_mod, small.rx_depth, small.iterations), (100, 512, 1000));
        assert!(!small.no_peak);
        // The send_bw server never computes a peak.
        assert!(settings("send_bw -s 64").unwrap().no_peak);
    }

    #[test]
    fn derived_values_follow_force_dependecies() {
        // tx depth and rx depth are capped by the iterations; odd rx depths grow by one.
        let capped = settings("send_bw -s 64 -n 7 h").unwrap();
        assert_eq!((capped.tx_depth, capped.rx_depth, capped.cq_mod), (7, 8, 7));
        // An explicit -Q survives large messages, but not the tx depth.
        let moderated = settings("write_bw -Q 16 -t 8 h").unwrap();
        assert_eq!(moderated.cq_mod, 8);
        // -a runs every size and sizes buffers for the largest.
        let all = settings("write_bw -a h").unwrap();
        assert_eq!(all.size, MAX_SIZE);
        assert_eq!(all.cq_mod, 100);
        assert_eq!(all.sizes().first(), Some(&2));
        assert_eq!(all.sizes().last(), Some(&MAX_SIZE));
        assert_eq!(all.sizes().len(), 23);
        // Many iterations: no peak; a duration: no peak and a quarter as margin.
        assert!(settings("write_bw -n 20001 h").unwrap().no_peak);
        assert!(!settings("write_bw -n 20000 h").unwrap().no_peak);
        let timed = settings("write_lat -D 10 h").unwrap();
        assert_eq!(timed.duration, Some(DurationPlan { total_s: 10, margin_s: 2 }));
        assert!(timed.no_peak);
        assert_eq!(
            settings("write_bw -D 1 h").unwrap().duration,
            Some(DurationPlan { total_s: 1, margin_s: 0 })
        );
    }

    #[test]
    fn every_option_lands() {
        let all = settings(
            "send_bw -p 7000 -d soft:x -i 2 -x 1 -s 4K -n 64 -I 100 -t 32 -r 16 -Q 4 -q 3 -F -N \
             --report_gbits --out_json --core 1 --connect_timeout 2 peer",
        )
        .unwrap();
        assert_eq!(all.port, 7000);
        assert_eq!(all.device.as_deref(), Some("soft:x"));
        assert_eq!((all.ib_port, all.gid_index), (2, Some(1)));
        assert_eq!((all.size, all.iterations, all.inline_request), (4096, 64, Some(100)));
        assert_eq!((all.tx_depth, all.rx_depth, all.cq_mod, all.qps), (32, 16, 4, 3));
        assert!(all.no_peak);
        assert_eq!(all.units, BandwidthUnits::Gigabits);
        assert_eq!(all.json_path, Some(PathBuf::from("perftest_out.json")));
        assert_eq!((all.core, all.connect_timeout), (Some(1), Duration::from_secs(2)));
        let file = settings("write_lat --out_json_file=/tmp/r.json").unwrap();
        assert_eq!(file.json_path, Some(PathBuf::from("/tmp/r.json")));
        let cas = settings("atomic_lat -A CMP_AND_SWAP").unwrap();
        assert_eq!(cas.atomic, AtomicType::CmpAndSwap);
    }

    #[test]
    fn bidirectional_post_lists_and_endless_runs_follow_perftest() {
        let both = settings("send_bw -b -s 64").unwrap();
        assert!(both.bidirectional && !both.no_peak, "a bidirectional send_bw server sends too");
        let listed = settings("write_bw -l 4 -n 100 -s 64 h").unwrap();
        assert_eq!((listed.post_list, listed.cq_mod), (4, 4));
        assert_eq!(settings("write_bw -l 8 -Q 4 -n 80 -s 64 h").unwrap().cq_mod, 4);
        let endless = settings("read_bw --run_infinitely -D 2 h").unwrap();
        assert_eq!((endless.infinite_interval_s, endless.duration), (Some(2), None));
        assert!(endless.no_peak && !endless.counts_iterations());
        assert_eq!(settings("write_bw --run_infinitely h").unwrap().infinite_interval_s, Some(5));
        let timed = settings("write_lat -u 20 --retry_count 3 -U --cpu_util -D 4 h").unwrap();
        assert_eq!((timed.qp_timeout, timed.retry_count), (20, 3));
        assert!(timed.report_unsorted && timed.cpu_util);
        assert!(!settings("write_lat --cpu_util h").unwrap().cpu_util, "CPU use needs -D");
        let defaults = settings("write_bw h").unwrap();
        assert_eq!((defaults.qp_timeout, defaults.retry_count, defaults.post_list), (14, 7, 1));
        assert_eq!(defaults.control_timeout, Duration::from_secs(15));
        assert!(settings("write_bw -c RC h").is_ok());
    }

    #[test]
    fn out_of_range_and_misplaced_options_are_one_line_errors() {
        let cases = [
            ("write_lat -n 4", "Iteration num should be between 5 and 100000000"),
            ("write_lat -n 100000001", "Iteration num should be between 5 and 100000000"),
            ("write_bw -t 0", "Tx depth should be between 1 and 15000"),
            ("write_bw -t 15001", "Tx depth should be between 1 and 15000"),
            ("write_lat -x 65", "Gid index should be between 0 and 64"),
            ("write_lat -q 2", "Multiple QPs only available on bw tests"),
            ("write_bw -q 0", "num of Qps should be between 1 and 16384"),
            ("write_lat -I 913", "Max inline should be between 0 and 912"),
            ("read_lat -I 8", "Inline feature not available on READ/Atomic verbs"),
            ("atomic_bw_typo", "unknown test"),
            ("atomic_lat -s 16", "Message size cannot be changed for Atomic tests"),
            ("atomic_lat -a", "Message size cannot be changed for Atomic tests"),
            ("write_lat -A CMP_AND_SWAP", "not running an atomic test"),
            ("write_lat -b", "Bidirectional is only available in BW test"),
            ("send_lat -l 2", "Post list is supported in BW tests only"),
            ("write_bw -l 3 -n 100", "Number of iterations must be a multiple of post list size"),
            ("write_bw -l 6 -Q 4 -n 60", "Post list size must be a multiple of CQ moderation"),
            ("write_bw -l 8 -t 4 -n 80", "must not exceed the tx depth"),
            ("write_lat --run_infinitely", "run_infinitely exists only in BW tests for now."),
            ("send_bw -b --run_infinitely", "not supported in SEND Bidirectional BW test"),
            ("write_bw -a --run_infinitely", "drop -a"),
            ("write_bw -U", "Available only on Latency tests"),
            ("write_lat -u 32", "QP Timeout should be between 0 and 31"),
            ("write_lat --retry_count 8", "Retry Count should be between 0 and 7"),
            ("write_lat -c UD", "connection type UD (-c) is not supported: usec-perftest runs RC"),
            ("write_lat -R", "-R (rdma_cm) is not supported"),
            ("write_bw -r 4", "On RDMA verbs rx depth can be only 1"),
            ("write_lat -s 0", "Message Size should be between 1 and 2147483647"),
            ("write_lat -s 3G", "is not a size"),
            ("write_lat -D 0", "Duration period must be positive"),
            ("write_lat -D 4 -a", "Duration mode currently doesn't support running on all sizes."),
            ("write_bw -Q 0", "CQ moderation should be between 1 and 1024"),
            ("send_bw -r 16385", "Rx depth should be between 1 and 16384"),
            ("write_lat -i 0", "IB Port can't be less than 1"),
        ];
        for (words, expected) in cases {
            let message = error(words);
            assert!(message.contains(expected), "{words}: {message:?} lacks {expected:?}");
        }
    }
}
