//! Errors of the pflog decoder: every one names where it happened (file or device, record
//! index, byte offset) and what is wrong, so a bad file is reported, never panicked on.

use std::fmt;
use std::sync::Arc;

/// Where in a pflog stream an error happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file path, or the capture device (`pflog0`).
    pub source: Arc<str>,
    /// 0-based index of the packet record, when the error concerns one.
    pub record: Option<u64>,
    /// Byte offset in the file of the record or header at fault; None for live captures.
    pub offset: Option<u64>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)?;
        match (self.record, self.offset) {
            (Some(r), Some(o)) => write!(f, ": record {r} at offset {o}"),
            (Some(r), None) => write!(f, ": packet {r}"),
            (None, Some(o)) => write!(f, ": offset {o}"),
            (None, None) => Ok(()),
        }
    }
}

/// A decoding or reading failure, with its place.
#[derive(Debug, thiserror::Error)]
#[error("{location}: {kind}")]
pub struct PflogError {
    pub location: Location,
    #[source]
    pub kind: ErrorKind,
    /// True when the stream cannot go on past this error (the container framing is lost or
    /// the file cannot be read); false when only one record was unusable and the next one
    /// is decoded normally.
    pub fatal: bool,
}

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum ErrorKind {
    #[error("read failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("not a pcap or pcapng file (magic {0:#010x})")]
    NotPcap(u32),
    #[error("unsupported pcap variant (magic {0:#010x})")]
    UnsupportedPcap(u32),
    #[error("link type {0} is not pflog (117)")]
    LinkType(i64),
    #[error("{what} truncated: {have} of {need} bytes present at end of file")]
    Truncated {
        what: &'static str,
        have: usize,
        need: usize,
    },
    #[error("file was rotated with {have} bytes of an incomplete record at its end")]
    Abandoned { have: usize },
    #[error("record claims {caplen} captured bytes, more than the limit of {limit}")]
    RecordTooLong { caplen: u64, limit: u64 },
    #[error("malformed pcapng block: {0}")]
    BadBlock(String),
    #[error("packet block names interface {0}, which no interface description declared")]
    UnknownInterface(u32),
    #[error("interface {interface} has link type {linktype}, not pflog (117)")]
    InterfaceLinkType { interface: u32, linktype: i64 },
    #[error("pflog header length {0} out of range (61 to 100)")]
    HeaderLength(u8),
    #[error("pflog header truncated: {have} bytes captured, header needs {need}")]
    HeaderTruncated { have: usize, need: usize },
    #[error("timestamp out of range ({seconds} s)")]
    BadTimestamp { seconds: i128 },
    #[error("simple packet blocks carry no timestamp")]
    NoTimestamp,
    #[error("capture failed: {0}")]
    Capture(String),
}
