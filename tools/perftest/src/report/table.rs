//! The result tables, character for character as perftest 4.5-0.17 prints them
//! (`RESULT_FMT*`, `REPORT_FMT*` in `src/perftest_parameters.h`), tabs included, so that
//! whatever parses perftest's output parses ours.

use crate::settings::BandwidthUnits;
use crate::stats::{BandwidthStats, DurationLatency, LatencyStats};

/// perftest's `RESULT_LINE`, without its newline.
pub const RESULT_LINE: &str =
    "---------------------------------------------------------------------------------------";

/// The latency table's header (`RESULT_FMT_LAT`).
pub const LATENCY_HEADER: &str = " #bytes #iterations    t_min[usec]    t_max[usec]  t_typical[usec]    \
     t_avg[usec]    t_stdev[usec]   99% percentile[usec]   99.9% percentile[usec] ";

/// The header of a latency test run for a duration (`RESULT_FMT_LAT_DUR`).
pub const LATENCY_DURATION_HEADER: &str = " #bytes        #iterations       t_avg[usec]    tps average";

/// The bandwidth table's header (`RESULT_FMT` or `RESULT_FMT_G`).
pub fn bandwidth_header(units: BandwidthUnits) -> String {
    let unit = units.label();
    format!(" #bytes     #iterations    BW peak[{unit}]    BW average[{unit}]   MsgRate[Mpps]")
}

/// One latency row (`REPORT_FMT_LAT`).
pub fn latency_row(size: u64, iterations: u64, stats: &LatencyStats) -> String {
    format!(
        " {:<7} {}          {:<7.2}        {:<7.2}      {:<7.2}  \t       {:<7.2}     \t{:<7.2}\t\t{:<7.2} \t\t{:<7.2}",
        size,
        iterations,
        stats.min_us,
        stats.max_us,
        stats.typical_us,
        stats.avg_us,
        stats.stdev_us,
        stats.p99_us,
        stats.p99_9_us
    )
}

/// The header's end with `--cpu_util` (`RESULT_EXT_CPU_UTIL`).
pub const CPU_UTIL_HEADER: &str = "    CPU_Util[%]";

/// A row's end with `--cpu_util` (`REPORT_EXT_CPU_UTIL`).
fn cpu_util_column(cpu_util: Option<f64>) -> String {
    cpu_util.map_or_else(String::new, |share| format!("\t    {share:<3.2}"))
}

/// One row of a latency test run for a duration (`REPORT_FMT_LAT_DUR`).
pub fn latency_duration_row(size: u64, row: &DurationLatency) -> String {
    format!(
        " {:<7}       {}            {:<7.2}        {:<7.2}{}",
        size,
        row.iterations,
        row.avg_us,
        row.tps,
        cpu_util_column(row.cpu_util)
    )
}

/// One bandwidth row (`REPORT_FMT`, or `REPORT_FMT_EXT` with six decimals when an average
/// below 0.1 Gb/sec would print as zero).
pub fn bandwidth_row(stats: &BandwidthStats) -> String {
    let row = if stats.units == BandwidthUnits::Gigabits && stats.average < 0.1 {
        format!(
            " {:<7}    {}           {:<7.6}            {:<7.6}            {:<7.6}",
            stats.size, stats.iterations, stats.peak, stats.average, stats.msg_rate_mpps
        )
    } else {
        format!(
            " {:<7}    {:<10}       {:<7.2}            {:<7.2}\t\t   {:<7.6}",
            stats.size, stats.iterations, stats.peak, stats.average, stats.msg_rate_mpps
        )
    };
    row + &cpu_util_column(stats.cpu_util)
}

/// `-U`: every latency sample in the order measured, `#, usec` then `i, value` lines, as
/// perftest's `print_report_lat` prints them (values with C's `%g`).
pub fn unsorted_samples(post_times_ns: &[u64], rtt_factor: u32) -> String {
    let mut out = String::from("#, usec");
    for (index, pair) in post_times_ns.windows(2).enumerate() {
        let sample_us = pair[1].saturating_sub(pair[0]) as f64 / 1000.0 / f64::from(rtt_factor);
        out.push_str(&format!("\n{}, {}", index + 1, c_general(sample_us)));
    }
    out
}

/// C's `%g`: six significant digits, trailing zeros dropped, scientific notation below
/// 1e-4 and from 1e6 on.
pub fn c_general(value: f64) -> String {
    if value == 0.0 || !value.is_finite() {
        return format!("{value}");
    }
    let scientific = format!("{value:.5e}");
    let (mantissa, exponent) = scientific.split_once('e').expect("{:e} has an exponent");
    let exponent: i32 = exponent.parse().expect("an integer exponent");
    let trim = |text: &str| -> String {
        if text.contains('.') {
            text.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            text.to_string()
        }
    };
    if !(-4..6).contains(&exponent) {
        let sign = if exponent < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", trim(mantissa), exponent.abs())
    } else {
        trim(&format!("{value:.*}", (5 - exponent) as usize))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines captured from Debian's perftest 4.5+0.17 (`ib_write_lat`, `ib_write_bw` on
    /// rxe0), byte for byte.
    const PERFTEST_LATENCY_HEADER: &str = " #bytes #iterations    t_min[usec]    t_max[usec]  t_typical[usec]    t_avg[usec]    t_stdev[usec]   99% percentile[usec]   99.9% percentile[usec] ";
    const PERFTEST_LATENCY_ROW: &str =
        " 2       200          11.09          224.47       16.76    \t       17.88       \t9.52   \t\t102.70  \t\t224.47 ";
    const PERFTEST_BANDWIDTH_HEADER: &str =
        " #bytes     #iterations    BW peak[MB/sec]    BW average[MB/sec]   MsgRate[Mpps]";
    const PERFTEST_BANDWIDTH_ROW: &str =
        " 65536      200              32.32              32.24  \t\t   0.000516";
    const PERFTEST_DURATION_ROW: &str = " 2             74758            20.11          24857.08";

    #[test]
    fn headers_are_perftests() {
        assert_eq!(LATENCY_HEADER, PERFTEST_LATENCY_HEADER);
        assert_eq!(bandwidth_header(BandwidthUnits::Mebibytes), PERFTEST_BANDWIDTH_HEADER);
        assert_eq!(
            bandwidth_header(BandwidthUnits::Gigabits),
            " #bytes     #iterations    BW peak[Gb/sec]    BW average[Gb/sec]   MsgRate[Mpps]"
        );
    }

    #[test]
    fn rows_are_byte_identical_for_the_same_figures() {
        let stats = LatencyStats {
            min_us: 11.09,
            max_us: 224.47,
            typical_us: 16.76,
            avg_us: 17.88,
            stdev_us: 9.52,
            stdev_exact_us: 0.0,
            p99_us: 102.70,
            p99_9_us: 224.47,
        };
        assert_eq!(latency_row(2, 200, &stats), PERFTEST_LATENCY_ROW);
        let bandwidth = BandwidthStats {
            size: 65536,
            iterations: 200,
            peak: 32.32,
            average: 32.24,
            msg_rate_mpps: 0.000516,
            units: BandwidthUnits::Mebibytes,
            cpu_util: None,
        };
        assert_eq!(bandwidth_row(&bandwidth), PERFTEST_BANDWIDTH_ROW);
        let mut duration =
            DurationLatency { iterations: 74758, avg_us: 20.11, tps: 24857.08, cpu_util: None };
        assert_eq!(latency_duration_row(2, &duration), PERFTEST_DURATION_ROW);
        duration.cpu_util = Some(3.5);
        assert_eq!(latency_duration_row(2, &duration), format!("{PERFTEST_DURATION_ROW}\t    3.50"));
    }

    #[test]
    fn general_format_is_cs() {
        for (value, printed) in [
            (11.09, "11.09"),
            (1.0, "1"),
            (0.5, "0.5"),
            (123456.0, "123456"),
            (1234567.0, "1.23457e+06"),
            (0.0001, "0.0001"),
            (0.00001234, "1.234e-05"),
            (2.0000004, "2"),
            (9.9999996, "10"),
            (224.4712, "224.471"),
            (0.0, "0"),
        ] {
            assert_eq!(c_general(value), printed, "{value}");
        }
        assert_eq!(unsorted_samples(&[0, 4000, 6000, 16000], 2), "#, usec\n1, 2\n2, 1\n3, 5");
    }

    #[test]
    fn tiny_gigabit_averages_get_six_decimals() {
        let slow = BandwidthStats {
            size: 2,
            iterations: 1000,
            peak: 0.05,
            average: 0.04,
            msg_rate_mpps: 2.5,
            units: BandwidthUnits::Gigabits,
            cpu_util: None,
        };
        assert_eq!(
            bandwidth_row(&slow),
            " 2          1000           0.050000            0.040000            2.500000"
        );
    }
}
