//! Reading a whole pflog capture (a file, or bytes in memory) record by record, and the
//! buffered stream decoder it shares with the following reader.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;
use std::sync::Arc;

use super::container::{Framer, Step};
use super::error::{ErrorKind, Location, PflogError};
use super::event::{PflogEvent, decode_record};

/// Bytes asked of the file per read.
const CHUNK: usize = 64 * 1024;
/// Largest single record or block the buffer grows to hold.
const MAX_NEED: usize = 1 << 25;

/// What the stream decoder produced from the buffered bytes.
pub(crate) enum Item {
    Event(PflogEvent),
    Error(PflogError),
    /// A packet record passed over without decoding.
    Skipped,
    /// The bytes from the current offset are an incomplete `what` of `need` bytes.
    NeedMore {
        what: &'static str,
        need: usize,
    },
}

/// Buffered bytes of one capture stream, the framer, and the offsets that tie them to the
/// file: records are decoded from the buffer; `fill` appends what the file has.
pub(crate) struct StreamDecoder {
    framer: Framer,
    buf: Vec<u8>,
    /// First unconsumed byte of `buf`.
    start: usize,
    /// End of the valid bytes of `buf`.
    end: usize,
    /// File offset of `buf[0]`.
    base: u64,
    /// Index of the next packet record.
    record: u64,
    source: Arc<str>,
    failed: bool,
}

impl StreamDecoder {
    pub(crate) fn new(source: Arc<str>) -> StreamDecoder {
        StreamDecoder {
            framer: Framer::new(),
            buf: Vec::new(),
            start: 0,
            end: 0,
            base: 0,
            record: 0,
            source,
            failed: false,
        }
    }

    /// Offset just after the last consumed record or block.
    pub(crate) fn offset(&self) -> u64 {
        self.base + self.start as u64
    }

    /// Offset of the next byte to read from the file.
    pub(crate) fn read_offset(&self) -> u64 {
        self.base + self.end as u64
    }

    /// Bytes read but not consumed (a partial record).
    pub(crate) fn pending(&self) -> usize {
        self.end - self.start
    }

    pub(crate) fn at_start(&self) -> bool {
        self.framer.at_start()
    }

    pub(crate) fn failed(&self) -> bool {
        self.failed
    }

    pub(crate) fn records(&self) -> u64 {
        self.record
    }

    pub(crate) fn error(&self, kind: ErrorKind, record: Option<u64>, fatal: bool) -> PflogError {
        PflogError {
            location: Location {
                source: self.source.clone(),
                record,
                offset: Some(self.offset()),
            },
            kind,
            fatal,
        }
    }

    /// Reads once from `r`, keeping room for a record of `need` bytes at the current offset.
    pub(crate) fn fill<R: Read>(&mut self, r: &mut R, need: usize) -> io::Result<usize> {
        if self.start > 0 && (self.start == self.end || self.buf.len() - self.end < CHUNK) {
            self.buf.copy_within(self.start..self.end, 0);
            self.base += self.start as u64;
            self.end -= self.start;
            self.start = 0;
        }
        // The framer has bounded `need` already; the cap only guards against misuse.
        let want = (self.end + CHUNK).max(self.start + need.min(MAX_NEED));
        if self.buf.len() < want {
            self.buf.resize(want, 0);
        }
        loop {
            match r.read(&mut self.buf[self.end..]) {
                Ok(n) => {
                    self.end += n;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Decodes the next record from the buffered bytes. With `decode` false, packet records
    /// are passed over without being decoded (to reach a saved position).
    pub(crate) fn next_item(&mut self, decode: bool) -> Item {
        loop {
            if self.failed {
                return Item::NeedMore {
                    what: "record",
                    need: usize::MAX,
                };
            }
            let step = self.framer.next(&self.buf[self.start..self.end]);
            match step {
                Step::Skip { len } => self.start += len,
                Step::Packet { len, frame } => {
                    let index = self.record;
                    let result = decode.then(|| {
                        decode_record(frame.data, frame.origlen, frame.time, frame.big_endian)
                    });
                    let out = match result {
                        None => Item::Skipped,
                        Some(Ok(ev)) => Item::Event(ev),
                        Some(Err(kind)) => Item::Error(self.error(kind, Some(index), false)),
                    };
                    self.record += 1;
                    self.start += len;
                    return out;
                }
                Step::BadRecord { len, kind } => {
                    let err = self.error(kind, Some(self.record), false);
                    self.record += 1;
                    self.start += len;
                    return if decode {
                        Item::Error(err)
                    } else {
                        Item::Skipped
                    };
                }
                Step::NeedMore { what, need } => return Item::NeedMore { what, need },
                Step::Fatal(kind) => {
                    let record = (!self.framer.at_start()).then_some(self.record);
                    self.failed = true;
                    return Item::Error(self.error(kind, record, true));
                }
            }
        }
    }
}

/// Reads every record of a complete capture: a file written by pflogd, or bytes in memory.
///
/// Yields one item per packet record; a record that cannot be decoded is an `Err` and the
/// next one is read normally, while an error that loses the framing (not a pcap file, wrong
/// link type, a record cut by the end of the file, a read failure) ends the iteration.
pub struct PflogReader<R> {
    inner: R,
    dec: StreamDecoder,
    eof: bool,
    done: bool,
}

impl PflogReader<File> {
    /// Opens a capture file.
    pub fn open(path: &Path) -> Result<PflogReader<File>, PflogError> {
        let source: Arc<str> = path.display().to_string().into();
        match File::open(path) {
            Ok(f) => Ok(PflogReader::new(f, source)),
            Err(e) => Err(PflogError {
                location: Location {
                    source,
                    record: None,
                    offset: None,
                },
                kind: ErrorKind::Io(e),
                fatal: true,
            }),
        }
    }
}

impl<R: Read> PflogReader<R> {
    /// Reads from `inner`; `source` names it in errors (a path, `<stdin>`).
    pub fn new(inner: R, source: impl Into<Arc<str>>) -> PflogReader<R> {
        PflogReader {
            inner,
            dec: StreamDecoder::new(source.into()),
            eof: false,
            done: false,
        }
    }

    /// Offset just after the last record returned.
    pub fn offset(&self) -> u64 {
        self.dec.offset()
    }

    /// Packet records seen so far (decoded or not).
    pub fn records(&self) -> u64 {
        self.dec.records()
    }
}

impl<R: Read> Iterator for PflogReader<R> {
    type Item = Result<PflogEvent, PflogError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        loop {
            match self.dec.next_item(true) {
                Item::Event(ev) => return Some(Ok(ev)),
                Item::Skipped => {}
                Item::Error(e) => {
                    self.done = e.fatal;
                    return Some(Err(e));
                }
                Item::NeedMore { what, need } => {
                    if self.eof {
                        self.done = true;
                        let have = self.dec.pending();
                        if have == 0 && !self.dec.at_start() {
                            return None;
                        }
                        let record = (!self.dec.at_start()).then_some(self.dec.records());
                        let kind = ErrorKind::Truncated { what, have, need };
                        return Some(Err(self.dec.error(kind, record, true)));
                    }
                    match self.dec.fill(&mut self.inner, need) {
                        Ok(0) => self.eof = true,
                        Ok(_) => {}
                        Err(e) => {
                            self.done = true;
                            return Some(Err(self.dec.error(ErrorKind::Io(e), None, true)));
                        }
                    }
                }
            }
        }
    }
}
