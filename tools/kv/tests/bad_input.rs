//! Hostile clients: malformed frames, huge lengths, half-sent requests, floods, values over
//! the log's entry limit. Each gets an error or a closed connection; the server never
//! crashes, never stalls the others, never loses an acknowledged write.

mod common;

use common::{kv_unreplicated, redis_server, Client, Group};

#[test]
fn malformed_frames_get_redis_protocol_errors_and_a_close() {
    let (_redis, redis_port) = redis_server();
    let (_kv, kv_port) = kv_unreplicated();
    let frames: &[&[u8]] = &[b"*x\r\n", b"*1\r\n$536870913\r\n", b"*1\r\n+PING\r\n", b"SET \"unbalanced\r\n"];
    for frame in frames {
        let mut replies = Vec::new();
        for port in [kv_port, redis_port] {
            let mut client = Client::connect(port);
            client.send(frame);
            let reply = client.reply();
            assert!(client.closed(), "port {port} kept the connection after {frame:?}");
            replies.push(reply);
        }
        assert_eq!(
            String::from_utf8_lossy(&replies[0]),
            String::from_utf8_lossy(&replies[1]),
            "{:?}",
            String::from_utf8_lossy(frame)
        );
    }
    // The server lives on.
    assert_eq!(Client::connect(kv_port).request(&["PING"]), b"+PONG\r\n");
}

#[test]
fn half_sent_and_flooding_clients_do_not_stall_the_others() {
    let (_kv, port) = kv_unreplicated();
    let mut half = Client::connect(port);
    half.send(b"*3\r\n$3\r\nSET\r\n$4\r\nhalf\r\n$5\r\nva");
    // A flood of pipelined writes from a client that does not read its replies.
    let mut flood = Client::connect(port);
    let mut request = Vec::new();
    for index in 0..50_000 {
        request
            .extend_from_slice(format!("*3\r\n$3\r\nSET\r\n$5\r\nflood\r\n$5\r\n{index:05}\r\n").as_bytes());
    }
    let writer = std::thread::spawn(move || {
        flood.send(&request);
        flood
    });
    let mut other = Client::connect(port);
    for index in 0..100 {
        assert_eq!(other.request(&["SET", "mine", &index.to_string()]), b"+OK\r\n");
    }
    assert_eq!(other.request(&["GET", "mine"]), b"$2\r\n99\r\n");
    half.send(b"lue\r\n");
    assert_eq!(half.reply(), b"+OK\r\n");
    let mut flood = writer.join().unwrap();
    for _ in 0..50_000 {
        assert_eq!(flood.reply(), b"+OK\r\n");
    }
    assert_eq!(other.request(&["GET", "flood"]), b"$5\r\n49999\r\n");
    assert_eq!(other.request(&["GET", "half"]), b"$5\r\nvalue\r\n");
}

#[test]
fn a_value_over_the_entry_limit_is_refused_and_the_connection_goes_on() {
    let group = Group::start("limit", 3);
    let leader = group.ports[group.leader()];
    let mut client = Client::connect(leader);
    // Just over the entry (16 KiB slots): encoded, refused before the log.
    let big = "x".repeat(17 * 1024);
    let reply = String::from_utf8(client.request(&["SET", "big", &big])).unwrap();
    assert!(reply.starts_with("-ERR command of "), "{reply}");
    // Far over: skipped as it arrives, refused.
    let huge = "y".repeat(8 << 20);
    let reply = String::from_utf8(client.request(&["SET", "big", &huge])).unwrap();
    assert!(reply.starts_with("-ERR request exceeds"), "{reply}");
    assert_eq!(client.request(&["SET", "small", "v"]), b"+OK\r\n");
    assert_eq!(client.request(&["GET", "big"]), b"$-1\r\n");
    assert_eq!(client.request(&["GET", "small"]), b"$1\r\nv\r\n");
}

#[test]
fn pipelined_writes_through_the_log_are_all_acknowledged_and_kept() {
    let group = Group::start("pipeline", 3);
    let leader = group.ports[group.leader()];
    let mut client = Client::connect(leader);
    let mut request = Vec::new();
    for index in 0..5_000 {
        request.extend_from_slice(
            format!("*3\r\n$3\r\nSET\r\n$8\r\nkey{index:05}\r\n$3\r\n{:03}\r\n", index % 1000).as_bytes(),
        );
        if index % 7 == 0 {
            request.extend_from_slice(b"PING\r\n");
        }
    }
    client.send(&request);
    for index in 0..5_000 {
        assert_eq!(client.reply(), b"+OK\r\n", "write {index}");
        if index % 7 == 0 {
            assert_eq!(client.reply(), b"+PONG\r\n", "the PING after write {index}, in order");
        }
    }
    assert_eq!(client.request(&["DBSIZE"]), b":5000\r\n");
    assert_eq!(client.request(&["GET", "key04999"]), b"$3\r\n999\r\n");
}
