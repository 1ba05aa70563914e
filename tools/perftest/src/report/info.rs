//! The text around the tables: the server's waiting banner, the info block
//! (`ctx_print_test_info` in perftest's `src/perftest_parameters.c`) and the local/remote
//! address lines (`ctx_print_pingpong_data` in `src/perftest_communication.c`), laid out as
//! perftest lays them out. The info block ends with lines of ours: the provider, the build,
//! the cores, the commit and the clock.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::report::table::RESULT_LINE;
use crate::run_info::RunInfo;

/// What the server prints before it waits for a client.
pub const WAITING_BANNER: &str = "\n************************************\n\
     * Waiting for client to connect... *\n\
     ************************************";

/// The inline line, or for READ and atomics the outstanding reads line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum InlineOrReads {
    /// `Max inline data`.
    Inline(u32),
    /// `Outstand reads`.
    OutstandingReads(u32),
}

/// Everything the info block shows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestInfo {
    /// `RDMA_Write Latency Test`.
    pub title: String,
    /// The device name.
    pub device: String,
    /// QPs.
    pub qps: u32,
    /// `IB` for ibverbs devices, else the provider.
    pub transport: String,
    /// The send queue depth, shown on the client.
    pub tx_depth: Option<u32>,
    /// `-l`, shown when above 1.
    pub post_list: Option<u32>,
    /// The receive queue depth, shown on the receiving side of SEND tests.
    pub rx_depth: Option<u32>,
    /// CQ moderation, shown in bandwidth tests.
    pub cq_mod: Option<u32>,
    /// The port's active MTU in bytes.
    pub mtu_bytes: u32,
    /// `IB`, `Ethernet`, `Shared memory` or `Simulated`.
    pub link_type: String,
    /// The GID index, when routing uses GIDs.
    pub gid_index: Option<u8>,
    /// Inline size or outstanding reads.
    pub inline_or_reads: InlineOrReads,
    /// The provider behind the device.
    pub provider: String,
    /// Build, cores, commit, clock.
    pub run: RunInfo,
}

impl TestInfo {
    /// The block, `RESULT_LINE` to `RESULT_LINE`, without a final newline.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut line = |text: String| {
            out.push_str(&text);
            out.push('\n');
        };
        line(RESULT_LINE.to_string());
        line(format!("                    {}", self.title));
        line(format!(" Dual-port       : OFF\t\tDevice         : {}", self.device));
        line(format!(" Number of qps   : {}\t\tTransport type : {}", self.qps, self.transport));
        line(" Connection type : RC\t\tUsing SRQ      : OFF".to_string());
        line(" PCIe relax order: Unsupported".to_string());
        line(" ibv_wr* API     : OFF".to_string());
        if let Some(depth) = self.tx_depth {
            line(format!(" TX depth        : {depth}"));
        }
        if let Some(list) = self.post_list {
            line(format!(" Post List       : {list}"));
        }
        if let Some(depth) = self.rx_depth {
            line(format!(" RX depth        : {depth}"));
        }
        if let Some(cq_mod) = self.cq_mod {
            line(format!(" CQ Moderation   : {cq_mod}"));
        }
        line(format!(" Mtu             : {}[B]", self.mtu_bytes));
        line(format!(" Link type       : {}", self.link_type));
        if let Some(index) = self.gid_index {
            line(format!(" GID index       : {index}"));
        }
        match self.inline_or_reads {
            InlineOrReads::Inline(size) => line(format!(" Max inline data : {size}[B]")),
            InlineOrReads::OutstandingReads(count) => line(format!(" Outstand reads  : {count}")),
        }
        line(" rdma_cm QPs\t : OFF".to_string());
        line(" Data ex. method : Ethernet".to_string());
        line(format!(" Provider        : {}\t\tBuild          : {}", self.provider, self.run.build));
        line(format!(" Cores           : {}", self.run.cores_label()));
        line(format!(" Commit          : {}", self.run.commit_label()));
        line(format!(" Timer           : {}", self.run.timer));
        out.push_str(RESULT_LINE);
        out
    }
}

/// One side's QP, as the address lines show it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressLine {
    /// InfiniBand LID (0 elsewhere).
    pub lid: u16,
    /// QP number.
    pub qpn: u32,
    /// First packet sequence number.
    pub psn: u32,
    /// Outstanding reads (READ tests).
    pub out_reads: Option<u32>,
    /// The rkey and address of the buffer the peer targets (READ and WRITE tests).
    pub rdma: Option<(u32, u64)>,
    /// The GID, when routing uses GIDs.
    pub gid: Option<[u8; 16]>,
}

impl AddressLine {
    /// ` local address: LID 0000 QPN 0x0011 PSN 0xf38e06 RKey 0x0002fd VAddr 0x0055ce6e4e0000`
    /// and, with a GID, the ` GID: 254:128:...` line after it; no final newline.
    pub fn render(&self, side: &str) -> String {
        let mut out = format!(
            " {side} address: LID {} QPN {} PSN {}",
            alternate_hex(u64::from(self.lid), 4),
            alternate_hex(u64::from(self.qpn), 6),
            alternate_hex(u64::from(self.psn), 6)
        );
        if let Some(count) = self.out_reads {
            let _ = write!(out, " OUT {}", alternate_hex(u64::from(count), 4));
        }
        if let Some((rkey, addr)) = self.rdma {
            let _ =
                write!(out, " RKey {} VAddr {}", alternate_hex(u64::from(rkey), 8), alternate_hex(addr, 16));
        }
        if let Some(gid) = self.gid {
            // perftest prints each GID byte in decimal (`%02d`), and so do we.
            let bytes: Vec<String> = gid.iter().map(|byte| format!("{byte:02}")).collect();
            let _ = write!(out, "\n GID: {}", bytes.join(":"));
        }
        out
    }
}

/// C's `%#0<width>x`: `0x` and zero-padded hex digits filling `width` characters, except
/// that zero prints as zeros without the `0x`.
pub fn alternate_hex(value: u64, width: usize) -> String {
    if value == 0 {
        format!("{:0width$}", 0)
    } else {
        format!("{value:#0width$x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_matches_c_alternate_form() {
        assert_eq!(alternate_hex(0, 4), "0000");
        assert_eq!(alternate_hex(0x12, 6), "0x0012");
        assert_eq!(alternate_hex(0x7a0104, 6), "0x7a0104");
        assert_eq!(alternate_hex(0x9ce6e, 6), "0x9ce6e");
        assert_eq!(alternate_hex(0x327, 8), "0x000327");
        assert_eq!(alternate_hex(0x55ec5e9a9000, 16), "0x0055ec5e9a9000");
        assert_eq!(alternate_hex(0x80, 4), "0x80");
    }

    #[test]
    fn address_lines_match_perftests() {
        let gid = [254, 128, 0, 0, 0, 0, 0, 0, 60, 120, 187, 255, 254, 167, 32, 123];
        let write = AddressLine {
            lid: 0,
            qpn: 0x12,
            psn: 0x7a0104,
            out_reads: None,
            rdma: Some((0x327, 0x55ec5e9a9000)),
            gid: Some(gid),
        };
        assert_eq!(
            write.render("local"),
            " local address: LID 0000 QPN 0x0012 PSN 0x7a0104 RKey 0x000327 VAddr 0x0055ec5e9a9000\n \
             GID: 254:128:00:00:00:00:00:00:60:120:187:255:254:167:32:123"
        );
        let read = AddressLine {
            lid: 0,
            qpn: 0x14,
            psn: 0x431276,
            out_reads: Some(128),
            rdma: Some((0x555, 0x55fb8d18e000)),
            gid: None,
        };
        assert_eq!(
            read.render("remote"),
            " remote address: LID 0000 QPN 0x0014 PSN 0x431276 OUT 0x80 RKey 0x000555 VAddr 0x0055fb8d18e000"
        );
        let send = AddressLine { lid: 0, qpn: 0x16, psn: 0x36103d, out_reads: None, rdma: None, gid: None };
        assert_eq!(send.render("local"), " local address: LID 0000 QPN 0x0016 PSN 0x36103d");
    }

    #[test]
    fn info_block_has_perftests_lines_then_ours() {
        let info = TestInfo {
            title: "RDMA_Write Latency Test".into(),
            device: "rxe0".into(),
            qps: 1,
            transport: "IB".into(),
            tx_depth: Some(1),
            post_list: None,
            rx_depth: None,
            cq_mod: None,
            mtu_bytes: 1024,
            link_type: "Ethernet".into(),
            gid_index: Some(0),
            inline_or_reads: InlineOrReads::Inline(0),
            provider: "ibverbs".into(),
            run: RunInfo {
                commit: "abc1234".into(),
                tree_dirty: Some(false),
                build: "release".into(),
                cores_online: Some(2),
                cores_usable: 2,
                pinned_core: None,
                timer: "TSC, ns".into(),
            },
        };
        let block = info.render();
        let lines: Vec<&str> = block.lines().collect();
        assert_eq!(lines[0], RESULT_LINE);
        assert_eq!(lines[1], "                    RDMA_Write Latency Test");
        assert_eq!(lines[2], " Dual-port       : OFF\t\tDevice         : rxe0");
        assert!(lines.contains(&" TX depth        : 1"));
        assert!(lines.contains(&" Mtu             : 1024[B]"));
        assert!(lines.contains(&" Link type       : Ethernet"));
        assert!(lines.contains(&" GID index       : 0"));
        assert!(lines.contains(&" Max inline data : 0[B]"));
        assert!(lines.contains(&" rdma_cm QPs\t : OFF"));
        assert!(lines.contains(&" Provider        : ibverbs\t\tBuild          : release"));
        assert!(lines.contains(&" Commit          : abc1234"));
        assert_eq!(lines.last(), Some(&RESULT_LINE));
    }
}
