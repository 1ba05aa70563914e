//! Golden tests: our output read by the same parser as outputs captured from Debian's
//! perftest 4.5+0.17 on rxe0 (`tests/data/`), column for column.

mod support;

use support::{fabric, pair, table, text, Table};

fn fixture(name: &str) -> String {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{path}: {error}"))
}

/// Same header, same number of columns, every figure a number.
fn same_layout(ours: &Table, theirs: &Table) {
    assert_eq!(ours.header, theirs.header);
    assert_eq!(ours.rows.len(), theirs.rows.len());
    for (our_row, their_row) in ours.rows.iter().zip(&theirs.rows) {
        assert_eq!(our_row.len(), their_row.len(), "{our_row:?} vs {their_row:?}");
        for field in our_row {
            assert!(field.parse::<f64>().is_ok(), "{field:?} in {our_row:?}");
        }
    }
}

/// The lines of the info block, by their label (the text before the colon).
fn info_labels(output: &str) -> Vec<String> {
    let block: Vec<&str> = output
        .lines()
        .skip_while(|line| !line.starts_with("-----"))
        .skip(2)
        .take_while(|line| !line.starts_with("-----"))
        .collect();
    block.iter().filter_map(|line| line.split(':').next()).map(|label| label.trim().to_string()).collect()
}

#[test]
fn latency_table_parses_like_perftests() {
    let theirs = fixture("ib_write_lat.client.txt");
    let (_, client) = pair("write_lat", &["-d", &fabric("layout_lat"), "-n", "50"]);
    let ours = text(&client.stdout);
    same_layout(&table(&ours).unwrap(), &table(&theirs).unwrap());
    // Every line of perftest's info block is in ours, in the same order (but for the GID
    // index, which only RoCE and InfiniBand devices have).
    let their_labels: Vec<String> =
        info_labels(&theirs).into_iter().filter(|label| label != "GID index").collect();
    let our_labels = info_labels(&ours);
    let mut position = 0;
    for label in &their_labels {
        let found = our_labels[position..].iter().position(|ours| ours == label);
        let found = found.unwrap_or_else(|| panic!("{label:?} missing from {our_labels:?}"));
        position += found + 1;
    }
    // The address lines have perftest's fields.
    for line in ours.lines().filter(|line| line.contains(" address: ")) {
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            [words[1], words[2], words[4], words[6], words[8], words[10]],
            ["address:", "LID", "QPN", "PSN", "RKey", "VAddr"]
        );
    }
}

#[test]
fn bandwidth_table_parses_like_perftests() {
    let theirs = fixture("ib_write_bw.client.txt");
    let (server, client) = pair("write_bw", &["-d", &fabric("layout_bw"), "-n", "50", "-s", "65536"]);
    same_layout(&table(&text(&client.stdout)).unwrap(), &table(&theirs).unwrap());
    same_layout(&table(&text(&server.stdout)).unwrap(), &table(&theirs).unwrap());
}

#[test]
fn duration_tables_parse_like_perftests() {
    let theirs = fixture("ib_write_lat_duration.client.txt");
    let (_, client) = pair("write_lat", &["-d", &fabric("layout_duration"), "-D", "1"]);
    same_layout(&table(&text(&client.stdout)).unwrap(), &table(&theirs).unwrap());

    let theirs = fixture("ib_write_bw_duration_gbits.client.txt");
    let (_, client) = pair("write_bw", &["-d", &fabric("layout_gbits"), "-D", "1", "--report_gbits"]);
    same_layout(&table(&text(&client.stdout)).unwrap(), &table(&theirs).unwrap());
}

#[test]
fn the_read_server_prints_what_perftests_does() {
    let theirs = fixture("ib_read_lat.server.txt");
    let (server, _) = pair("read_lat", &["-d", &fabric("layout_read_server"), "-n", "20"]);
    let ours = text(&server.stdout);
    assert!(table(&theirs).is_none() && table(&ours).is_none());
    let address = |output: &str| {
        let line = output.lines().find(|line| line.starts_with(" local address:")).unwrap().to_string();
        line.split_whitespace().step_by(2).map(str::to_string).collect::<Vec<_>>()
    };
    // " local address: LID x QPN x PSN x OUT x RKey x VAddr x": the same labels.
    assert_eq!(address(&ours), address(&theirs));
}
