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
    assert!(client.status.success(), "{}", text(&client.stderr));
    assert!(server.status.success(), "{}", text(&server.stderr));
    for output in [&client, &server] {
        let row = &table(&text(&output.stdout)).unwrap().rows[0];
        assert_eq!(row[0], "256");
        assert!(row[1].parse::<u64>().unwrap() > 0, "{row:?}");
    }
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
}

#[test]
fn a_client_that_goes_silent_after_its_hello_is_dropped() {
    use std::io::{BufRead as _, Write as _};
    let port = free_port();
    let server = support::spawn(&["write_lat", "-d", &fabric("silent"), "-p", &port.to_string()]);
    let mut stream = support::connect(port);
    // Answer the server's hello with the same hello (a valid one), then say nothing more.
    let mut hello = String::new();
    std::io::BufReader::new(stream.try_clone().unwrap()).read_line(&mut hello).unwrap();
    stream.write_all(hello.as_bytes()).unwrap();
    let server = support::finish(server, std::time::Duration::from_secs(90));
    let line = one_line_failure(&server, "usec-perftest (write_lat server): ");
    assert!(line.contains("sent nothing"), "{line}");
    drop(stream);
}
