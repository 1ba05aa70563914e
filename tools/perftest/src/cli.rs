//! The command line, as perftest spells it.
//!
//! `usec-perftest <test> [options]` starts a server; `usec-perftest <test> [options] <host>`
//! a client. Installed under a multi-call name (`usec_write_lat`, or perftest's own
//! `ib_write_lat`), the binary takes the test from its name. Option names, short letters and
//! defaults are perftest's (`src/perftest_parameters.c`); the checks perftest makes after
//! parsing are in [`crate::settings`].

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::Parser;

use crate::test_kind::{AtomicType, TestKind};

/// perftest's TCP port.
pub const DEFAULT_PORT: u16 = 18515;

/// What the command line says, before perftest's rules are applied.
#[derive(Clone, Debug, Parser)]
#[command(
    name = "usec-perftest",
    version,
    about = "perftest-compatible RDMA microbenchmarks on every usec provider",
    long_about = "perftest-compatible RDMA microbenchmarks on every usec provider.\n\n\
        Start the server without a host, then the client with the server's host:\n  \
        usec-perftest write_lat -d rxe0 -x 0\n  \
        usec-perftest write_lat -d rxe0 -x 0 127.0.0.1\n\n\
        Tests: write_lat read_lat send_lat atomic_lat write_bw read_bw send_bw.\n\
        Devices: soft:<fabric> (shared memory between processes of one host), sim:<name>,\n\
        or an ibverbs device (mlx5_0, rxe0). Samples are timed in ns with the invariant TSC\n\
        (calibrated) where the CPU has one, else CLOCK_MONOTONIC.",
    disable_version_flag = true
)]
pub struct Args {
    /// The test: write_lat, read_lat, send_lat, atomic_lat, write_bw, read_bw, send_bw.
    #[arg(value_parser = parse_test)]
    pub test: TestKind,

    /// The server to connect to; without it this process is the server.
    pub host: Option<String>,

    /// Listen on / connect to this TCP port.
    #[arg(short = 'p', long = "port", default_value_t = DEFAULT_PORT)]
    pub port: u16,

    /// Device: soft:<fabric>, sim:<name>, or an ibverbs device (default: the first ibverbs device).
    #[arg(short = 'd', long = "ib-dev")]
    pub device: Option<String>,

    /// Port of the device.
    #[arg(short = 'i', long = "ib-port", default_value_t = 1)]
    pub ib_port: u32,

    /// GID index (RoCE: default 0; InfiniBand: LID routing unless given).
    #[arg(short = 'x', long = "gid-index")]
    pub gid_index: Option<u32>,

    /// Message size in bytes; K and M suffixes allowed (default 2 for latency, 65536 for bandwidth, 8 for atomics).
    #[arg(short = 's', long = "size", value_parser = parse_size)]
    pub size: Option<u64>,

    /// Run sizes from 2 to 2^23.
    #[arg(short = 'a', long = "all")]
    pub all: bool,

    /// Number of exchanges (at least 5; default 1000, 5000 for write_bw).
    #[arg(short = 'n', long = "iters")]
    pub iterations: Option<u64>,

    /// Largest message sent inline (default 220 for write_lat, 236 for send_lat, 0 otherwise).
    #[arg(short = 'I', long = "inline_size")]
    pub inline_size: Option<u32>,

    /// Send queue depth (default 128 for bandwidth, 1 for latency).
    #[arg(short = 't', long = "tx-depth")]
    pub tx_depth: Option<u32>,

    /// Receive queue depth of SEND tests (default 512).
    #[arg(short = 'r', long = "rx-depth")]
    pub rx_depth: Option<u32>,

    /// Ask for a completion every <n> requests (bandwidth; default 100, 1 above 8 KiB).
    #[arg(short = 'Q', long = "cq-mod")]
    pub cq_mod: Option<u32>,

    /// Number of QPs (bandwidth tests).
    #[arg(short = 'q', long = "qp")]
    pub qps: Option<u32>,

    /// Run for this many seconds instead of a number of iterations.
    #[arg(short = 'D', long = "duration")]
    pub duration: Option<u64>,

    /// Accepted for perftest compatibility: the clock (calibrated TSC or CLOCK_MONOTONIC) ignores CPU frequency scaling.
    #[arg(short = 'F', long = "CPU-freq")]
    pub cpu_freq: bool,

    /// Atomic operation of atomic_lat: CMP_AND_SWAP or FETCH_AND_ADD.
    #[arg(short = 'A', long = "atomic_type", value_parser = parse_atomic)]
    pub atomic_type: Option<AtomicType>,

    /// Do not compute the peak bandwidth.
    #[arg(short = 'N', long = "noPeak")]
    pub no_peak: bool,

    /// Report bandwidth in Gb/sec instead of MiB/sec.
    #[arg(long = "report_gbits")]
    pub report_gbits: bool,

    /// Write the results as JSON (to perftest_out.json unless --out_json_file says otherwise).
    #[arg(long = "out_json")]
    pub out_json: bool,

    /// The JSON file (implies --out_json).
    #[arg(long = "out_json_file")]
    pub out_json_file: Option<PathBuf>,

    /// Bidirectional: both sides send (bandwidth tests).
    #[arg(short = 'b', long = "bidirectional")]
    pub bidirectional: bool,

    /// Post this many requests per post call (bandwidth tests).
    #[arg(short = 'l', long = "post_list")]
    pub post_list: Option<u32>,

    /// Run until killed, printing a row every -D seconds (5 by default; bandwidth tests).
    #[arg(long = "run_infinitely")]
    pub run_infinitely: bool,

    /// QP timeout: the local ACK timeout code, 4.096 us x 2^value (default 14).
    #[arg(short = 'u', long = "qp-timeout")]
    pub qp_timeout: Option<u8>,

    /// Transport retries before a request fails (0..7; 7, the default, retries forever on rxe).
    #[arg(long = "retry_count")]
    pub retry_count: Option<u8>,

    /// Print every latency sample, in the order measured, before the table (latency tests).
    #[arg(short = 'U', long = "report-unsorted")]
    pub report_unsorted: bool,

    /// Report the CPU's user time share during the sampled window (with -D).
    #[arg(long = "cpu_util")]
    pub cpu_util: bool,

    /// Connection type: only RC (reliable connected) QPs are supported.
    #[arg(short = 'c', long = "connection")]
    pub connection: Option<String>,

    /// Connect QPs with rdma_cm: not supported (refused with a message).
    #[arg(short = 'R', long = "rdma_cm")]
    pub rdma_cm: bool,

    /// Pin this process to a core (reported in the info block).
    #[arg(long = "core")]
    pub core: Option<usize>,

    /// How long a client keeps retrying a server that does not answer yet, in seconds.
    #[arg(long = "connect_timeout", default_value_t = 5)]
    pub connect_timeout_s: u64,

    /// How long the peer may take over one control step, or leave a run without progress,
    /// before this side gives up, in seconds.
    #[arg(long = "control_timeout", default_value_t = 15)]
    pub control_timeout_s: u64,

    /// Print the version.
    #[arg(short = 'V', long = "version", action = clap::ArgAction::Version)]
    pub version: Option<bool>,
}

impl Args {
    /// Parses `argv` (program name first). A program named after a test (`usec_write_lat`,
    /// `ib_send_bw`) takes the test from its name.
    pub fn parse_from_argv(argv: Vec<OsString>) -> Result<Args, clap::Error> {
        Args::try_parse_from(with_test_from_program_name(argv))
    }
}

/// Inserts the test named by the program's file name, if it names one, as the first
/// argument.
pub fn with_test_from_program_name(mut argv: Vec<OsString>) -> Vec<OsString> {
    let named = argv
        .first()
        .and_then(|program| Path::new(program).file_name())
        .and_then(|name| name.to_str())
        .filter(|name| name.starts_with("usec_") || name.starts_with("ib_"))
        .and_then(|name| name.parse::<TestKind>().ok());
    if let Some(test) = named {
        argv.insert(1.min(argv.len()), OsString::from(test.name()));
    }
    argv
}

fn parse_test(text: &str) -> Result<TestKind, String> {
    text.parse()
}

fn parse_atomic(text: &str) -> Result<AtomicType, String> {
    text.parse()
}

/// A size as perftest reads it: a number (decimal, `0x` hex or `0` octal, as `strtol` with
/// base 0), optionally followed by `K` (KiB) or `M` (MiB).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let (digits, factor) = match text.strip_suffix('K') {
        Some(rest) => (rest, 1024),
        None => match text.strip_suffix('M') {
            Some(rest) => (rest, 1024 * 1024),
            None => (text, 1),
        },
    };
    let value = if let Some(hex) = digits.strip_prefix("0x").or_else(|| digits.strip_prefix("0X")) {
        u64::from_str_radix(hex, 16)
    } else if digits.len() > 1 && digits.starts_with('0') {
        u64::from_str_radix(&digits[1..], 8)
    } else {
        digits.parse::<u64>()
    }
    .map_err(|_| format!("{text:?} is not a size (bytes, optionally with a K or M suffix)"))?;
    value.checked_mul(factor).ok_or_else(|| format!("{text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    #[test]
    fn sizes_parse_like_strtol_with_suffixes() {
        assert_eq!(parse_size("64"), Ok(64));
        assert_eq!(parse_size("4K"), Ok(4096));
        assert_eq!(parse_size("2M"), Ok(2 * 1024 * 1024));
        assert_eq!(parse_size("0x40"), Ok(64));
        assert_eq!(parse_size("010"), Ok(8));
        assert_eq!(parse_size("0"), Ok(0));
        for bad in ["", "K", "12G", "-1", "1.5", "abc", "99999999999999999999"] {
            assert!(parse_size(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn program_names_pick_the_test() {
        let args = Args::parse_from_argv(argv(&["/usr/bin/usec_read_lat", "-n", "10"])).unwrap();
        assert_eq!(args.test, TestKind::ReadLat);
        let args = Args::parse_from_argv(argv(&["ib_send_bw", "host"])).unwrap();
        assert_eq!((args.test, args.host.as_deref()), (TestKind::SendBw, Some("host")));
        // The plain binary name takes the test as its first argument.
        let args = Args::parse_from_argv(argv(&["usec-perftest", "atomic_lat"])).unwrap();
        assert_eq!(args.test, TestKind::AtomicLat);
    }

    #[test]
    fn defaults_are_unset_so_settings_can_pick_per_test_ones() {
        let args = Args::parse_from_argv(argv(&["usec-perftest", "write_bw"])).unwrap();
        assert_eq!(args.port, DEFAULT_PORT);
        assert_eq!(args.ib_port, 1);
        assert_eq!((args.connect_timeout_s, args.control_timeout_s), (5, 15));
        assert!(args.size.is_none() && args.iterations.is_none() && args.tx_depth.is_none());
        assert!(!args.all && !args.report_gbits && !args.out_json && !args.cpu_freq);
        assert!(args.host.is_none() && args.device.is_none() && args.gid_index.is_none());
    }

    #[test]
    fn every_option_parses_in_short_and_long_form() {
        let short = Args::parse_from_argv(argv(&[
            "usec-perftest",
            "atomic_lat",
            "-p",
            "1234",
            "-d",
            "soft:f",
            "-i",
            "2",
            "-x",
            "3",
            "-s",
            "8",
            "-n",
            "50",
            "-t",
            "4",
            "-D",
            "3",
            "-F",
            "-A",
            "CMP_AND_SWAP",
            "server.example",
        ]))
        .unwrap();
        assert_eq!(short.port, 1234);
        assert_eq!(short.device.as_deref(), Some("soft:f"));
        assert_eq!((short.ib_port, short.gid_index), (2, Some(3)));
        assert_eq!((short.size, short.iterations, short.tx_depth), (Some(8), Some(50), Some(4)));
        assert_eq!(short.duration, Some(3));
        assert!(short.cpu_freq);
        assert_eq!(short.atomic_type, Some(AtomicType::CmpAndSwap));
        assert_eq!(short.host.as_deref(), Some("server.example"));

        let long = Args::parse_from_argv(argv(&[
            "usec-perftest",
            "send_bw",
            "--port=99",
            "--ib-dev=rxe0",
            "--ib-port=1",
            "--gid-index=0",
            "--size=1K",
            "--all",
            "--iters=100",
            "--inline_size=64",
            "--tx-depth=16",
            "--rx-depth=32",
            "--cq-mod=8",
            "--qp=4",
            "--CPU-freq",
            "--noPeak",
            "--report_gbits",
            "--out_json",
            "--out_json_file=/tmp/x.json",
            "--core=1",
            "--connect_timeout=9",
            "--bidirectional",
            "--post_list=4",
            "--run_infinitely",
            "--qp-timeout=18",
            "--retry_count=5",
            "--cpu_util",
            "--connection=RC",
            "--control_timeout=3",
        ]))
        .unwrap();
        assert_eq!(long.port, 99);
        assert_eq!(long.device.as_deref(), Some("rxe0"));
        assert_eq!(long.size, Some(1024));
        assert!(long.all && long.cpu_freq && long.no_peak && long.report_gbits && long.out_json);
        assert_eq!((long.iterations, long.inline_size, long.tx_depth), (Some(100), Some(64), Some(16)));
        assert_eq!((long.rx_depth, long.cq_mod, long.qps), (Some(32), Some(8), Some(4)));
        assert_eq!(long.out_json_file, Some(PathBuf::from("/tmp/x.json")));
        assert_eq!((long.core, long.connect_timeout_s), (Some(1), 9));
        assert!(long.bidirectional && long.run_infinitely && long.cpu_util);
        assert_eq!((long.post_list, long.qp_timeout, long.retry_count), (Some(4), Some(18), Some(5)));
        assert_eq!((long.connection.as_deref(), long.control_timeout_s), (Some("RC"), 3));
        let short =
            Args::parse_from_argv(argv(&["usec-perftest", "write_lat", "-U", "-R", "-u", "3", "-c", "UC"]))
                .unwrap();
        assert!(short.report_unsorted && short.rdma_cm);
        assert_eq!((short.qp_timeout, short.connection.as_deref()), (Some(3), Some("UC")));
    }

    #[test]
    fn malformed_command_lines_are_errors() {
        for words in [
            &["usec-perftest"][..],
            &["usec-perftest", "bogus_lat"],
            &["usec-perftest", "write_lat", "-s", "big"],
            &["usec-perftest", "write_lat", "-n"],
            &["usec-perftest", "write_lat", "--no-such-option"],
            &["usec-perftest", "write_lat", "-p", "70000"],
            &["usec-perftest", "write_lat", "host1", "host2"],
            &["usec-perftest", "atomic_lat", "-A", "SWAP"],
        ] {
            assert!(Args::parse_from_argv(argv(words)).is_err(), "{words:?} accepted");
        }
    }
}
