//! Live capture from a pflog interface (`pflog0`) through libpcap, for bans without
//! pflogd's flush delay (60 s by default). Built with the `live-pflog` feature.
//!
//! PF logs nothing unless some BPF listener is attached to the interface (FreeBSD's
//! `pflog_packet` returns early otherwise), so this reader can run with or without pflogd
//! beside it. Reading needs root or read access to `/dev/bpf*`.

use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;

use pcap::{Active, Capture, Linktype};

use super::container::LINKTYPE_PFLOG;
use super::error::{ErrorKind, Location, PflogError};
use super::event::{PflogEvent, decode_record, timestamp};

/// Bytes kept of each packet: OpenBSD pflogd's default, enough for the longest pflog
/// header, an IPv6 header and the start of the TCP header.
pub const DEFAULT_SNAPLEN: i32 = 160;

/// An open capture on a pflog interface.
pub struct PflogLive {
    cap: Capture<Active>,
    device: Arc<str>,
    packets: u64,
}

impl PflogLive {
    /// Opens `device` (e.g. `pflog0`) in immediate mode; reads wait at most `timeout_ms`
    /// milliseconds so the caller can check for shutdown between packets.
    pub fn open(device: &str, snaplen: i32, timeout_ms: i32) -> Result<PflogLive, PflogError> {
        let name: Arc<str> = device.into();
        let fail = |kind: ErrorKind| PflogError {
            location: Location {
                source: name.clone(),
                record: None,
                offset: None,
            },
            kind,
            fatal: true,
        };
        let cap = Capture::from_device(device)
            .and_then(|c| {
                c.snaplen(snaplen)
                    .immediate_mode(true)
                    .timeout(timeout_ms)
                    .open()
            })
            .map_err(|e| fail(ErrorKind::Capture(e.to_string())))?;
        let Linktype(dlt) = cap.get_datalink();
        if dlt != LINKTYPE_PFLOG {
            return Err(fail(ErrorKind::LinkType(dlt as i64)));
        }
        Ok(PflogLive {
            cap,
            device: name,
            packets: 0,
        })
    }

    /// The next logged packet, or None when the read timeout passed without one.
    /// A record that does not decode is a non-fatal error; a capture failure is fatal.
    pub fn next_event(&mut self) -> Result<Option<PflogEvent>, PflogError> {
        let packet = match self.cap.next_packet() {
            Ok(p) => p,
            Err(pcap::Error::TimeoutExpired) => return Ok(None),
            Err(e) => {
                return Err(PflogError {
                    location: self.location(None),
                    kind: ErrorKind::Capture(e.to_string()),
                    fatal: true,
                });
            }
        };
        let index = self.packets;
        self.packets += 1;
        let ts = packet.header.ts;
        let decoded =
            timestamp(ts.tv_sec as i128, ts.tv_usec.max(0) as u64, 1_000_000).and_then(|time| {
                decode_record(
                    packet.data,
                    packet.header.len,
                    time,
                    cfg!(target_endian = "big"),
                )
            });
        match decoded {
            Ok(ev) => Ok(Some(ev)),
            Err(kind) => Err(PflogError {
                location: self.location(Some(index)),
                kind,
                fatal: false,
            }),
        }
    }

    /// Packets read so far.
    pub fn packets(&self) -> u64 {
        self.packets
    }

    fn location(&self, record: Option<u64>) -> Location {
        Location {
            source: self.device.clone(),
            record,
            offset: None,
        }
    }
}

impl AsRawFd for PflogLive {
    /// The capture's descriptor, for waiting on readiness instead of the read timeout.
    fn as_raw_fd(&self) -> RawFd {
        self.cap.as_raw_fd()
    }
}
