//! PF's packet log: pcap files of link type 117 written by pflogd (`/var/log/pflog`) and,
//! with the `live-pflog` feature, the `pflog0` interface itself.
//!
//! Each record is a `struct pfloghdr` (one of three layouts) followed by the logged IPv4 or
//! IPv6 packet. [`PflogReader`] reads a whole capture, [`PflogTail`] follows the growing file
//! across pflogd's rotations, and [`PflogFilter`] selects the records a jail counts. Every
//! record becomes a [`PflogEvent`]; every problem is a [`PflogError`] naming the file, the
//! record and the byte offset.

mod container;
mod error;
mod event;
mod header;
#[cfg(feature = "live-pflog")]
mod live;
mod matcher;
mod packet;
mod reader;
mod tail;

pub use container::{LINKTYPE_PFLOG, MAX_CAPLEN};
pub use error::{ErrorKind, Location, PflogError};
pub use event::{PflogEvent, TcpdumpLine, decode_record};
pub use header::{
    Action, Direction, Family, Layout, MAX_HEADER_LEN, MIN_HEADER_LEN, PflogHeader, Reason,
    Rewritten, ShortName, parse_header,
};
#[cfg(feature = "live-pflog")]
pub use live::{DEFAULT_SNAPLEN, PflogLive};
pub use matcher::{FilterError, HostField, MatchContext, PflogFilter, PflogJailFilter};
pub use packet::{IcmpInfo, Missing, Protocol, TcpDetail, TcpFlags};
pub use reader::PflogReader;
pub use tail::{DEFAULT_BATCH, PflogPosition, PflogTail, Polled, StartAt};

/// Runs every decoding path over arbitrary bytes: as a capture file, and as one bare
/// record (pflog header and packet). Each decoded record is also printed, serialised and
/// matched, so those paths see hostile values too. Returns the number of records decoded.
/// This is the entry point of the fuzz target and of its property-test mirror; it must
/// never panic.
#[doc(hidden)]
pub fn decode_everything(data: &[u8]) -> usize {
    use std::fmt::Write as _;
    use std::sync::OnceLock;

    static FILTER: OnceLock<PflogFilter> = OnceLock::new();
    let filter = FILTER.get_or_init(|| {
        let ctx = MatchContext {
            jails: vec!["sshd".into()],
        };
        PflogFilter::parse(
            "action=block dir=in ruleset=@jails proto=tcp dport=22,80,1000-2000 !src=10.0.0.0/8 flags=S/SA\nproto=icmp,icmp6 icmp-type=8,128 len=0-100",
            &ctx,
        )
        .unwrap_or_else(|e| unreachable!("built-in filter: {e}"))
    });
    let mut decoded = 0;
    let mut text = String::new();
    let mut use_event = |ev: &PflogEvent| {
        text.clear();
        let _ = write!(text, "{ev}");
        let _ = write!(text, "{}", ev.tcpdump_line(-3600));
        let _ = serde_json::to_string(ev);
        let _ = filter.matches(ev);
    };
    for item in PflogReader::new(data, "fuzz") {
        match item {
            Ok(ev) => {
                decoded += 1;
                use_event(&ev);
            }
            Err(e) => {
                let _ = e.to_string();
            }
        }
    }
    for big_endian in [false, true] {
        if let Ok(ev) = decode_record(
            data,
            data.len() as u32,
            jiff::Timestamp::UNIX_EPOCH,
            big_endian,
        ) {
            decoded += 1;
            use_event(&ev);
        }
    }
    decoded
}
