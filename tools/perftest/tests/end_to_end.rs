//! Server and client as two processes on the soft provider, for each of the seven tests,
//! and the ways a run can go wrong. Debug builds: nothing here asserts on timing.

mod support;

use support::{fabric, free_port, one_line_failure, pair, run, table, text};

/// Runs `test` with `extra` options on a fresh fabric and checks both sides' tables.
fn check_test(test: &str, extra: &[&str], size: &str, iterations: &str) {
    let device = fabric(test);
    let mut options = vec!["-d", device.as_str(), "-n", iterations];
    options.extend_from_slice(extra);
    let (server, client) = pair(test, &options);
    let (server_out, client_out) = (text(&server.stdout), text(&client.stdout));
    assert!(client.status.success(), "{test} client failed: {}\n{client_out}", text(&client.stderr));
    assert!(server.status.success(), "{test} server failed: {}\n{server_out}", text(&server.stderr));
    assert!(server_out.contains("* Waiting for client to connect... *"), "{server_out}");
    for output in [&server_out, &client_out] {
        assert!(output.contains(" local address: LID 0000 QPN 0x"), "{output}");
        assert!(output.contains(" remote address: LID 0000 QPN 0x"), "{output}");
        assert!(output.contains(" Provider        : soft\t\tBuild          : debug"), "{output}");
    }
    let latency = test.ends_with("_lat");
    let fields = if latency { 9 } else { 5 };
    let client_table =
        table(&client_out).unwrap_or_else(|| panic!("no table from the {test} client:\n{client_out}"));
    assert_eq!(client_table.rows.len(), 1, "{client_out}");
    let row = &client_table.rows[0];
    assert_eq!(row.len(), fields, "{row:?}");
    assert_eq!((row[0].as_str(), row[1].as_str()), (size, iterations), "{row:?}");
    for figure in &row[2..] {
        let value: f64 = figure.parse().unwrap_or_else(|_| panic!("{figure:?} in {row:?}"));
        assert!(value.is_finite() && value >= 0.0, "{row:?}");
    }
    let server_prints = !matches!(test, "read_lat" | "atomic_lat");
    assert_eq!(table(&server_out).is_some(), server_prints, "{test} server:\n{server_out}");
    if matches!(test, "write_bw" | "read_bw") {
        // The server prints the client's figures, as perftest's does.
        assert_eq!(table(&server_out).unwrap().rows, client_table.rows);
    }
}

#[test]
fn write_lat_between_two_processes() {
    check_test("write_lat", &[], "2", "50");
}

#[test]
fn write_lat_without_inline() {
    check_test("write_lat", &["-I", "0", "-s", "64"], "64", "20");
}

#[test]
fn read_lat_between_two_processes() {
    check_test("read_lat", &["-s", "32"], "32", "50");
}

#[test]
fn send_lat_between_two_processes() {
    check_test("send_lat", &[], "2", "50");
}

#[test]
fn atomic_lat_fetch_and_add_and_compare_and_swap() {
    check_test("atomic_lat", &[], "8", "50");
    check_test("atomic_lat", &["-A", "CMP_AND_SWAP"], "8", "20");
}

#[test]
fn write_bw_between_two_processes() {
    check_test("write_bw", &["-s", "4096", "-t", "16"], "4096", "200");
}

#[test]
fn read_bw_with_several_qps() {
    let (server, client) =
        pair("read_bw", &["-d", &fabric("read_bw_qps"), "-n", "40", "-q", "3", "-s", "128"]);
    assert!(client.status.success() && server.status.success(), "{}", text(&client.stderr));
    let row = &table(&text(&client.stdout)).unwrap().rows[0];
    // #iterations counts the messages of every QP, as perftest's does.
    assert_eq!((row[0].as_str(), row[1].as_str()), ("128", "120"));
    assert_eq!(text(&client.stdout).matches(" local address:").count(), 3);
}

#[test]
fn send_bw_between_two_processes() {
    check_test("send_bw", &["-s", "1024", "-Q", "4"], "1024", "100");
}

#[test]
fn all_sizes_print_a_row_each() {
    let (server, client) = pair("write_bw", &["-d", &fabric("all"), "-a", "-n", "5", "--report_gbits"]);
    assert!(client.status.success(), "{}", text(&client.stderr));
    assert!(server.status.success(), "{}", text(&server.stderr));
    let client_table = table(&text(&client.stdout)).unwrap();
    assert!(client_table.header.contains("BW average[Gb/sec]"), "{}", client_table.header);
    let sizes: Vec<u64> = client_table.rows.iter().map(|row| row[0].parse().unwrap()).collect();
    assert_eq!(sizes, (1..=23).map(|exponent| 1u64 << exponent).collect::<Vec<_>>());
}

#[test]
fn send_lat_all_sizes_reposts_receives_per_size() {
    let (server, client) = pair("send_lat", &["-d", &fabric("send_all"), "-a", "-n", "5"]);
    assert!(client.status.success(), "{}", text(&client.stderr));
    assert!(server.status.success(), "{}", text(&server.stderr));
    assert_eq!(table(&text(&client.stdout)).unwrap().rows.len(), 23);
}

#[test]
fn duration_mode_reports_averages() {
    let (server, client) = pair("write_lat", &["-d", &fabric("duration_lat"), "-D", "1"]);
    assert!(client.status.success(), "{}", text(&client.stderr));
    assert!(server.status.success(), "{}", text(&server.stderr));
    let latency = table(&text(&client.stdout)).unwrap();
    assert_eq!(latency.header, " #bytes        #iterations       t_avg[usec]    tps average");
    assert_eq!(latency.rows[0].len(), 4);
    assert!(latency.rows[0][1].parse::<u64>().unwrap() > 0);

    let (server, client) = pair("write_bw", &["-d", &fabric("duration_bw"), "-D", "1", "-s", "1024"]);
    assert!(client.status.success(), "{}", text(&client.stderr));
    assert!(server.status.success(), "{}", text(&server.stderr));
    let bandwidth = table(&text(&client.stdout)).unwrap();
    // No peak in duration mode, as in perftest.
    assert_eq!(bandwidth.rows[0][2], "0.00");
    assert!(bandwidth.rows[0][1].parse::<u64>().unwrap() > 0);
}

#[test]
fn json_output_holds_every_row() {
    let directory = std::env::temp_dir().join(format!("perftest-json-{}", std::process::id()));
    std::fs::create_dir_all(&directory).unwrap();
    let path = directory.join("client.json");
    let path_text = path.to_str().unwrap().to_string();
    let port = free_port().to_string();
    let device = fabric("json");
    let server = support::spawn(&["read_lat", "-d", &device, "-n", "20", "-p", &port]);
    let client = run(&[
        "read_lat",
        "-d",
        &device,
        "-n",
        "20",
        "-p",
        &port,
        "--out_json_file",
        &path_text,
        "--connect_timeout",
        "30",
        "127.0.0.1",
    ]);
    let server = support::finish(server, std::time::Duration::from_secs(30));
    assert!(client.status.success() && server.status.success(), "{}", text(&client.stderr));
    let document: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(document["test"], "read_lat");
    assert_eq!(document["role"], "client");
    assert_eq!(document["test_info"]["provider"], "soft");
    assert!(document["test_info"]["run"]["commit"].is_string());
    let results = document["results"].as_array().unwrap();
    assert_eq!(results.len(), 1);
    assert_eq!(results[0]["MsgSize"], 2);
    assert_eq!(results[0]["n_iterations"], 20);
    for key in ["t_min", "t_max", "t_typical", "t_avg", "t_stdev", "percentile_99", "percentile_99.9"] {
        assert!(results[0][key].is_number(), "{key} missing: {document}");
    }
    std::fs::remove_dir_all(&directory).unwrap();
}

#[test]
fn bad_options_get_one_line() {
    let cases: [(&[&str], &str); 6] = [
        (&["write_lat", "-n", "2"], "Iteration num should be between 5 and 100000000"),
        (&["write_lat", "--bogus"], "unexpected argument '--bogus'"),
        (&["nonsense_lat"], "unknown test"),
        (&["write_lat", "-q", "4"], "Multiple QPs only available on bw tests"),
        (&["atomic_lat", "-s", "64"], "Message size cannot be changed for Atomic tests"),
        (&["write_lat", "-d", "nosuchprefix:x"], "Couldn't open device nosuchprefix:x"),
    ];
    for (args, expected) in cases {
        one_line_failure(&run(args), expected);
    }
    let help = run(&["--help"]);
    assert!(help.status.success());
    assert!(text(&help.stdout).contains("--iters"));
}

#[test]
fn a_missing_server_gets_one_line() {
    let port = free_port().to_string();
    let output =
        run(&["write_lat", "-d", &fabric("nobody"), "-p", &port, "--connect_timeout", "1", "127.0.0.1"]);
    let line = one_line_failure(&output, &format!("Couldn't connect to 127.0.0.1:{port}"));
    assert!(line.starts_with("usec-perftest (write_lat client): "), "{line}");
}

#[test]
fn a_mismatched_peer_gets_one_line_on_both_sides() {
    let port = free_port().to_string();
    let device = fabric("mismatch");
    let server = support::spawn(&["write_lat", "-d", &device, "-p", &port, "-s", "64"]);
    let client =
        run(&["write_lat", "-d", &device, "-p", &port, "-s", "32", "--connect_timeout", "30", "127.0.0.1"]);
    let server = support::finish(server, std::time::Duration::from_secs(30));
    one_line_failure(&client, "mismatched peer");
    one_line_failure(&client, "this client has size 32, the server size 64");
    one_line_failure(&server, "this server has size 64, the client size 32");

    let port = free_port().to_string();
    let server = support::spawn(&["send_lat", "-d", &device, "-p", &port]);
    let client = run(&["read_lat", "-d", &device, "-p", &port, "--connect_timeout", "30", "127.0.0.1"]);
    let server = support::finish(server, std::time::Duration::from_secs(30));
    one_line_failure(&client, "this client runs read_lat, the server runs send_lat");
    one_line_failure(&server, "this server runs send_lat, the client runs read_lat");
}

#[test]
fn a_peer_that_dies_mid_run_gets_one_line() {
    let port = free_port().to_string();
    let device = fabric("killed");
    let long = ["-d", device.as_str(), "-p", port.as_str(), "-n", "100000000"];
    let mut server = support::spawn(&[&["write_lat"][..], &long].concat());
    let client =
        support::spawn(&[&["write_lat"][..], &long, &["--connect_timeout", "30", "127.0.0.1"]].concat());
    // Let the ping-pong start, then kill the server.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    server.kill().unwrap();
    let _ = server.wait();
    let client = support::finish(client, std::time::Duration::from_secs(60));
    let line = one_line_failure(&client, "usec-perftest (write_lat client): ");
    assert!(line.contains("server"), "{line}");
}

#[test]
fn send_bw_for_a_duration() {
    let (server, client) = pair("send_bw", &["-d", &fabric("send_duration"), "-D", "1", "-s", "256"]);
    assert!(client.status.success(), "client: {} server: {}", text(&client.stderr), text(&server.stderr));
    assert!(server.status.success(), "{}", text(&server.stderr));
    for output in [&client, &server] {
        let row = &table(&text(&output.stdout)).unwrap().rows[0];
        assert_eq!(row[0], "256");
        assert!(row[1].parse::<u64>().unwrap() > 0, "{row:?}");
    }
}

#[test]
fn a_timed_send_bw_ends_though_its_last_sends_find_no_receive() {
    // Two receives posted and every SEND signaled: when the server's clock runs out it
    // stops reposting, and the client's SENDs still in flight then wait for receives that
    // never come (RNR, retried forever). The client must end anyway, as perftest's does.
    let options = ["-d", &fabric("send_rnr"), "-D", "1", "-s", "64", "-r", "2", "-Q", "1"];
    let (server, client) = pair("send_bw", &options);
    assert!(client.status.success(), "client: {} server: {}", text(&client.stderr), text(&server.stderr));
    assert!(server.status.success(), "{}", text(&server.stderr));
}

#[test]
fn an_endless_control_message_is_refused() {
    use std::io::Write as _;
    let port = free_port();
    let server = support::spawn(&["write_lat", "-d", &fabric("endless"), "-p", &port.to_string()]);
    let mut stream = support::connect(port);
    // A hostile client: 256 MiB without a message boundary.
    let chunk = vec![b'x'; 1 << 20];
    let accepted_mib = (0..256).take_while(|_| stream.write_all(&chunk).is_ok()).count();
    let server = support::finish(server, std::time::Duration::from_secs(60));
    assert!(accepted_mib < 256, "the server took 256 MiB without a message boundary");
    one_line_failure(&server, "usec-perftest (write_lat server): ");

    // A client that claims to be usec-perftest and announces a 4 GiB hello.
    let port = free_port();
    let server = support::spawn(&["write_lat", "-d", &fabric("huge_hello"), "-p", &port.to_string()]);
    let mut stream = support::connect(port);
    stream.write_all(b"6.06\0usec-pt/1\0\0\xff\xff\xff\xff").unwrap();
    let accepted_mib = (0..256).take_while(|_| stream.write_all(&chunk).is_ok()).count();
    let server = support::finish(server, std::time::Duration::from_secs(60));
    assert!(accepted_mib < 256, "the server took 256 MiB of a 4 GiB hello");
    one_line_failure(&server, "more than the 16384 accepted");
}

#[test]
fn a_client_that_goes_silent_after_its_hello_is_dropped() {
    use std::io::Write as _;
    let port = free_port();
    let server = support::spawn(&["write_lat", "-d", &fabric("silent"), "-p", &port.to_string()]);
    let mut stream = support::connect(port);
    // A valid hello (perftest's version message, with usec-perftest's mark), then nothing.
    stream.write_all(b"6.06\0usec-pt/1\0\0").unwrap();
    let server = support::finish(server, std::time::Duration::from_secs(90));
    let line = one_line_failure(&server, "usec-perftest (write_lat server): ");
    assert!(line.contains("sent nothing for 15 s"), "{line}");
    drop(stream);
}

#[test]
fn perftest_peers_are_told_what_is_wrong_in_perftests_words() {
    use std::io::Write as _;
    let device = fabric("versions");
    let refusals: [(&[u8; 16], &str); 2] = [
        (
            b"5.60\0\0\0\0\0\0\0\0\0\0\0\0",
            "Current implementation is not compatible with versions older than 5.70",
        ),
        // perftest's own version, without usec-perftest's mark: perftest on the soft provider.
        (b"6.06\0\0\0\0\0\0\0\0\0\0\0\0", "is perftest (version 6.06), which runs on RDMA devices"),
    ];
    for (version, expected) in refusals {
        let port = free_port();
        let server = support::spawn(&["send_bw", "-d", &device, "-p", &port.to_string()]);
        let mut stream = support::connect(port);
        stream.write_all(version).unwrap();
        let server = support::finish(server, std::time::Duration::from_secs(60));
        one_line_failure(&server, expected);
    }
}

#[test]
fn bidirectional_runs_add_up_both_sides() {
    for test in ["write_bw", "read_bw", "send_bw"] {
        let device = fabric(&format!("both_{test}"));
        let (server, client) = pair(test, &["-d", &device, "-b", "-n", "100", "-s", "256"]);
        assert!(client.status.success(), "{test} client: {}", text(&client.stderr));
        assert!(server.status.success(), "{test} server: {}", text(&server.stderr));
        let (server_out, client_out) = (text(&server.stdout), text(&client.stdout));
        for output in [&server_out, &client_out] {
            assert!(output.contains(" Bidirectional BW Test"), "{output}");
            assert!(output.contains(" TX depth        : "), "{output}");
            let row = &table(output).unwrap().rows[0];
            assert_eq!((row[0].as_str(), row[1].as_str()), ("256", "100"), "{row:?}");
            assert!(row[3].parse::<f64>().unwrap() > 0.0, "{row:?}");
        }
        // Each side prints the sum of the two: the same figures.
        assert_eq!(table(&server_out).unwrap().rows[0][3], table(&client_out).unwrap().rows[0][3]);
    }
}

#[test]
fn post_lists_post_several_requests_at_once() {
    let (server, client) =
        pair("write_bw", &["-d", &fabric("post_list"), "-l", "4", "-n", "200", "-s", "512"]);
    assert!(client.status.success(), "{}", text(&client.stderr));
    assert!(server.status.success(), "{}", text(&server.stderr));
    let output = text(&client.stdout);
    assert!(output.contains(" Post List BW Test") && output.contains(" Post List       : 4"), "{output}");
    assert!(output.contains(" CQ Moderation   : 4"), "{output}");
    assert_eq!(table(&output).unwrap().rows[0][1], "200");
}

#[test]
fn an_endless_run_prints_a_row_every_interval() {
    let port = free_port().to_string();
    let device = fabric("endless_run");
    let common = ["-d", device.as_str(), "-p", port.as_str(), "--run_infinitely", "-D", "1", "-s", "1024"];
    let mut server = support::spawn(&[&["send_bw"][..], &common].concat());
    let mut client =
        support::spawn(&[&["send_bw"][..], &common, &["--connect_timeout", "30", "127.0.0.1"]].concat());
    // Rows come every second; wait for three on the client, then stop both.
    let output = support::read_lines_until(&mut client, std::time::Duration::from_secs(60), |lines| {
        lines.iter().filter(|line| line.trim_start().starts_with("1024 ")).count() >= 3
    });
    client.kill().unwrap();
    server.kill().unwrap();
    let _ = (client.wait(), server.wait());
    let rows: Vec<&String> = output.iter().filter(|line| line.trim_start().starts_with("1024 ")).collect();
    assert!(rows.len() >= 3, "{output:?}");
    for row in rows {
        let messages: u64 = row.split_whitespace().nth(1).unwrap().parse().unwrap();
        assert!(messages > 0, "{row}");
    }
}

#[test]
fn cpu_use_and_unsorted_samples_are_reported() {
    let (server, client) =
        pair("write_bw", &["-d", &fabric("cpu_util"), "-D", "2", "-s", "1024", "--cpu_util"]);
    assert!(client.status.success(), "{}", text(&client.stderr));
    assert!(server.status.success(), "{}", text(&server.stderr));
    let bandwidth = table(&text(&client.stdout)).unwrap();
    assert!(bandwidth.header.ends_with("    CPU_Util[%]"), "{}", bandwidth.header);
    let share: f64 = bandwidth.rows[0][5].parse().unwrap();
    assert!((0.0..=100.0).contains(&share), "{:?}", bandwidth.rows[0]);

    let (server, client) = pair("read_lat", &["-d", &fabric("unsorted"), "-n", "20", "-U"]);
    assert!(client.status.success() && server.status.success(), "{}", text(&client.stderr));
    let output = text(&client.stdout);
    let samples: Vec<&str> = output.lines().skip_while(|line| *line != "#, usec").skip(1).take(19).collect();
    assert_eq!(samples.len(), 19, "{output}");
    for (index, sample) in samples.iter().enumerate() {
        let (number, value) = sample.split_once(", ").unwrap();
        assert_eq!(number, (index + 1).to_string());
        assert!(value.parse::<f64>().unwrap() > 0.0, "{sample}");
    }
    // As perftest: the header again after the samples, then the row.
    assert_eq!(output.matches(" #bytes").count(), 2, "{output}");
    let after_samples = &output[output.find("#, usec").unwrap()..];
    assert_eq!(table(after_samples).unwrap().rows.len(), 1, "{output}");
}
