//! The tailer: which files the `logpath` patterns name, and for each of them which file
//! generations are still to be read, in what order, from where.
//!
//! Per configured path there is at most one *current* file (the one the path names now) and
//! a queue of *older generations*: files rotated away whose end has not been read yet. Each
//! poll reads the queue first, oldest first, then the current file, so lines come out in the
//! order they were written. Rotations are detected from the path: a new device/inode is a
//! rename-and-create rotation, a file shorter than the read position or with a different
//! first line was copied and truncated. Either way the rotated generations next to the path
//! (`x.log.1`, `x.log-20240101`) that were never read are found and queued, so a rotation
//! between two polls, or several while warden was stopped, loses nothing.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use super::identity::{FileKey, Head, mtime_ns, read_head, stamp};
use super::pattern::drop_rotated_siblings;
use super::reader::{Reader, Sink, Start};
use super::rotated::{Sibling, generation_order, list_siblings};
use super::watch::WakeFilter;
use super::{
    Batch, Encoding, FilePosition, FileSourceError, LogPattern, Notice, RotatedPosition,
    TailOptions, TailStats,
};

/// Follows the files named by a set of `logpath` patterns (one jail's, typically).
#[derive(Debug)]
pub struct FileTailer {
    patterns: Vec<LogPattern>,
    opts: TailOptions,
    /// Sorted by path.
    follows: Vec<Follow>,
    /// Saved positions not yet applied (applied when their path is first followed).
    saved: HashMap<PathBuf, FilePosition>,
    scans: u64,
    next_scan: Option<Instant>,
    rescan: bool,
    /// Where the next poll starts, so one busy file cannot starve the others.
    start: usize,
    scratch: Vec<u8>,
    stats: TailStats,
}

/// What a follow needs from the tailer while it works.
struct Ctx<'a> {
    opts: &'a TailOptions,
    scratch: &'a mut Vec<u8>,
    stats: &'a mut TailStats,
    notices: &'a mut Vec<Notice>,
    now: Instant,
}

impl FileTailer {
    /// A tailer for `patterns`, resuming from `saved` positions where they apply. Nothing is
    /// opened before the first poll.
    pub fn new(patterns: Vec<LogPattern>, opts: TailOptions, saved: Vec<FilePosition>) -> Self {
        let scratch = vec![0u8; 64 * 1024];
        FileTailer {
            patterns,
            opts,
            follows: Vec::new(),
            saved: saved.into_iter().map(|p| (p.path.clone(), p)).collect(),
            scans: 0,
            next_scan: None,
            rescan: false,
            start: 0,
            scratch,
            stats: TailStats::default(),
        }
    }

    /// A tailer from a jail's `logpath` entries and `logencoding`.
    pub fn from_config(
        logpath: &[String],
        logencoding: &str,
        saved: Vec<FilePosition>,
    ) -> Result<Self, FileSourceError> {
        let patterns = logpath
            .iter()
            .map(|s| LogPattern::parse(s))
            .collect::<Result<Vec<_>, _>>()?;
        let opts = TailOptions {
            encoding: Encoding::from_name(logencoding)?,
            ..TailOptions::default()
        };
        Ok(FileTailer::new(patterns, opts, saved))
    }

    pub fn options(&self) -> &TailOptions {
        &self.opts
    }

    pub fn patterns(&self) -> &[LogPattern] {
        &self.patterns
    }

    /// Expand the patterns again at the next poll (a directory changed).
    pub fn request_rescan(&mut self) {
        self.rescan = true;
    }

    /// The paths followed now.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.follows.iter().map(|f| f.path.clone()).collect()
    }

    pub fn stats(&self) -> TailStats {
        self.stats
    }

    /// Directories whose changes concern this tailer.
    pub fn watch_dirs(&self) -> BTreeSet<PathBuf> {
        let mut dirs: BTreeSet<PathBuf> = self.patterns.iter().map(|p| p.watch_dir()).collect();
        for f in &self.follows {
            if let Some(parent) = f.path.parent().filter(|p| !p.as_os_str().is_empty()) {
                dirs.insert(parent.to_path_buf());
            }
        }
        dirs
    }

    /// Decides which file-system events should wake this tailer.
    pub fn wake_filter(&self) -> WakeFilter {
        WakeFilter::new(self.patterns.clone())
    }

    /// The position of every followed path (for a final save).
    pub fn positions(&self) -> Vec<FilePosition> {
        self.follows.iter().filter_map(Follow::position).collect()
    }

    /// Reads what is new.
    pub fn poll(&mut self) -> Batch {
        self.poll_at(Instant::now())
    }

    /// Reads what is new, with `now` as the current time (for linger and rescan timing).
    pub fn poll_at(&mut self, now: Instant) -> Batch {
        let mut batch = Batch::default();
        if self.scans == 0 || self.rescan || self.next_scan.is_none_or(|t| now >= t) {
            self.scan(now, &mut batch);
        }
        let mut sink = Sink::new(self.opts.max_batch_lines, self.opts.max_batch_bytes);
        let mut ctx = Ctx {
            opts: &self.opts,
            scratch: &mut self.scratch,
            stats: &mut self.stats,
            notices: &mut batch.notices,
            now,
        };
        let n = self.follows.len();
        for i in 0..n {
            let idx = (self.start + i) % n;
            if self.follows[idx].poll(&mut sink, &mut ctx) {
                batch.more = true;
            }
            if sink.full() {
                self.start = idx;
                batch.more = true;
                break;
            }
        }
        sink.add_stats(&mut self.stats);
        batch.lines = sink.lines;
        for f in &mut self.follows {
            if std::mem::take(&mut f.dirty)
                && let Some(p) = f.position()
            {
                batch.positions.push(p);
            }
        }
        batch
    }

    /// Expands the patterns: starts following new matches, forgets glob matches that are
    /// gone and fully read.
    fn scan(&mut self, now: Instant, batch: &mut Batch) {
        let first = self.scans == 0;
        self.scans += 1;
        self.rescan = false;
        self.next_scan = Some(now + self.opts.rescan_interval);

        let mut found = BTreeSet::new();
        for p in &self.patterns {
            found.extend(p.expand());
        }
        let mut found = drop_rotated_siblings(found);
        if first {
            // A saved path that matches but is gone now may still have a rotated
            // generation with unread lines.
            for path in self.saved.keys() {
                if self.patterns.iter().any(|p| p.matches(path)) {
                    found.insert(path.clone());
                }
            }
        }

        let mut ctx = Ctx {
            opts: &self.opts,
            scratch: &mut self.scratch,
            stats: &mut self.stats,
            notices: &mut batch.notices,
            now,
        };
        for path in &found {
            let Err(at) = self
                .follows
                .binary_search_by(|f| f.path.as_path().cmp(path))
            else {
                continue;
            };
            let pattern = self.patterns.iter().find(|p| p.matches(path));
            let from_glob = pattern.is_none_or(|p| !p.is_literal());
            let follow = match self.saved.remove(path) {
                Some(pos) => Follow::restore(path.clone(), from_glob, pos, &mut ctx),
                None => {
                    let tail = first && pattern.is_some_and(|p| p.tail);
                    Follow::fresh(path.clone(), from_glob, tail, &mut ctx)
                }
            };
            self.follows.insert(at, follow);
        }

        let before = self.follows.len();
        self.follows.retain(|f| {
            let keep = !f.from_glob || found.contains(&f.path) || !f.drained();
            if !keep {
                tracing::debug!(path = %f.path.display(), "No longer following a log file");
                batch.forgotten.push(f.path.clone());
            }
            keep
        });
        if self.follows.len() != before {
            self.start = 0;
        }
    }
}

/// What is known about a rotated generation that is not open.
#[derive(Debug, Clone)]
struct Known {
    size: u64,
    mtime: i128,
    hash: Option<String>,
    /// The start of the file (up to its first line, at most `PREFIX` bytes), to recognise
    /// it when it had no complete line yet.
    prefix: Vec<u8>,
    /// How far it was read; None for a generation that already existed when following
    /// began (never read, never to be read).
    read_to: Option<u64>,
}

const PREFIX: usize = 256;

impl Known {
    fn new(size: u64, mtime: i128, head: Option<&Head>, read_to: Option<u64>) -> Self {
        Known {
            size,
            mtime,
            hash: head.and_then(Head::hash),
            prefix: head
                .map(|h| h.bytes[..h.bytes.len().min(PREFIX)].to_vec())
                .unwrap_or_default(),
            read_to,
        }
    }

    /// Whether a file with this head is the file known here (grown or touched since).
    fn same_file(&self, head: &Head) -> bool {
        match (&self.hash, head.hash()) {
            (Some(a), Some(b)) => *a == b,
            (Some(_), None) => false,
            // It had no complete line when last seen: it must still start the same way.
            (None, _) => {
                let n = self.prefix.len().min(head.bytes.len());
                self.prefix[..n] == head.bytes[..n]
            }
        }
    }
}

/// One configured path and the file generations still to read for it.
#[derive(Debug)]
struct Follow {
    path: PathBuf,
    origin: Arc<Path>,
    /// Named by a glob (forgotten once gone), not a literal path.
    from_glob: bool,
    /// The file the path names now.
    current: Option<Reader>,
    /// Older generations still being read, oldest first.
    queue: VecDeque<Reader>,
    /// The newest generation read to its end and closed.
    last: Option<RotatedPosition>,
    /// Rotated generations next to the path that are accounted for.
    known: HashMap<FileKey, Known>,
    missing_reported: bool,
    error_reported: bool,
    /// The position changed since it was last reported.
    dirty: bool,
}

/// A copy of the file that was truncated: identified by its first line, read from the
/// offset the truncated file had reached.
struct CopyOf {
    hash: Option<String>,
    offset: u64,
}

impl Follow {
    fn empty(path: PathBuf, from_glob: bool) -> Self {
        Follow {
            origin: Arc::from(path.as_path()),
            path,
            from_glob,
            current: None,
            queue: VecDeque::new(),
            last: None,
            known: HashMap::new(),
            missing_reported: false,
            error_reported: false,
            dirty: true,
        }
    }

    /// Starts following a path without a saved position: from the start of its file, or
    /// from its end for `tail`. Rotated generations already there are old news.
    fn fresh(path: PathBuf, from_glob: bool, tail: bool, ctx: &mut Ctx<'_>) -> Self {
        let mut f = Follow::empty(path, from_glob);
        let siblings = f.list(ctx);
        let heads = heads_of(&siblings, ctx.opts.max_line_bytes);
        f.baseline(&siblings, &heads, &HashSet::new());
        if let Some(newest) = siblings.last() {
            // Lets a position taken while the current file has no complete line point at
            // the generation before it, so a copy made while warden is down is found.
            f.last = Some(RotatedPosition {
                dev: newest.key.dev,
                inode: newest.key.ino,
                first_line_hash: heads.get(&newest.key).and_then(Head::hash),
                offset: newest.size,
            });
        }
        let start = if tail { Start::End } else { Start::Offset(0) };
        f.open_current(start, ctx);
        f
    }

    /// Starts following a path from a saved position: the rest of each generation that was
    /// being read, the generations rotated while warden was not running, then the file the
    /// path names now.
    fn restore(path: PathBuf, from_glob: bool, saved: FilePosition, ctx: &mut Ctx<'_>) -> Self {
        let mut f = Follow::empty(path, from_glob);
        let siblings = f.list(ctx);
        let heads = heads_of(&siblings, ctx.opts.max_line_bytes);
        let mut used: HashSet<FileKey> = HashSet::new();
        // Hashes of content already handed out: copies of it are not new generations.
        let mut seen_hashes: HashSet<String> = HashSet::new();

        for r in &saved.rotated {
            seen_hashes.extend(r.first_line_hash.clone());
            match find_generation(&siblings, &heads, r, &used) {
                Some(s) => {
                    used.insert(s.key);
                    f.enqueue(s, r.offset, ctx);
                }
                None => f.lost(r, ctx),
            }
        }

        let main = saved.main();
        seen_hashes.extend(main.first_line_hash.clone());
        let here = open_path_head(&f.path, ctx.opts.max_line_bytes);
        let matches_here = |m: &RotatedPosition, key: FileKey, head: &Head, size: u64| {
            (m.inode == 0 || key.ino == m.inode)
                && hash_matches(&m.first_line_hash, head)
                && size >= m.offset
        };
        let same = here
            .as_ref()
            .is_some_and(|(key, head, size)| matches_here(&main, *key, head, *size));
        if same {
            f.open_current(Start::Offset(main.offset), ctx);
        } else if let Some(s) = find_generation(&siblings, &heads, &main, &used) {
            // The file was rotated away (or copied and truncated) while warden was down.
            used.insert(s.key);
            let ours = s.clone();
            f.enqueue(&ours, main.offset, ctx);
            let here_key = here.as_ref().map(|h| h.0);
            let here_head = here.as_ref().map(|h| &h.1);
            let newer: Vec<&Sibling> = siblings
                .iter()
                .filter(|s| {
                    generation_order(s, &ours).is_gt()
                        && !used.contains(&s.key)
                        && Some(s.key) != here_key
                })
                .collect();
            for s in newer {
                let head = heads.get(&s.key);
                let copy_of_seen = head
                    .and_then(Head::hash)
                    .is_some_and(|h| seen_hashes.contains(&h));
                let copy_of_current = head
                    .zip(here_head)
                    .is_some_and(|(a, b)| !a.bytes.is_empty() && a.compatible(b));
                if copy_of_seen || copy_of_current {
                    continue;
                }
                used.insert(s.key);
                f.enqueue(s, 0, ctx);
            }
            f.open_current(Start::Offset(0), ctx);
        } else if here.as_ref().is_some_and(|(_, head, size)| {
            main.first_line_hash.is_some()
                && hash_matches(&main.first_line_hash, head)
                && *size >= main.offset
        }) {
            // Same content under a new inode (restored from a backup, copied across file
            // systems): carry on where reading stopped.
            f.open_current(Start::Offset(main.offset), ctx);
        } else {
            if main.offset > 0 || main.first_line_hash.is_some() {
                f.lost(&main, ctx);
            }
            f.open_current(Start::Offset(0), ctx);
        }
        f.baseline(&siblings, &heads, &used);
        if f.last.is_none()
            && let Some(newest) = siblings.iter().rev().find(|s| !used.contains(&s.key))
        {
            f.last = Some(RotatedPosition {
                dev: newest.key.dev,
                inode: newest.key.ino,
                first_line_hash: heads.get(&newest.key).and_then(Head::hash),
                offset: newest.size,
            });
        }
        f
    }

    /// Every file is read to its end and closed, and the path names nothing.
    fn drained(&self) -> bool {
        self.current.is_none() && self.queue.is_empty()
    }

    fn list(&self, ctx: &mut Ctx<'_>) -> Vec<Sibling> {
        match list_siblings(&self.path) {
            Ok(l) => l,
            Err(e) => {
                self.report_error(&format!("listing rotated files: {e}"), ctx);
                Vec::new()
            }
        }
    }

    /// Records the generations present now as accounted for.
    fn baseline(
        &mut self,
        siblings: &[Sibling],
        heads: &HashMap<FileKey, Head>,
        skip: &HashSet<FileKey>,
    ) {
        for s in siblings.iter().filter(|s| !skip.contains(&s.key)) {
            self.known
                .insert(s.key, Known::new(s.size, s.mtime, heads.get(&s.key), None));
        }
    }

    /// Opens the file the path names as the current file.
    fn open_current(&mut self, start: Start, ctx: &mut Ctx<'_>) -> bool {
        match Reader::open(&self.path, start, ctx.opts.max_line_bytes, ctx.now) {
            Ok(r) => {
                tracing::info!(path = %self.path.display(), offset = r.offset, "Following log file");
                ctx.notices.push(Notice::Opened {
                    path: self.path.clone(),
                    offset: r.offset,
                });
                self.current = Some(r);
                self.missing_reported = false;
                self.error_reported = false;
                self.dirty = true;
                true
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.report_missing(ctx);
                false
            }
            Err(e) => {
                self.report_error(&e.to_string(), ctx);
                false
            }
        }
    }

    fn report_missing(&mut self, ctx: &mut Ctx<'_>) {
        if !self.missing_reported {
            self.missing_reported = true;
            tracing::warn!(path = %self.path.display(), "Log file not found");
            ctx.notices.push(Notice::Missing {
                path: self.path.clone(),
            });
        }
    }

    fn report_error(&self, error: &str, ctx: &mut Ctx<'_>) {
        if !self.error_reported {
            tracing::warn!(path = %self.path.display(), error, "Cannot read log file");
            ctx.notices.push(Notice::Error {
                path: self.path.clone(),
                error: error.to_string(),
            });
        }
    }

    fn lost(&mut self, gen_: &RotatedPosition, ctx: &mut Ctx<'_>) {
        tracing::warn!(
            path = %self.path.display(),
            inode = gen_.inode,
            offset = gen_.offset,
            "The rest of a rotated log file cannot be found; its unread lines are skipped"
        );
        ctx.stats.lost_files += 1;
        ctx.notices.push(Notice::Lost {
            path: self.path.clone(),
        });
    }

    /// Queues the generation `s` to be read from `offset`.
    fn enqueue(&mut self, s: &Sibling, offset: u64, ctx: &mut Ctx<'_>) -> bool {
        match self.open_generation(s, offset, ctx) {
            Some(r) => {
                self.queue.push_back(r);
                self.dirty = true;
                true
            }
            None => false,
        }
    }

    /// Opens the generation `s` to be read from `offset`.
    fn open_generation(&self, s: &Sibling, offset: u64, ctx: &mut Ctx<'_>) -> Option<Reader> {
        match Reader::open(
            &s.path,
            Start::Offset(offset),
            ctx.opts.max_line_bytes,
            ctx.now,
        ) {
            // Renamed again since it was listed: it will be found under its new name.
            Ok(r) if r.key != s.key => None,
            Ok(r) => {
                self.recovering(s, offset, ctx);
                Some(r)
            }
            Err(e) => {
                tracing::warn!(file = %s.path.display(), error = %e, "Cannot open rotated log file");
                None
            }
        }
    }

    /// Finds rotated generations nobody has read yet and queues them, oldest first.
    /// `copy` names the content of a file that was just truncated: its copy is read from
    /// where the truncated file had got to. `carry` is the file the path named until now; it
    /// takes its place among the generations found (a copy of it made before it was renamed
    /// comes first). Returns how many files were queued.
    fn discover(
        &mut self,
        copy: Option<CopyOf>,
        carry: Option<Reader>,
        ctx: &mut Ctx<'_>,
    ) -> usize {
        let carry_key = carry.as_ref().map(|r| r.key);
        let mut held: HashSet<FileKey> = self.queue.iter().map(|r| r.key).collect();
        held.extend(self.current.as_ref().map(|r| r.key));
        // What the path holds now (which may be newer than the current reader).
        let here = open_path_head(&self.path, ctx.opts.max_line_bytes);
        held.extend(here.as_ref().map(|h| h.0));
        let here_head = here.map(|h| h.1);

        // A rotation running at this moment renames files between the listing and the
        // opening: then everything is looked at again.
        let mut attempt = 0;
        let (siblings, found, known) = loop {
            attempt += 1;
            let siblings = self.list(ctx);
            match self.scan_siblings(
                &siblings,
                &held,
                carry_key,
                here_head.as_ref(),
                copy.as_ref(),
                ctx,
            ) {
                Some((found, known)) => break (siblings, found, known),
                None if attempt < 8 => continue,
                None => {
                    tracing::debug!(path = %self.path.display(), "Rotated files keep changing");
                    break (siblings, Vec::new(), self.known.clone());
                }
            }
        };
        self.known = known;

        // Queued files not read from yet take their place among the files found, by
        // generation; a file no longer listed (deleted, moved elsewhere) counts as oldest.
        let by_key: HashMap<FileKey, &Sibling> = siblings.iter().map(|s| (s.key, s)).collect();
        let settled = self.queue.iter().take_while(|r| r.started).count();
        let mut pending: Vec<(Option<&Sibling>, Reader)> = self
            .queue
            .drain(settled..)
            .chain(carry)
            .map(|r| (by_key.get(&r.key).copied(), r))
            .collect();
        let mut queued = 0;
        for (i, file, offset) in found {
            let s = &siblings[i];
            match Reader::with_file(
                file,
                &s.path,
                Start::Offset(offset),
                ctx.opts.max_line_bytes,
                ctx.now,
            ) {
                Ok(r) => {
                    self.recovering(s, offset, ctx);
                    pending.push((Some(s), r));
                    queued += 1;
                }
                Err(e) => {
                    tracing::warn!(file = %s.path.display(), error = %e, "Cannot read rotated log file");
                }
            }
        }
        pending.sort_by(|(a, _), (b, _)| match (a, b) {
            (Some(a), Some(b)) => generation_order(a, b),
            (None, Some(_)) => std::cmp::Ordering::Less,
            (Some(_), None) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        });
        for (_, r) in pending {
            self.queue.push_back(r);
        }
        if queued > 0 {
            self.dirty = true;
        }
        queued
    }

    /// Decides which listed generations are to be read, and from where; the files come
    /// back open, so a later rename cannot swap them. None when the listing turned out to
    /// be stale (a file renamed or replaced since).
    #[allow(clippy::type_complexity)]
    fn scan_siblings(
        &self,
        siblings: &[Sibling],
        held: &HashSet<FileKey>,
        carry_key: Option<FileKey>,
        here_head: Option<&Head>,
        copy: Option<&CopyOf>,
        ctx: &Ctx<'_>,
    ) -> Option<(Vec<(usize, std::fs::File, u64)>, HashMap<FileKey, Known>)> {
        let mut known = HashMap::new();
        let mut found = Vec::new();
        let mut copy_taken = false;
        // Newest first, so the most recent copy of a truncated file is the one used.
        for (i, s) in siblings.iter().enumerate().rev() {
            if Some(s.key) == carry_key || held.contains(&s.key) {
                continue;
            }
            let prev = self.known.get(&s.key);
            if let Some(k) = prev.filter(|k| k.size == s.size && k.mtime == s.mtime) {
                known.insert(s.key, k.clone());
                continue;
            }
            let file = match std::fs::File::open(&s.path) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
                Err(_) => continue,
            };
            match file.metadata() {
                Ok(m) if FileKey::of(&m) == s.key => {}
                Ok(_) => return None,
                Err(_) => continue,
            }
            let Ok(head) = read_head(&file, ctx.opts.max_line_bytes) else {
                continue;
            };
            if head.bytes.is_empty() {
                // Just created (a copy being made): nothing to read yet.
                continue;
            }
            let hash = head.hash();
            if let Some(c) = copy
                && c.hash.is_some()
                && hash == c.hash
            {
                if !copy_taken && s.size >= c.offset {
                    copy_taken = true;
                    found.push((i, file, c.offset));
                } else {
                    // An older copy of lines already read.
                    known.insert(
                        s.key,
                        Known::new(s.size, s.mtime, Some(&head), Some(s.size)),
                    );
                }
                continue;
            }
            if let Some(k) = prev.filter(|k| k.same_file(&head)) {
                // The same file, touched: read what was appended after it was closed.
                match k.read_to {
                    Some(r) if s.size > r => found.push((i, file, r)),
                    r => {
                        known.insert(s.key, Known::new(s.size, s.mtime, Some(&head), r));
                    }
                }
                continue;
            }
            if here_head.is_some_and(|cur| head.compatible(cur)) {
                // A copy of what the path holds now (perhaps still being made): those lines
                // arrive through the path. Left unaccounted, so it is looked at again if the
                // path is truncated.
                continue;
            }
            found.push((i, file, 0));
        }
        found.sort_by(|a, b| generation_order(&siblings[a.0], &siblings[b.0]));
        Some((found, known))
    }

    /// Reports that an older generation is being read.
    fn recovering(&self, s: &Sibling, offset: u64, ctx: &mut Ctx<'_>) {
        tracing::info!(
            path = %self.path.display(),
            file = %s.path.display(),
            offset,
            "Reading the rest of a rotated log file"
        );
        ctx.stats.recovered_files += 1;
        ctx.notices.push(Notice::Recovering {
            path: self.path.clone(),
            file: s.path.clone(),
            offset,
        });
    }

    /// One poll of this path. Returns whether it should be polled again at once.
    fn poll(&mut self, sink: &mut Sink, ctx: &mut Ctx<'_>) -> bool {
        self.check_path(sink, ctx);

        // Older generations first, oldest first. One that is read to its end and done
        // with is closed before the next is read, so its unfinished last line comes out in
        // its place.
        let mut i = 0;
        while i < self.queue.len() {
            let r = &mut self.queue[i];
            let before = r.offset;
            match r.read(sink, &self.origin, ctx.opts.encoding, ctx.scratch, ctx.now) {
                Ok(eof) => {
                    r.at_eof = eof;
                    if r.offset != before {
                        self.dirty = true;
                    }
                    if !eof {
                        return false;
                    }
                    let done = ctx.now.saturating_duration_since(r.last_growth) >= ctx.opts.linger
                        || self.queue.len() > ctx.opts.max_rotated;
                    if i == 0 && done {
                        let r = self.queue.pop_front().expect("index checked");
                        self.retire(r, sink, ctx);
                    } else {
                        i += 1;
                    }
                }
                Err(e) => {
                    tracing::warn!(
                        path = %self.path.display(),
                        file = %r.found_at.display(),
                        error = %e,
                        "Cannot read rotated log file"
                    );
                    let r = self.queue.remove(i).expect("index checked");
                    self.retire(r, sink, ctx);
                }
            }
        }
        if sink.full() {
            return false;
        }
        self.read_current(sink, ctx)
    }

    /// Closes a generation that is read to its end.
    fn retire(&mut self, mut r: Reader, sink: &mut Sink, ctx: &mut Ctx<'_>) {
        r.flush_partial(sink, &self.origin, ctx.opts.encoding);
        let mtime = r.file.metadata().map(|m| mtime_ns(&m)).unwrap_or(0);
        let head = r.head().ok();
        self.known
            .insert(r.key, Known::new(r.pos, mtime, head.as_ref(), Some(r.pos)));
        tracing::debug!(path = %self.path.display(), file = %r.found_at.display(), "Closed rotated log file");
        self.last = Some(r.identity());
        self.dirty = true;
    }

    /// Looks at what the path names now and reacts to rotation, truncation, absence.
    fn check_path(&mut self, sink: &mut Sink, ctx: &mut Ctx<'_>) {
        let meta = match std::fs::metadata(&self.path) {
            Ok(m) if m.is_file() => m,
            Ok(_) => {
                self.report_error("not a regular file", ctx);
                self.error_reported = true;
                return;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                if self.current.is_some() {
                    // Renamed away (or deleted) and nothing in its place yet: keep reading
                    // the open file, a writer may still be using it.
                    self.rotate_current(ctx);
                }
                self.report_missing(ctx);
                return;
            }
            Err(e) => {
                self.report_error(&e.to_string(), ctx);
                self.error_reported = true;
                return;
            }
        };
        let key = FileKey::of(&meta);
        let size = meta.len();
        match &mut self.current {
            None => {
                let had_history = !self.queue.is_empty() || self.last.is_some();
                if self.open_current(Start::Offset(0), ctx) && had_history {
                    self.discover(None, None, ctx);
                }
            }
            Some(cur) if cur.key != key => {
                tracing::info!(path = %self.path.display(), "Log rotation detected (new file)");
                ctx.stats.rotations += 1;
                ctx.notices.push(Notice::Rotated {
                    path: self.path.clone(),
                });
                if self.open_current_after_rotation(ctx) {
                    self.discover(None, None, ctx);
                }
            }
            Some(cur) => {
                let now_stamp = stamp(&meta);
                let changed = cur.stamp != now_stamp;
                cur.stamp = now_stamp;
                // Growth past the read position is checked after reading; here the cases
                // where nothing will be read: shorter, changed without growing, or a first
                // line that is still unfinished.
                let suspicious = size < cur.pos
                    || (changed && size <= cur.pos)
                    || (cur.hash.is_none()
                        && !cur.splitter.partial().is_empty()
                        && size != cur.size_seen);
                if suspicious && was_truncated(cur) {
                    self.truncated(sink, ctx);
                    return;
                }
                cur.size_seen = size;
                if cur.pos == 0 && changed {
                    // Nothing read from it yet, and it changed: lines may have been written,
                    // copied to a rotated file and truncated since the last look.
                    self.discover(None, None, ctx);
                }
            }
        }
    }

    /// The path names a new file: the old current file joins the older generations.
    fn open_current_after_rotation(&mut self, ctx: &mut Ctx<'_>) -> bool {
        self.rotate_current(ctx);
        self.open_current(Start::Offset(0), ctx)
    }

    /// Moves the current file to the older generations, unless it was copied and truncated
    /// before it was renamed: then what was read is not what it holds, so it is let go and
    /// found again among the rotated files, after the copy of the lines it held before.
    fn rotate_current(&mut self, ctx: &mut Ctx<'_>) {
        let Some(cur) = self.current.take() else {
            return;
        };
        self.dirty = true;
        if !was_truncated(&cur) {
            self.discover(None, Some(cur), ctx);
            return;
        }
        tracing::info!(path = %self.path.display(), "Log truncation detected (copytruncate)");
        ctx.stats.truncations += 1;
        ctx.notices.push(Notice::Truncated {
            path: self.path.clone(),
        });
        let copy = CopyOf {
            hash: cur.hash.clone(),
            offset: cur.offset,
        };
        drop(cur);
        self.discover(Some(copy), None, ctx);
    }

    /// The current file was truncated.
    fn truncated(&mut self, sink: &mut Sink, ctx: &mut Ctx<'_>) {
        let cur = self.current.as_mut().expect("called with a current file");
        tracing::info!(path = %self.path.display(), "Log truncation detected (copytruncate)");
        ctx.stats.truncations += 1;
        ctx.notices.push(Notice::Truncated {
            path: self.path.clone(),
        });
        let copy = CopyOf {
            hash: cur.hash.clone(),
            offset: cur.offset,
        };
        let mut splitter = cur.splitter.clone();
        let held_at = cur.pos;
        cur.reset(ctx.now);
        // Renamed away as well since the path was looked at: it is one more generation,
        // to be read from its start in its place among the others.
        let moved = std::fs::metadata(&self.path).map_or(true, |m| FileKey::of(&m) != cur.key);
        let carry = if moved { self.current.take() } else { None };
        let queued = self.discover(Some(copy), carry, ctx);
        if queued == 0
            && let Some((bytes, dropped)) = splitter.take_partial()
        {
            // No copy to finish it from: the unfinished line is all there is.
            let line = super::Line {
                path: self.origin.clone(),
                offset: held_at,
                text: ctx.opts.encoding.decode(&bytes),
            };
            sink.push(line, dropped);
        }
        self.dirty = true;
    }

    /// Reads the current file, then checks it was not truncated meanwhile. Returns whether
    /// to poll again at once.
    fn read_current(&mut self, sink: &mut Sink, ctx: &mut Ctx<'_>) -> bool {
        let Some(cur) = self.current.as_mut() else {
            return false;
        };
        let lines_before = sink.len();
        let (offset_before, pos_before) = (cur.offset, cur.pos);
        let partial_before = (cur.splitter.pending_len() > 0).then(|| cur.splitter.clone());
        match cur.read(sink, &self.origin, ctx.opts.encoding, ctx.scratch, ctx.now) {
            Ok(eof) => cur.at_eof = eof,
            Err(e) => {
                let msg = e.to_string();
                self.report_error(&msg, ctx);
                self.error_reported = true;
                return false;
            }
        }
        if cur.pos == pos_before {
            return false;
        }
        self.dirty = true;
        let head = match cur.head() {
            Ok(h) => h,
            Err(_) => return false,
        };
        let intact = match &cur.hash {
            Some(h) => head.hash().as_ref() == Some(h),
            None => {
                cur.hash = head.hash();
                true
            }
        };
        if intact {
            return false;
        }
        // Truncated and written again while it was read: what was read is not the file
        // that was followed. Undo the read, then handle the truncation.
        sink.truncate(lines_before);
        cur.offset = offset_before;
        cur.pos = pos_before;
        match partial_before {
            Some(s) => cur.splitter = s,
            None => cur.splitter.clear(),
        }
        self.truncated(sink, ctx);
        true
    }

    /// The position to save: the current file's, or when the current file has no complete
    /// line yet, the newest older generation's (so a restart still recognises a copy of the
    /// current file made meanwhile).
    fn position(&self) -> Option<FilePosition> {
        let mut rotated: Vec<RotatedPosition> = self.queue.iter().map(Reader::identity).collect();
        let blank = |c: &Reader| c.hash.is_none() && c.offset == 0;
        let main = match &self.current {
            Some(c) if !blank(c) => c.identity(),
            cur => match rotated.pop().or_else(|| self.last.clone()) {
                Some(m) => m,
                None => cur.as_ref()?.identity(),
            },
        };
        Some(FilePosition {
            path: self.path.clone(),
            dev: main.dev,
            inode: main.inode,
            first_line_hash: main.first_line_hash,
            offset: main.offset,
            rotated,
        })
    }
}

/// Whether a file no longer holds what was read from it.
fn was_truncated(r: &Reader) -> bool {
    let Ok(meta) = r.file.metadata() else {
        return false;
    };
    if meta.len() < r.pos {
        return true;
    }
    let Ok(head) = r.head() else {
        return false;
    };
    match &r.hash {
        Some(h) => head.hash().as_ref() != Some(h),
        None if r.splitter.partial().is_empty() => false,
        None => {
            let held = Head {
                bytes: r.splitter.partial().to_vec(),
                complete: false,
            };
            !head.compatible(&held)
        }
    }
}

/// The head of every listed generation.
fn heads_of(siblings: &[Sibling], cap: usize) -> HashMap<FileKey, Head> {
    siblings
        .iter()
        .filter_map(|s| {
            let f = std::fs::File::open(&s.path).ok()?;
            Some((s.key, read_head(&f, cap).ok()?))
        })
        .collect()
}

/// Key, head and size of the file at `path`.
fn open_path_head(path: &Path, cap: usize) -> Option<(FileKey, Head, u64)> {
    let f = std::fs::File::open(path).ok()?;
    let meta = f.metadata().ok().filter(|m| m.is_file())?;
    Some((FileKey::of(&meta), read_head(&f, cap).ok()?, meta.len()))
}

/// A saved checksum matches a head; no checksum (nothing complete was read) matches any.
fn hash_matches(saved: &Option<String>, head: &Head) -> bool {
    match saved {
        None => true,
        Some(h) => head.hash().as_ref() == Some(h),
    }
}

/// The listed generation a saved position refers to: by inode and checksum, else (a copy,
/// or a position without inode) by checksum alone, newest first.
fn find_generation<'a>(
    siblings: &'a [Sibling],
    heads: &HashMap<FileKey, Head>,
    r: &RotatedPosition,
    used: &HashSet<FileKey>,
) -> Option<&'a Sibling> {
    let fits = |s: &&Sibling| {
        !used.contains(&s.key)
            && s.size >= r.offset
            && heads
                .get(&s.key)
                .is_some_and(|h| hash_matches(&r.first_line_hash, h))
    };
    if r.inode != 0
        && let Some(s) = siblings
            .iter()
            .rev()
            .filter(fits)
            .find(|s| s.key.ino == r.inode)
    {
        return Some(s);
    }
    r.first_line_hash.as_ref()?;
    siblings.iter().rev().find(fits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn tailer(path: &Path, saved: Vec<FilePosition>) -> FileTailer {
        let opts = TailOptions {
            linger: std::time::Duration::ZERO,
            ..TailOptions::default()
        };
        FileTailer::new(
            vec![LogPattern::parse(&path.display().to_string()).unwrap()],
            opts,
            saved,
        )
    }

    fn texts(t: &mut FileTailer) -> Vec<String> {
        t.poll().lines.into_iter().map(|l| l.text).collect()
    }

    fn append(path: &Path, s: &str) {
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .unwrap()
            .write_all(s.as_bytes())
            .unwrap();
    }

    #[test]
    fn position_points_after_the_last_complete_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.log");
        append(&p, "one\ntw");
        let mut t = tailer(&p, vec![]);
        assert_eq!(texts(&mut t), ["one"]);
        let pos = t.positions().remove(0);
        assert_eq!(pos.offset, 4);
        assert_eq!(pos.first_line_hash, Some(line_hash_of(b"one\n")));
        assert!(pos.rotated.is_empty());
    }

    fn line_hash_of(b: &[u8]) -> String {
        super::super::identity::line_hash(b)
    }

    #[test]
    fn resume_matches_inode_and_checksum_and_offset() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.log");
        append(&p, "one\ntwo\n");
        let mut t = tailer(&p, vec![]);
        texts(&mut t);
        let saved = t.positions();
        append(&p, "three\n");
        assert_eq!(texts(&mut tailer(&p, saved.clone())), ["three"]);

        // Same inode, other first line (rewritten in place): read from the start.
        let mut f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        f.write_all(b"ONE\n").unwrap();
        drop(f);
        assert_eq!(
            texts(&mut tailer(&p, saved.clone())),
            ["ONE", "two", "three"]
        );

        // An offset past the end of the file: it was truncated.
        let mut short = saved[0].clone();
        short.offset = 1000;
        let short = vec![short];
        let got = texts(&mut tailer(&p, short));
        assert_eq!(got, ["ONE", "two", "three"]);
    }

    #[test]
    fn a_blank_current_file_reports_the_previous_generation() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.log");
        append(&p, "a\n");
        let mut t = tailer(&p, vec![]);
        texts(&mut t);
        let first = t.positions().remove(0);
        std::fs::rename(&p, dir.path().join("a.log.1")).unwrap();
        append(&p, "partial");
        texts(&mut t);
        let pos = t.positions().remove(0);
        // The current file has no complete line: the position names the file rotated away,
        // read to its end.
        assert_eq!((pos.inode, pos.offset), (first.inode, 2));
    }

    #[test]
    fn hash_matching_rules() {
        let head = Head {
            bytes: b"x\n".to_vec(),
            complete: true,
        };
        assert!(hash_matches(&None, &head));
        assert!(hash_matches(&head.hash(), &head));
        assert!(!hash_matches(&Some("00".into()), &head));
    }
}
