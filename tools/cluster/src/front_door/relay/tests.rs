use super::*;

const SET_A: &[u8] = b"*3\r\n$3\r\nSET\r\n$1\r\na\r\n$1\r\n1\r\n";
const SET_B: &[u8] = b"*3\r\n$3\r\nSET\r\n$1\r\nb\r\n$1\r\n2\r\n";
const GET_A: &[u8] = b"*2\r\n$3\r\nGET\r\n$1\r\na\r\n";
const GET_C: &[u8] = b"*2\r\n$3\r\nGET\r\n$1\r\nc\r\n";
const MOVED: &[u8] = b"-MOVED 0 127.0.0.1:7002\r\n";

/// GET is the only read here.
fn relay() -> Relay {
    Relay::new(Box::new(|args: Args<'_>| args.get(0).eq_ignore_ascii_case(b"get")))
}

fn take(buffer: &mut Vec<u8>) -> Vec<u8> {
    std::mem::take(buffer)
}

fn uncertain() -> Vec<u8> {
    error_reply(UNCERTAIN)
}

#[test]
fn requests_wait_for_an_upstream_then_go_whole() {
    let mut relay = relay();
    relay.client_bytes(&SET_A[..7]);
    assert!(!relay.wants_upstream(), "half a request is not a request");
    relay.client_bytes(&SET_A[7..]);
    relay.client_bytes(b"PING\r\n\r\n");
    assert!(relay.wants_upstream());
    assert!(relay.upstream_out().is_empty());
    relay.upstream_connected();
    // The blank inline line gets no reply from a server: it is not forwarded.
    assert_eq!(take(relay.upstream_out()), [SET_A, b"PING\r\n"].concat());
    assert_eq!(relay.outstanding(), 2);
    relay.upstream_bytes(b"+OK\r\n+PO").unwrap();
    assert_eq!(take(relay.client_out()), b"+OK\r\n");
    relay.upstream_bytes(b"NG\r\n").unwrap();
    assert_eq!(take(relay.client_out()), b"+PONG\r\n");
    assert_eq!(relay.outstanding(), 0);
    // Once up, requests go at once.
    relay.client_bytes(GET_A);
    assert_eq!(take(relay.upstream_out()), GET_A);
}

#[test]
fn a_lost_leader_leaves_writes_uncertain_and_sends_reads_again() {
    let mut relay = relay();
    relay.upstream_connected();
    relay.client_bytes(&[SET_A, SET_B, GET_C].concat());
    take(relay.upstream_out());
    // One answer whole, one cut in the middle.
    relay.upstream_bytes(b"+OK\r\n+O").unwrap();
    relay.upstream_lost();
    assert_eq!(take(relay.client_out()), [b"+OK\r\n".to_vec(), uncertain()].concat());
    assert!(relay.wants_upstream(), "the read waits for the next leader");
    relay.upstream_connected();
    assert_eq!(take(relay.upstream_out()), GET_C);
    relay.upstream_bytes(b"$-1\r\n").unwrap();
    assert_eq!(take(relay.client_out()), b"$-1\r\n");
    assert_eq!(relay.take_counts(), Counts { uncertain: 1, resent: 1, errors: 1 });
}

#[test]
fn a_read_before_an_uncertain_write_is_not_run_again() {
    // Run again, the GET could see the SET that came after it: the pipeline would have
    // run out of order.
    let mut relay = relay();
    relay.upstream_connected();
    relay.client_bytes(&[GET_A, SET_A, GET_C].concat());
    take(relay.upstream_out());
    relay.upstream_lost();
    assert_eq!(take(relay.client_out()), [uncertain(), uncertain()].concat());
    relay.upstream_connected();
    assert_eq!(take(relay.upstream_out()), GET_C);
    assert_eq!(relay.take_counts(), Counts { uncertain: 2, resent: 1, errors: 2 });
}

#[test]
fn requests_a_replica_did_not_apply_go_to_the_next_leader() {
    let mut relay = relay();
    relay.upstream_connected();
    relay.client_bytes(&[SET_A, SET_B].concat());
    take(relay.upstream_out());
    relay.upstream_bytes(MOVED).unwrap();
    relay.client_bytes(GET_A);
    assert!(relay.upstream_out().is_empty(), "nothing more goes to a replica that does not lead");
    assert!(!relay.must_reroute(), "one request there is still unanswered");
    relay.upstream_bytes(b"-CLUSTERDOWN no leader is known yet\r\n").unwrap();
    assert!(relay.must_reroute());
    relay.upstream_lost();
    assert!(relay.client_out().is_empty());
    relay.upstream_connected();
    assert_eq!(take(relay.upstream_out()), [SET_A, SET_B, GET_A].concat());
    relay.upstream_bytes(b"+OK\r\n+OK\r\n$1\r\n1\r\n").unwrap();
    assert_eq!(take(relay.client_out()), b"+OK\r\n+OK\r\n$1\r\n1\r\n");
    assert_eq!(relay.take_counts(), Counts { uncertain: 0, resent: 2, errors: 0 });
}

#[test]
fn a_refused_request_is_not_run_after_one_behind_it_ran() {
    // The replica refused the first SET and ran the second (it led again in between):
    // sending the first again would run it after the second.
    let mut relay = relay();
    relay.upstream_connected();
    relay.client_bytes(&[SET_A, SET_B].concat());
    take(relay.upstream_out());
    relay.upstream_bytes(MOVED).unwrap();
    assert!(relay.client_out().is_empty(), "the refusal waits to see what happens behind it");
    relay.upstream_bytes(b"+OK\r\n").unwrap();
    assert_eq!(take(relay.client_out()), [MOVED, b"+OK\r\n"].concat());
    assert!(!relay.wants_upstream());
}

#[test]
fn a_protocol_error_comes_after_the_replies_before_it_then_the_client_is_closed() {
    let mut relay = relay();
    relay.upstream_connected();
    relay.client_bytes(&[SET_A, b"*1\r\n!oops\r\n"].concat());
    assert_eq!(take(relay.upstream_out()), SET_A);
    assert!(!relay.finished());
    relay.client_bytes(SET_B);
    assert!(relay.upstream_out().is_empty(), "nothing is read after a protocol error");
    relay.upstream_bytes(b"+OK\r\n").unwrap();
    assert_eq!(take(relay.client_out()), b"+OK\r\n-ERR Protocol error: expected '$', got '!'\r\n");
    assert!(relay.finished());
}

#[test]
fn a_request_over_the_limit_is_refused_without_being_kept() {
    let mut relay = relay();
    relay.client_bytes(format!("*2\r\n$3\r\nGET\r\n${MAX_REQUEST_BYTES}\r\n").as_bytes());
    let chunk = vec![b'x'; 1 << 20];
    for _ in 0..MAX_REQUEST_BYTES / chunk.len() {
        relay.client_bytes(&chunk);
        assert!(relay.inbox.len() < 2 << 20, "a large request is skipped, not buffered");
    }
    relay.client_bytes(b"\r\n");
    assert!(!relay.wants_upstream());
    let said = take(relay.client_out());
    assert!(String::from_utf8_lossy(&said).starts_with("-ERR request over the front door's limit"));
    assert!(relay.finished());
}

#[test]
fn a_malformed_or_unasked_reply_is_an_error() {
    let mut relay = relay();
    relay.upstream_connected();
    relay.client_bytes(SET_A);
    assert!(relay.upstream_bytes(b"?what\r\n").is_err());
    let mut relay = self::relay();
    relay.upstream_connected();
    assert!(relay.upstream_bytes(b"+OK\r\n").is_err(), "a reply to nothing");
}

#[test]
fn a_read_the_replica_left_uncertain_is_sent_again_a_write_is_not() {
    let replica_uncertain: &[u8] =
        b"-UNCERTAIN leadership changed before the command was known committed\r\n";
    let mut relay = relay();
    relay.upstream_connected();
    relay.client_bytes(&[SET_A, GET_A].concat());
    take(relay.upstream_out());
    relay.upstream_bytes(&[replica_uncertain, replica_uncertain].concat()).unwrap();
    assert_eq!(take(relay.client_out()), replica_uncertain, "the write's outcome is the client's to know");
    assert!(relay.must_reroute());
    relay.upstream_lost();
    relay.upstream_connected();
    assert_eq!(take(relay.upstream_out()), GET_A);
    assert_eq!(relay.take_counts(), Counts { uncertain: 0, resent: 1, errors: 1 });
}

#[test]
fn reads_that_ran_behind_a_refused_request_run_again_after_it() {
    // A leader that lost leadership for a moment: the first GET refused, the second run.
    // Passing the second on and sending the first again would run them out of order.
    let mut relay = relay();
    relay.upstream_connected();
    relay.client_bytes(&[GET_A, GET_C].concat());
    take(relay.upstream_out());
    relay.upstream_bytes(b"-CLUSTERDOWN no leader is known yet\r\n$1\r\nx\r\n").unwrap();
    assert!(relay.client_out().is_empty());
    assert!(relay.must_reroute());
    relay.upstream_lost();
    relay.upstream_connected();
    assert_eq!(take(relay.upstream_out()), [GET_A, GET_C].concat());
    relay.upstream_bytes(b"$1\r\n1\r\n$1\r\ny\r\n").unwrap();
    assert_eq!(take(relay.client_out()), b"$1\r\n1\r\n$1\r\ny\r\n");
    assert_eq!(relay.take_counts(), Counts { uncertain: 0, resent: 2, errors: 0 });
}

#[test]
fn a_read_that_ran_before_a_write_that_ran_is_kept() {
    // [GET a refused, GET c ran, SET a ran]: the first GET cannot go again (the SET ran);
    // the second keeps its answer (running it again would put it after the SET).
    let mut relay = relay();
    relay.upstream_connected();
    relay.client_bytes(&[GET_A, GET_C, SET_A].concat());
    take(relay.upstream_out());
    relay.upstream_bytes(b"-CLUSTERDOWN no leader is known yet\r\n$1\r\nx\r\n+OK\r\n").unwrap();
    assert_eq!(take(relay.client_out()), b"-CLUSTERDOWN no leader is known yet\r\n$1\r\nx\r\n+OK\r\n");
    assert!(!relay.wants_upstream());
}
