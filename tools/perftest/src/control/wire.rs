//! perftest's out-of-band messages, byte for byte, as Debian 12's perftest 4.5+0.17 (which
//! calls itself version 6.06) writes and reads them: pure encoders and decoders, no IO.
//!
//! Every message perftest sends over its TCP connection has a fixed size, and every step is
//! a lock-step exchange: the client writes, then reads; the server reads, then writes
//! (`ctx_xchg_data` and `ctx_hand_shake` in `src/perftest_communication.c`). In order:
//!
//! 1. the version, [`VERSION_BYTES`] bytes: a NUL-padded string, `6.06`; a peer older than
//!    5.70 is refused in perftest's words (`exchange_versions`,
//!    `check_version_compatibility`);
//! 2. the page size and the cache line size, a big-endian 32-bit integer each
//!    (`check_sys_data`); both sides take the larger of each;
//! 3. the port's MTU, 2 bytes: its `ibv_mtu` number in decimal and a NUL (`check_mtu`); both
//!    sides use the smaller;
//! 4. "key" messages ([`KeyMessage`]), one per QP and more of them as barriers:
//!    `LID:OUT_READS:QPN:PSN:RKEY:VADDR:SRQN` in hex, NUL-terminated, 59 bytes, or 108 bytes
//!    with the 16 GID bytes before the SRQN when routing uses GIDs (`KEY_PRINT_FMT`,
//!    `KEY_PRINT_FMT_GID`, `ethernet_write_keys`, `ethernet_read_keys`);
//! 5. the bandwidth report of the bandwidth tests ([`BandwidthReport`]): the size, the
//!    iterations, the peak and average bandwidth and the message rate, one 8-byte big-endian
//!    exchange each (`xchg_bw_reports`);
//! 6. [`DONE`], written and never read (`ctx_close_connection`).
//!
//! Two usec-perftest processes recognise each other by [`USEC_MARK`] after the NUL of the
//! version (perftest reads the version with `atof`, which stops at the NUL) and then also
//! exchange frames: a big-endian 32-bit length and that many bytes, never more than the
//! reader's bound ([`frame_length`]).

use thiserror::Error;

/// Bytes of the version message (perftest's `MAX_VERSION`).
pub const VERSION_BYTES: usize = 16;
/// The perftest version whose exchange this module speaks.
pub const PERFTEST_VERSION: &str = "6.06";
/// perftest refuses peers older than this (`check_version_compatibility`).
pub const OLDEST_COMPATIBLE_VERSION: f64 = 5.70;
/// What follows the NUL of a usec-perftest's version; the digit is the frames' version.
pub const USEC_MARK: &[u8] = b"usec-pt/1";
/// A key message without a GID (`KEY_MSG_SIZE`).
pub const KEY_BYTES: usize = 59;
/// A key message with a GID (`KEY_MSG_SIZE_GID`).
pub const KEY_BYTES_WITH_GID: usize = 108;
/// Bytes of the MTU message (perftest sends `sizeof(char[2])`).
pub const MTU_BYTES: usize = 2;
/// The closing message, NUL included (`sizeof "done"`).
pub const DONE: &[u8; 5] = b"done\0";
/// Bytes of a frame's length.
pub const FRAME_HEADER_BYTES: usize = 4;

/// A message that is not what perftest writes.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum WireError {
    /// A key message without its terminating NUL.
    #[error("a key message of {len} bytes without its terminating NUL")]
    Unterminated {
        /// Its length.
        len: usize,
    },
    /// A key message with the wrong number of fields.
    #[error("a key message with {found} fields where {expected} were due: {text:?}")]
    FieldCount {
        /// Fields found.
        found: usize,
        /// Fields due.
        expected: usize,
        /// The message, up to its NUL.
        text: String,
    },
    /// A field that is not hex or does not fit.
    #[error("key message field {name} is {text:?}, not a hex number that fits {bits} bits")]
    Field {
        /// The field's name.
        name: &'static str,
        /// What it held.
        text: String,
        /// Its width.
        bits: u32,
    },
    /// A key message of the wrong length.
    #[error("a key message of {found} bytes where {expected} were due")]
    Length {
        /// Bytes given.
        found: usize,
        /// Bytes due.
        expected: usize,
    },
    /// A frame longer than the reader accepts.
    #[error("a message of {announced} bytes, more than the {bound} accepted")]
    FrameTooLong {
        /// The length announced.
        announced: u64,
        /// The most accepted.
        bound: usize,
    },
}

/// The peer's version message, read.
#[derive(Clone, Debug, PartialEq)]
pub struct Version {
    /// The text up to the first NUL, as sent (lossily UTF-8).
    pub text: String,
    /// Its value as perftest reads it (`atof`: the longest leading number, else 0).
    pub number: f64,
    /// Whether [`USEC_MARK`] followed the NUL: the peer is usec-perftest.
    pub usec: bool,
}

impl Version {
    /// Whether perftest would work with this peer (it refuses versions below 5.70).
    pub fn compatible(&self) -> bool {
        self.number >= OLDEST_COMPATIBLE_VERSION
    }
}

/// This side's version message: perftest's version, then the usec mark.
pub fn encode_version() -> [u8; VERSION_BYTES] {
    let mut bytes = [0u8; VERSION_BYTES];
    let version = PERFTEST_VERSION.as_bytes();
    bytes[..version.len()].copy_from_slice(version);
    let mark_at = version.len() + 1;
    bytes[mark_at..mark_at + USEC_MARK.len()].copy_from_slice(USEC_MARK);
    bytes
}

/// Reads a peer's version message; anything decodes (garbage is version 0).
pub fn decode_version(bytes: &[u8; VERSION_BYTES]) -> Version {
    let end = bytes.iter().position(|&byte| byte == 0).unwrap_or(VERSION_BYTES);
    let text = String::from_utf8_lossy(&bytes[..end]).into_owned();
    let after = &bytes[(end + 1).min(VERSION_BYTES)..];
    let usec = after.starts_with(USEC_MARK);
    Version { number: leading_number(&text), text, usec }
}

/// C's `atof` for what versions look like: leading blanks, a sign, digits, a fraction and
/// an exponent, as far as they go; 0 when no number starts the text.
fn leading_number(text: &str) -> f64 {
    let trimmed = text.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let bytes = trimmed.as_bytes();
    let digits_from = |mut at: usize| {
        while at < bytes.len() && bytes[at].is_ascii_digit() {
            at += 1;
        }
        at
    };
    let mut end = usize::from(matches!(bytes.first(), Some(b'+' | b'-')));
    let integer_end = digits_from(end);
    let mut fraction_end = integer_end;
    if bytes.get(integer_end) == Some(&b'.') {
        fraction_end = digits_from(integer_end + 1);
    }
    let mantissa_digits = (integer_end - end) + fraction_end.saturating_sub(integer_end + 1);
    if mantissa_digits == 0 {
        return 0.0;
    }
    end = fraction_end;
    if matches!(bytes.get(end), Some(b'e' | b'E')) {
        let sign = usize::from(matches!(bytes.get(end + 1), Some(b'+' | b'-')));
        let exponent_end = digits_from(end + 1 + sign);
        if exponent_end > end + 1 + sign {
            end = exponent_end;
        }
    }
    trimmed[..end].parse().unwrap_or(0.0)
}

/// A big-endian 32-bit integer (the page and cache line sizes).
pub fn encode_u32(value: u32) -> [u8; 4] {
    value.to_be_bytes()
}

/// Reads [`encode_u32`].
pub fn decode_u32(bytes: [u8; 4]) -> u32 {
    u32::from_be_bytes(bytes)
}

/// The MTU message: `number` (the `ibv_mtu` value, 1 for 256 bytes up to 5 for 4096) in
/// decimal and a NUL.
pub fn encode_mtu(number: u8) -> [u8; MTU_BYTES] {
    assert!((1..=5).contains(&number), "ibv_mtu {number} is not 1..=5");
    [b'0' + number, 0]
}

/// Reads the peer's MTU message as perftest does (`strtol`, then `valid_mtu_size`):
/// `None` for anything but 1..=5, which perftest then ignores.
pub fn decode_mtu(bytes: [u8; MTU_BYTES]) -> Option<u8> {
    let digits: String =
        bytes.iter().take_while(|byte| byte.is_ascii_digit()).map(|&byte| byte as char).collect();
    digits.parse::<u8>().ok().filter(|number| (1..=5).contains(number))
}

/// One QP's "key": what the peer needs to connect to it and to reach its buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KeyMessage {
    /// The port's LID (0 on RoCE).
    pub lid: u16,
    /// READs and atomics the QP lets in flight (1 for WRITE and SEND tests).
    pub out_reads: u16,
    /// QP number (24 bits).
    pub qpn: u32,
    /// First packet sequence number (24 bits).
    pub psn: u32,
    /// Remote key of the buffer.
    pub rkey: u32,
    /// Address of the buffer the peer's operations target.
    pub vaddr: u64,
    /// The port's GID, sent when routing uses GIDs.
    pub gid: Option<[u8; 16]>,
    /// The shared receive queue number (XRC and DC only; 0 here).
    pub srqn: u32,
}

/// The fields before the GID, their widths in bits (perftest's `%04x:%04x:%06x:%06x:%08x:%016llx`).
const LEADING_FIELDS: [(&str, u32); 6] =
    [("LID", 16), ("OUT_READS", 16), ("QPN", 24), ("PSN", 24), ("RKEY", 32), ("VADDR", 64)];

impl KeyMessage {
    /// The encoded length, with or without a GID.
    pub fn encoded_len(with_gid: bool) -> usize {
        if with_gid {
            KEY_BYTES_WITH_GID
        } else {
            KEY_BYTES
        }
    }

    /// The message, exactly [`KeyMessage::encoded_len`] bytes.
    pub fn encode(&self) -> Vec<u8> {
        assert!(self.qpn < 1 << 24 && self.psn < 1 << 24, "QPN and PSN are 24-bit: {self:?}");
        let mut text = format!(
            "{:04x}:{:04x}:{:06x}:{:06x}:{:08x}:{:016x}",
            self.lid, self.out_reads, self.qpn, self.psn, self.rkey, self.vaddr
        );
        match self.gid {
            None => text.push_str(&format!(":{:08x}", self.srqn)),
            Some(gid) => {
                for byte in gid {
                    text.push_str(&format!(":{byte:02x}"));
                }
                text.push_str(&format!(":{:08x}:", self.srqn));
            }
        }
        let mut bytes = text.into_bytes();
        bytes.push(0);
        assert_eq!(bytes.len(), KeyMessage::encoded_len(self.gid.is_some()), "fixed widths");
        bytes
    }

    /// Reads a key message of [`KeyMessage::encoded_len`]`(with_gid)` bytes. Fields are hex
    /// numbers separated by `:` up to a NUL; their width may exceed perftest's minimum but
    /// their values must fit.
    pub fn decode(bytes: &[u8], with_gid: bool) -> Result<KeyMessage, WireError> {
        let expected = KeyMessage::encoded_len(with_gid);
        if bytes.len() != expected {
            return Err(WireError::Length { found: bytes.len(), expected });
        }
        let end =
            bytes.iter().position(|&byte| byte == 0).ok_or(WireError::Unterminated { len: bytes.len() })?;
        let text = String::from_utf8_lossy(&bytes[..end]);
        // The GID form ends with a ':', which leaves an empty last field.
        let body = if with_gid { text.strip_suffix(':').unwrap_or(&text) } else { &text };
        let fields: Vec<&str> = body.split(':').collect();
        let expected_fields = LEADING_FIELDS.len() + if with_gid { 17 } else { 1 };
        if fields.len() != expected_fields {
            return Err(WireError::FieldCount {
                found: fields.len(),
                expected: expected_fields,
                text: text.into_owned(),
            });
        }
        let mut leading = [0u64; 6];
        for (slot, (&(name, bits), field)) in leading.iter_mut().zip(LEADING_FIELDS.iter().zip(&fields)) {
            *slot = hex_field(name, field, bits)?;
        }
        let gid = if with_gid {
            let mut gid = [0u8; 16];
            for (byte, field) in gid.iter_mut().zip(&fields[6..22]) {
                *byte = hex_field("GID", field, 8)? as u8;
            }
            Some(gid)
        } else {
            None
        };
        let srqn = hex_field("SRQN", fields[fields.len() - 1], 32)? as u32;
        let [lid, out_reads, qpn, psn, rkey, vaddr] = leading;
        Ok(KeyMessage {
            lid: lid as u16,
            out_reads: out_reads as u16,
            qpn: qpn as u32,
            psn: psn as u32,
            rkey: rkey as u32,
            vaddr,
            gid,
            srqn,
        })
    }
}

/// One hex field of at most `bits` bits.
fn hex_field(name: &'static str, text: &str, bits: u32) -> Result<u64, WireError> {
    let bad = || WireError::Field { name, text: text.chars().take(40).collect(), bits };
    if text.is_empty() || text.len() > 16 || !text.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        return Err(bad());
    }
    let value = u64::from_str_radix(text, 16).map_err(|_| bad())?;
    if bits < 64 && value >> bits != 0 {
        return Err(bad());
    }
    Ok(value)
}

/// The bandwidth test's report, as `xchg_bw_reports` exchanges it: five 8-byte big-endian
/// fields, one exchange each (the per-port fields are exchanged only with
/// `--report-per-port`, which this tool does not take).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BandwidthReport {
    /// Message size.
    pub size: u64,
    /// Messages counted.
    pub iterations: u64,
    /// Peak bandwidth, in the sender's units.
    pub peak: f64,
    /// Average bandwidth, in the sender's units.
    pub average: f64,
    /// Millions of messages per second.
    pub msg_rate_mpps: f64,
}

impl BandwidthReport {
    /// The report of a side that measured nothing (perftest's server sends what its report
    /// holds: nothing the client reads).
    pub fn none() -> BandwidthReport {
        BandwidthReport { size: 0, iterations: 0, peak: 0.0, average: 0.0, msg_rate_mpps: 0.0 }
    }
}

/// Bytes of one report field.
pub const REPORT_FIELD_BYTES: usize = 8;

impl BandwidthReport {
    /// The five fields, in exchange order.
    pub fn fields(&self) -> [[u8; REPORT_FIELD_BYTES]; 5] {
        [
            self.size.to_be_bytes(),
            self.iterations.to_be_bytes(),
            self.peak.to_bits().to_be_bytes(),
            self.average.to_bits().to_be_bytes(),
            self.msg_rate_mpps.to_bits().to_be_bytes(),
        ]
    }

    /// Reads [`BandwidthReport::fields`].
    pub fn from_fields(fields: [[u8; REPORT_FIELD_BYTES]; 5]) -> BandwidthReport {
        let float = |bytes| f64::from_bits(u64::from_be_bytes(bytes));
        BandwidthReport {
            size: u64::from_be_bytes(fields[0]),
            iterations: u64::from_be_bytes(fields[1]),
            peak: float(fields[2]),
            average: float(fields[3]),
            msg_rate_mpps: float(fields[4]),
        }
    }
}

/// A frame: the payload's length, big-endian, then the payload.
pub fn encode_frame(payload: &[u8]) -> Vec<u8> {
    let length = u32::try_from(payload.len()).expect("frames are far below 4 GiB");
    let mut bytes = Vec::with_capacity(FRAME_HEADER_BYTES + payload.len());
    bytes.extend_from_slice(&length.to_be_bytes());
    bytes.extend_from_slice(payload);
    bytes
}

/// The payload length a frame header announces, refused above `bound`.
pub fn frame_length(header: [u8; FRAME_HEADER_BYTES], bound: usize) -> Result<usize, WireError> {
    let announced = u32::from_be_bytes(header);
    match usize::try_from(announced) {
        Ok(length) if length <= bound => Ok(length),
        _ => Err(WireError::FrameTooLong { announced: u64::from(announced), bound }),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use proptest::test_runner::RngSeed;

    use super::*;

    /// A key message as Debian's perftest 4.5+0.17 wrote it on rxe0 (`ib_write_lat -x 0`),
    /// with the GID of `fe80::5054:ff:fe12:3456`.
    const PERFTEST_KEY_WITH_GID: &[u8] = b"0000:0001:000011:a1b2c3:00001234:00007f0012345000:\
fe:80:00:00:00:00:00:00:50:54:00:ff:fe:12:34:56:00000000:\0";

    #[test]
    fn perftests_key_message_reads_and_writes_back_identically() {
        assert_eq!(PERFTEST_KEY_WITH_GID.len(), KEY_BYTES_WITH_GID);
        let key = KeyMessage::decode(PERFTEST_KEY_WITH_GID, true).unwrap();
        assert_eq!(
            key,
            KeyMessage {
                lid: 0,
                out_reads: 1,
                qpn: 0x11,
                psn: 0xa1b2c3,
                rkey: 0x1234,
                vaddr: 0x7f00_1234_5000,
                gid: Some([0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0x50, 0x54, 0, 0xff, 0xfe, 0x12, 0x34, 0x56]),
                srqn: 0,
            }
        );
        assert_eq!(key.encode(), PERFTEST_KEY_WITH_GID);
        let short = b"0001:0010:000011:a1b2c3:00001234:00007f0012345000:00000000\0";
        assert_eq!(short.len(), KEY_BYTES);
        let key = KeyMessage::decode(short, false).unwrap();
        assert_eq!((key.lid, key.out_reads, key.gid), (1, 16, None));
        assert_eq!(key.encode(), short);
    }

    #[test]
    fn malformed_key_messages_are_refused_with_the_reason() {
        let good = KeyMessage::decode(PERFTEST_KEY_WITH_GID, true).unwrap().encode();
        assert!(matches!(KeyMessage::decode(&good, false), Err(WireError::Length { .. })));
        assert!(matches!(KeyMessage::decode(&[b'a'; KEY_BYTES], false), Err(WireError::Unterminated { .. })));
        let mut wide_qpn = b"0000:0001:1000000:a1b2c3:00001234:00007f0012345000:0000000\0".to_vec();
        assert_eq!(wide_qpn.len(), KEY_BYTES);
        assert!(matches!(
            KeyMessage::decode(&wide_qpn, false),
            Err(WireError::Field { name: "QPN", bits: 24, .. })
        ));
        wide_qpn[5] = b'g';
        assert!(matches!(
            KeyMessage::decode(&wide_qpn, false),
            Err(WireError::Field { name: "OUT_READS", .. })
        ));
        let mut few = vec![b'0'; KEY_BYTES];
        few[KEY_BYTES - 1] = 0;
        assert!(matches!(KeyMessage::decode(&few, false), Err(WireError::FieldCount { found: 1, .. })));
        // A version message read where a key was due (a peer out of step).
        let mut version = encode_version().to_vec();
        version.resize(KEY_BYTES, 0);
        assert!(KeyMessage::decode(&version, false).is_err());
    }

    #[test]
    fn versions_read_as_atof_reads_them() {
        let ours = decode_version(&encode_version());
        assert_eq!((ours.text.as_str(), ours.number, ours.usec), ("6.06", 6.06, true));
        assert!(ours.compatible());
        let perftest = |text: &str| {
            let mut bytes = [0u8; VERSION_BYTES];
            bytes[..text.len()].copy_from_slice(text.as_bytes());
            decode_version(&bytes)
        };
        assert_eq!(perftest("6.06").number, 6.06);
        assert!(!perftest("6.06").usec);
        assert!(!perftest("5.60").compatible());
        assert!(perftest("5.70").compatible());
        assert_eq!(perftest("  7.1beta").number, 7.1);
        assert_eq!(perftest("1e1x").number, 10.0);
        assert_eq!(perftest("-").number, 0.0);
        assert_eq!(perftest(".").number, 0.0);
        assert_eq!(perftest("").number, 0.0);
        assert_eq!(perftest("GET / HTTP/1.1\r\n").number, 0.0);
        assert!(!decode_version(&[0xff; VERSION_BYTES]).compatible());
    }

    #[test]
    fn mtus_are_a_digit_and_a_nul() {
        assert_eq!(encode_mtu(3), *b"3\0");
        for number in 1..=5 {
            assert_eq!(decode_mtu(encode_mtu(number)), Some(number));
        }
        assert_eq!(decode_mtu(*b"0\0"), None);
        assert_eq!(decode_mtu(*b"6\0"), None);
        assert_eq!(decode_mtu(*b"x3"), None);
        assert_eq!(decode_mtu(*b"03"), Some(3));
    }

    #[test]
    fn frames_are_bounded_before_anything_is_read() {
        let frame = encode_frame(b"hello");
        assert_eq!(&frame[..4], &[0, 0, 0, 5]);
        assert_eq!(frame_length(frame[..4].try_into().unwrap(), 5), Ok(5));
        assert_eq!(
            frame_length([0xff; 4], 1 << 20),
            Err(WireError::FrameTooLong { announced: u64::from(u32::MAX), bound: 1 << 20 })
        );
    }

    fn seeded(cases: u32) -> ProptestConfig {
        let mut config = ProptestConfig::with_cases(cases);
        if config.rng_seed == RngSeed::Random {
            config.rng_seed = RngSeed::Fixed(0x5EED_0000_0013);
        }
        eprintln!("proptest seed {} (set PROPTEST_RNG_SEED to change it)", config.rng_seed);
        config
    }

    fn any_key() -> impl Strategy<Value = KeyMessage> {
        (
            any::<u16>(),
            any::<u16>(),
            0u32..1 << 24,
            0u32..1 << 24,
            any::<u32>(),
            any::<u64>(),
            proptest::option::of(any::<[u8; 16]>()),
            any::<u32>(),
        )
            .prop_map(|(lid, out_reads, qpn, psn, rkey, vaddr, gid, srqn)| KeyMessage {
                lid,
                out_reads,
                qpn,
                psn,
                rkey,
                vaddr,
                gid,
                srqn,
            })
    }

    proptest! {
        #![proptest_config(seeded(512))]

        #[test]
        fn key_messages_round_trip_at_perftests_fixed_length(key in any_key()) {
            let bytes = key.encode();
            prop_assert_eq!(bytes.len(), KeyMessage::encoded_len(key.gid.is_some()));
            prop_assert_eq!(KeyMessage::decode(&bytes, key.gid.is_some()), Ok(key));
            // Upper-case hex (another writer's printf) reads the same.
            let upper: Vec<u8> = bytes.iter().map(u8::to_ascii_uppercase).collect();
            prop_assert_eq!(KeyMessage::decode(&upper, key.gid.is_some()), Ok(key));
        }

        #[test]
        fn arbitrary_bytes_never_panic_and_what_decodes_re_encodes(
            bytes in proptest::collection::vec(any::<u8>(), KEY_BYTES..=KEY_BYTES_WITH_GID),
            with_gid in any::<bool>(),
        ) {
            if let Ok(key) = KeyMessage::decode(&bytes, with_gid) {
                // Whatever was accepted is a key this side can send back.
                prop_assert_eq!(KeyMessage::decode(&key.encode(), with_gid), Ok(key));
            }
        }

        #[test]
        fn corrupting_one_byte_of_a_key_never_panics(
            key in any_key(),
            at in any::<prop::sample::Index>(),
            byte in any::<u8>(),
        ) {
            let mut bytes = key.encode();
            let at = at.index(bytes.len());
            bytes[at] = byte;
            let _ = KeyMessage::decode(&bytes, key.gid.is_some());
        }

        #[test]
        fn reports_round_trip(
            size in any::<u64>(),
            iterations in any::<u64>(),
            peak in any::<f64>(),
            average in any::<f64>(),
            rate in any::<f64>(),
        ) {
            let report = BandwidthReport { size, iterations, peak, average, msg_rate_mpps: rate };
            let back = BandwidthReport::from_fields(report.fields());
            prop_assert_eq!(back.size, size);
            prop_assert_eq!(back.iterations, iterations);
            prop_assert_eq!(back.peak.to_bits(), peak.to_bits());
            prop_assert_eq!(back.average.to_bits(), average.to_bits());
            prop_assert_eq!(back.msg_rate_mpps.to_bits(), rate.to_bits());
        }

        #[test]
        fn any_version_message_decodes(bytes in any::<[u8; VERSION_BYTES]>()) {
            let version = decode_version(&bytes);
            prop_assert!(!version.number.is_nan());
        }

        #[test]
        fn frame_lengths_never_exceed_the_bound(header in any::<[u8; 4]>(), bound in 0usize..1 << 24) {
            if let Ok(length) = frame_length(header, bound) {
                prop_assert!(length <= bound);
            }
        }
    }
}
