//! Framing of the capture file around the records: classic pcap (either byte order,
//! microsecond or nanosecond timestamps) and pcapng (section header, interface
//! descriptions, enhanced packet blocks).
//!
//! The framer works on whatever bytes are available and never blocks: given the unread
//! bytes it returns one step — a packet, a block to skip, a need for more bytes, or an
//! error — and the caller keeps the byte offset. That makes the same code serve a whole
//! file, a file that is still being written (a partial record is "need more", not an
//! error) and fuzzing. Every length read from the file is checked before it is trusted,
//! so a lying length is an error instead of an endless wait or an allocation.

use jiff::Timestamp;
use pcap_parser::pcapng::{
    Block, EPB_MAGIC, IDB_MAGIC, OptionCode, SHB_MAGIC, SPB_MAGIC, build_ts_resolution,
    parse_block_be, parse_block_le,
};
use pcap_parser::{parse_pcap_frame, parse_pcap_frame_be, parse_pcap_header};

use super::error::ErrorKind;
use super::event::timestamp;

/// `LINKTYPE_PFLOG`.
pub const LINKTYPE_PFLOG: i32 = 117;
/// libpcap's largest snap length; a record claiming more is corrupt.
pub const MAX_CAPLEN: u32 = 262_144;
/// Largest pcapng block accepted (a packet block is at most `MAX_CAPLEN` plus options).
const MAX_BLOCK_LEN: u32 = 1 << 24;
const PCAP_MICRO: u32 = 0xa1b2_c3d4;
const PCAP_NANO: u32 = 0xa1b2_3c4d;
const PCAP_MICRO_SWAPPED: u32 = 0xd4c3_b2a1;
const PCAP_NANO_SWAPPED: u32 = 0x4d3c_b2a1;
const PCAP_MODIFIED: u32 = 0xa1b2_cd34;
const PCAP_MODIFIED_SWAPPED: u32 = 0x34cd_b2a1;
const BOM: u32 = 0x1a2b_3c4d;

/// One packet record, borrowed from the input.
#[derive(Debug)]
pub struct Frame<'a> {
    pub data: &'a [u8],
    pub origlen: u32,
    pub time: Timestamp,
    /// Byte order of the host that wrote the capture.
    pub big_endian: bool,
}

/// What the next bytes are.
#[derive(Debug)]
pub enum Step<'a> {
    /// A packet record of `len` bytes.
    Packet { len: usize, frame: Frame<'a> },
    /// `len` bytes that carry no packet (file header, pcapng metadata).
    Skip { len: usize },
    /// A record of `len` bytes that is well framed but cannot be used; the next one can.
    BadRecord { len: usize, kind: ErrorKind },
    /// The `what` starting here needs `need` bytes in all; fewer are available.
    NeedMore { what: &'static str, need: usize },
    /// The framing is lost; nothing after this point can be read.
    Fatal(ErrorKind),
}

#[derive(Debug, Clone)]
struct Interface {
    linktype: i32,
    units_per_sec: u64,
    ts_offset: i64,
}

#[derive(Debug, Clone)]
enum Format {
    Start,
    Pcap {
        be: bool,
        nanos: bool,
    },
    PcapNg {
        be: bool,
        interfaces: Vec<Interface>,
    },
}

/// The framing state of one capture file: its format once the header was read, and for
/// pcapng the interfaces declared so far.
#[derive(Debug, Clone)]
pub struct Framer {
    format: Format,
}

impl Default for Framer {
    fn default() -> Self {
        Framer::new()
    }
}

fn u32_at(b: &[u8], off: usize, be: bool) -> u32 {
    let a = [b[off], b[off + 1], b[off + 2], b[off + 3]];
    if be {
        u32::from_be_bytes(a)
    } else {
        u32::from_le_bytes(a)
    }
}

impl Framer {
    pub fn new() -> Framer {
        Framer {
            format: Format::Start,
        }
    }

    /// True before the file header was read.
    pub fn at_start(&self) -> bool {
        matches!(self.format, Format::Start)
    }

    /// The next step for the unread bytes `buf`.
    pub fn next<'a>(&mut self, buf: &'a [u8]) -> Step<'a> {
        match &self.format {
            Format::Start => self.file_header(buf),
            &Format::Pcap { be, nanos } => pcap_record(buf, be, nanos),
            Format::PcapNg { be, .. } => {
                let be = *be;
                self.pcapng_block(buf, be)
            }
        }
    }

    fn file_header<'a>(&mut self, buf: &'a [u8]) -> Step<'a> {
        if buf.len() < 4 {
            return Step::NeedMore {
                what: "file header",
                need: 4,
            };
        }
        let magic = u32_at(buf, 0, false);
        match magic {
            SHB_MAGIC => self.section_header(buf),
            PCAP_MICRO | PCAP_NANO | PCAP_MICRO_SWAPPED | PCAP_NANO_SWAPPED => {
                if buf.len() < 24 {
                    return Step::NeedMore {
                        what: "pcap file header",
                        need: 24,
                    };
                }
                let hdr = match parse_pcap_header(&buf[..24]) {
                    Ok((_, h)) => h,
                    Err(_) => return Step::Fatal(ErrorKind::NotPcap(magic)),
                };
                if hdr.network.0 != LINKTYPE_PFLOG {
                    return Step::Fatal(ErrorKind::LinkType(hdr.network.0 as i64));
                }
                self.format = Format::Pcap {
                    be: hdr.is_bigendian(),
                    nanos: hdr.is_nanosecond_precision(),
                };
                Step::Skip { len: 24 }
            }
            PCAP_MODIFIED | PCAP_MODIFIED_SWAPPED => Step::Fatal(ErrorKind::UnsupportedPcap(magic)),
            _ => Step::Fatal(ErrorKind::NotPcap(magic)),
        }
    }

    fn section_header<'a>(&mut self, buf: &'a [u8]) -> Step<'a> {
        if buf.len() < 12 {
            return Step::NeedMore {
                what: "pcapng section header",
                need: 12,
            };
        }
        let be = match u32_at(buf, 8, false) {
            BOM => false,
            b if b.swap_bytes() == BOM => true,
            b => {
                return Step::Fatal(ErrorKind::BadBlock(format!(
                    "section header byte-order magic {b:#010x}"
                )));
            }
        };
        let len = match block_len(buf, be, 28) {
            Ok(l) => l,
            Err(k) => return Step::Fatal(k),
        };
        if buf.len() < len {
            return Step::NeedMore {
                what: "pcapng section header",
                need: len,
            };
        }
        let parsed = if be {
            parse_block_be(&buf[..len])
        } else {
            parse_block_le(&buf[..len])
        };
        match parsed {
            Ok((_, Block::SectionHeader(shb))) if shb.major_version == 1 => {
                self.format = Format::PcapNg {
                    be,
                    interfaces: Vec::new(),
                };
                Step::Skip { len }
            }
            Ok((_, Block::SectionHeader(shb))) => Step::Fatal(ErrorKind::BadBlock(format!(
                "unsupported pcapng version {}.{}",
                shb.major_version, shb.minor_version
            ))),
            _ => Step::Fatal(ErrorKind::BadBlock("section header does not parse".into())),
        }
    }

    fn pcapng_block<'a>(&mut self, buf: &'a [u8], be: bool) -> Step<'a> {
        if buf.len() >= 4 && u32_at(buf, 0, false) == SHB_MAGIC {
            return self.section_header(buf);
        }
        if buf.len() < 8 {
            return Step::NeedMore {
                what: "pcapng block",
                need: 8,
            };
        }
        let len = match block_len(buf, be, 12) {
            Ok(l) => l,
            Err(k) => return Step::Fatal(k),
        };
        if buf.len() < len {
            return Step::NeedMore {
                what: "pcapng block",
                need: len,
            };
        }
        let block_type = u32_at(buf, 0, be);
        if !matches!(block_type, IDB_MAGIC | EPB_MAGIC | SPB_MAGIC) {
            return Step::Skip { len };
        }
        let parsed = if be {
            parse_block_be(&buf[..len])
        } else {
            parse_block_le(&buf[..len])
        };
        let Format::PcapNg { interfaces, .. } = &mut self.format else {
            return Step::Skip { len };
        };
        match parsed {
            Ok((_, Block::InterfaceDescription(idb))) => {
                let Some(units_per_sec) = build_ts_resolution(idb.if_tsresol) else {
                    return Step::Fatal(ErrorKind::BadBlock(format!(
                        "interface {} has timestamp resolution code {}",
                        interfaces.len(),
                        idb.if_tsresol
                    )));
                };
                // Read here rather than taken from the parsed block, which decodes this
                // option as little-endian in big-endian sections too.
                let ts_offset = idb
                    .options
                    .iter()
                    .find(|o| o.code == OptionCode::IfTsoffset && o.value.len() >= 8)
                    .map(|o| {
                        let mut a = [0u8; 8];
                        a.copy_from_slice(&o.value[..8]);
                        if be {
                            i64::from_be_bytes(a)
                        } else {
                            i64::from_le_bytes(a)
                        }
                    })
                    .unwrap_or(0);
                interfaces.push(Interface {
                    linktype: idb.linktype.0,
                    units_per_sec,
                    ts_offset,
                });
                Step::Skip { len }
            }
            Ok((_, Block::EnhancedPacket(epb))) => {
                let Some(iface) = interfaces.get(epb.if_id as usize) else {
                    return Step::BadRecord {
                        len,
                        kind: ErrorKind::UnknownInterface(epb.if_id),
                    };
                };
                if iface.linktype != LINKTYPE_PFLOG {
                    return Step::BadRecord {
                        len,
                        kind: ErrorKind::InterfaceLinkType {
                            interface: epb.if_id,
                            linktype: iface.linktype as i64,
                        },
                    };
                }
                let caplen = (epb.caplen as usize).min(epb.data.len());
                let ts = ((epb.ts_high as u64) << 32) | epb.ts_low as u64;
                let units = iface.units_per_sec;
                let secs = (ts / units) as i128 + iface.ts_offset as i128;
                match timestamp(secs, ts % units, units) {
                    Ok(time) => Step::Packet {
                        len,
                        frame: Frame {
                            data: &epb.data[..caplen],
                            origlen: epb.origlen,
                            time,
                            big_endian: be,
                        },
                    },
                    Err(kind) => Step::BadRecord { len, kind },
                }
            }
            Ok((_, Block::SimplePacket(_))) => Step::BadRecord {
                len,
                kind: ErrorKind::NoTimestamp,
            },
            Ok(_) => Step::Skip { len },
            Err(e) => Step::BadRecord {
                len,
                kind: ErrorKind::BadBlock(format!("block type {block_type:#x}: {e}")),
            },
        }
    }
}

/// Reads and checks a pcapng block's total length (at offset 4).
fn block_len(buf: &[u8], be: bool, min: u32) -> Result<usize, ErrorKind> {
    let len = u32_at(buf, 4, be);
    if len < min || !len.is_multiple_of(4) || len > MAX_BLOCK_LEN {
        return Err(ErrorKind::BadBlock(format!("block length {len}")));
    }
    Ok(len as usize)
}

fn pcap_record(buf: &[u8], be: bool, nanos: bool) -> Step<'_> {
    if buf.len() < 16 {
        return Step::NeedMore {
            what: "record header",
            need: 16,
        };
    }
    let caplen = u32_at(buf, 8, be);
    if caplen > MAX_CAPLEN {
        return Step::Fatal(ErrorKind::RecordTooLong {
            caplen: caplen as u64,
            limit: MAX_CAPLEN as u64,
        });
    }
    let len = 16 + caplen as usize;
    if buf.len() < len {
        return Step::NeedMore {
            what: "record",
            need: len,
        };
    }
    let parsed = if be {
        parse_pcap_frame_be(&buf[..len])
    } else {
        parse_pcap_frame(&buf[..len])
    };
    let block = match parsed {
        Ok((_, b)) => b,
        Err(_) => {
            return Step::Fatal(ErrorKind::BadBlock("record header does not parse".into()));
        }
    };
    let units = if nanos { 1_000_000_000 } else { 1_000_000 };
    match timestamp(block.ts_sec as i128, block.ts_usec as u64, units) {
        Ok(time) => Step::Packet {
            len,
            frame: Frame {
                data: block.data,
                origlen: block.origlen,
                time,
                big_endian: be,
            },
        },
        Err(kind) => Step::BadRecord { len, kind },
    }
}
