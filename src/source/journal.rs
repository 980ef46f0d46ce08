//! The systemd journal as a log source: a `journalctl --follow --output=json` child process,
//! its records turned into the lines fail2ban builds for journal entries, each with its time
//! and cursor, restarted with backoff when it exits.
//!
//! Matching (`journalmatch`) is left to journalctl, which takes fail2ban's syntax as is:
//! terms `FIELD=value` in a group must all match, `+` separates alternative groups.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, BufReader};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::file::{DEFAULT_MAX_LINE, Encoding};

/// Fields asked of journalctl: what the line is built from (`__CURSOR` and the
/// `__*_TIMESTAMP` fields always come along).
const OUTPUT_FIELDS: &str = "MESSAGE,_HOSTNAME,SYSLOG_IDENTIFIER,_COMM,SYSLOG_PID,_PID,\
_SOURCE_REALTIME_TIMESTAMP,_SOURCE_MONOTONIC_TIMESTAMP";

/// sd-journal open flags accepted in `journalflags` (fail2ban passes them to sd_journal_open).
const SD_JOURNAL_LOCAL_ONLY: u32 = 1;
const SD_JOURNAL_RUNTIME_ONLY: u32 = 2;
const SD_JOURNAL_SYSTEM: u32 = 4;
const SD_JOURNAL_CURRENT_USER: u32 = 8;
const SD_JOURNAL_OS_ROOT: u32 = 16;
const SD_JOURNAL_ALL_NAMESPACES: u32 = 32;
const SD_JOURNAL_INCLUDE_DEFAULT_NAMESPACE: u32 = 64;

/// How to run journalctl for one jail.
#[derive(Debug, Clone)]
pub struct JournalOptions {
    /// The journalctl binary.
    pub journalctl: PathBuf,
    /// Alternatives of match terms (`journalmatch`).
    pub matches: Vec<Vec<String>>,
    /// `journalpath`: a journal directory (`--directory`).
    pub directory: Option<PathBuf>,
    /// `journalfiles`: journal files or globs (`--file`, one per entry).
    pub files: Vec<String>,
    /// Which journals: `--system`, `--user`, from `journalflags`.
    pub system: bool,
    pub user: bool,
    /// `namespace` (`--namespace`); `*` for all.
    pub namespace: Option<String>,
    /// For field values that are not UTF-8 (sent by journalctl as byte arrays).
    pub encoding: Encoding,
    /// Most entries per batch.
    pub max_batch: usize,
    /// Longest JSON record read; longer ones are skipped and counted.
    pub max_record_bytes: usize,
    /// Longest line handed out (cut at a character boundary).
    pub max_line_bytes: usize,
    /// Wait before restarting journalctl, doubled after each failure up to `backoff_max`.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

impl Default for JournalOptions {
    fn default() -> Self {
        JournalOptions {
            journalctl: PathBuf::from("journalctl"),
            matches: Vec::new(),
            directory: None,
            files: Vec::new(),
            system: true,
            user: false,
            namespace: None,
            encoding: Encoding::Utf8,
            max_batch: 512,
            max_record_bytes: 1 << 20,
            max_line_bytes: DEFAULT_MAX_LINE,
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
        }
    }
}

/// Where reading starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JournalStart {
    /// Only entries written from now on.
    Now,
    /// Entries from this time on (fail2ban starts at `now - findtime`).
    Since(jiff::Timestamp),
    /// Entries after this cursor (the last one read before a restart).
    AfterCursor(String),
}

/// One journal entry as a log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalEntry {
    /// `hostname ident[pid]: message`, built as fail2ban builds it.
    pub text: String,
    /// When the entry was logged (`_SOURCE_REALTIME_TIMESTAMP`, else
    /// `__REALTIME_TIMESTAMP`), microsecond precision.
    pub time: jiff::Timestamp,
    /// `__CURSOR`: resume after this entry.
    pub cursor: String,
}

/// Entries read together, with the cursor to save once they are processed.
#[derive(Debug, Clone, Default)]
pub struct JournalBatch {
    pub entries: Vec<JournalEntry>,
    /// Cursor of the last entry.
    pub cursor: Option<String>,
}

/// Errors in journal configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JournalError {
    #[error("bad journalmatch term {term:?}: expected FIELD=value or +")]
    BadMatch { term: String },
    #[error("unbalanced quote in journalmatch {0:?}")]
    UnbalancedQuote(String),
    #[error("journalflags {value:?} is not an integer")]
    BadFlags { value: String },
    #[error("journalpath and journalfiles cannot be combined (journalctl reads one or the other)")]
    PathAndFiles,
    #[error(
        "unknown systemd backend option {0:?} (known: journalpath, journalfiles, journalflags, namespace, journalctl)"
    )]
    UnknownOption(String),
}

/// A journal record that could not be turned into an entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("not a JSON object: {0}")]
    Json(String),
    #[error("record without {0}")]
    Missing(&'static str),
    #[error("bad timestamp {0:?}")]
    BadTime(String),
}

/// Splits fail2ban's `journalmatch` value into alternatives: words as a shell splits them,
/// `+` between groups.
pub fn parse_journalmatch(value: &str) -> Result<Vec<Vec<String>>, JournalError> {
    let words = split_words(value)?;
    let mut groups: Vec<Vec<String>> = vec![Vec::new()];
    for w in words {
        if w == "+" {
            groups.push(Vec::new());
        } else {
            groups.last_mut().expect("never empty").push(w);
        }
    }
    groups.retain(|g| !g.is_empty());
    check_matches(&groups)?;
    Ok(groups)
}

/// Checks every term is `FIELD=value` with a journal field name (upper-case letters, digits
/// and `_`, not starting with a digit).
pub fn check_matches(groups: &[Vec<String>]) -> Result<(), JournalError> {
    for term in groups.iter().flatten() {
        let ok = term.split_once('=').is_some_and(|(field, _)| {
            !field.is_empty()
                && !field.starts_with(|c: char| c.is_ascii_digit())
                && field
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        });
        if !ok {
            return Err(JournalError::BadMatch { term: term.clone() });
        }
    }
    Ok(())
}

/// Shell-like word splitting (quotes and backslashes), as `shlex.split` does for fail2ban.
fn split_words(s: &str) -> Result<Vec<String>, JournalError> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\'' | '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some(q) if q == c => break,
                        Some('\\') if c == '"' => match chars.next() {
                            Some(e) => cur.push(e),
                            None => return Err(JournalError::UnbalancedQuote(s.to_string())),
                        },
                        Some(x) => cur.push(x),
                        None => return Err(JournalError::UnbalancedQuote(s.to_string())),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(e) = chars.next() {
                    cur.push(e);
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

impl JournalOptions {
    /// Options for a jail with `backend = systemd[...]`: its backend arguments, its
    /// `journalmatch` and `logencoding`. Returns warnings about flags journalctl cannot
    /// express.
    pub fn from_backend(
        backend: &BTreeMap<String, String>,
        journalmatch: &[Vec<String>],
        logencoding: &str,
    ) -> Result<(Self, Vec<String>), JournalError> {
        check_matches(journalmatch)?;
        let mut opts = JournalOptions {
            matches: journalmatch.to_vec(),
            encoding: Encoding::from_name(logencoding).unwrap_or_default(),
            ..JournalOptions::default()
        };
        let mut warnings = Vec::new();
        let mut flags = None;
        for (key, value) in backend {
            match key.as_str() {
                "journalpath" => opts.directory = Some(PathBuf::from(value.trim())),
                "journalfiles" => {
                    opts.files = split_words(value)?;
                }
                "journalflags" => {
                    let v = value.trim();
                    let n = parse_py_int(v, false)
                        .and_then(|n| u32::try_from(n).ok())
                        .ok_or_else(|| JournalError::BadFlags {
                            value: value.clone(),
                        })?;
                    flags = Some(n);
                }
                "namespace" => opts.namespace = Some(value.trim().to_string()),
                "journalctl" => opts.journalctl = PathBuf::from(value.trim()),
                other => return Err(JournalError::UnknownOption(other.to_string())),
            }
        }
        if opts.directory.is_some() && !opts.files.is_empty() {
            return Err(JournalError::PathAndFiles);
        }
        match flags {
            Some(f) => {
                opts.system = f & SD_JOURNAL_SYSTEM != 0;
                opts.user = f & SD_JOURNAL_CURRENT_USER != 0;
                if f & SD_JOURNAL_ALL_NAMESPACES != 0 && opts.namespace.is_none() {
                    opts.namespace = Some("*".to_string());
                }
                if f & SD_JOURNAL_INCLUDE_DEFAULT_NAMESPACE != 0
                    && let Some(ns) = opts.namespace.as_mut()
                    && !ns.starts_with('+')
                    && ns != "*"
                {
                    ns.insert(0, '+');
                }
                for (bit, name) in [
                    (SD_JOURNAL_RUNTIME_ONLY, "runtime only"),
                    (SD_JOURNAL_OS_ROOT, "os root"),
                ] {
                    if f & bit != 0 {
                        warnings.push(format!(
                            "journalflags bit {bit} ({name}) has no journalctl equivalent and is ignored"
                        ));
                    }
                }
                let known = SD_JOURNAL_LOCAL_ONLY
                    | SD_JOURNAL_RUNTIME_ONLY
                    | SD_JOURNAL_SYSTEM
                    | SD_JOURNAL_CURRENT_USER
                    | SD_JOURNAL_OS_ROOT
                    | SD_JOURNAL_ALL_NAMESPACES
                    | SD_JOURNAL_INCLUDE_DEFAULT_NAMESPACE;
                if f & !known != 0 {
                    warnings.push(format!("journalflags {f}: unknown bits ignored"));
                }
            }
            // fail2ban's default is SD_JOURNAL_SYSTEM, unless files or a directory are named.
            None => opts.system = opts.directory.is_none() && opts.files.is_empty(),
        }
        Ok((opts, warnings))
    }

    /// The journalctl arguments for a run starting at `start`.
    pub fn args(&self, start: &JournalStart) -> Vec<OsString> {
        let mut a: Vec<OsString> = [
            "--follow",
            "--all",
            "--no-pager",
            "--quiet",
            "--output=json",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        a.push(format!("--output-fields={OUTPUT_FIELDS}").into());
        if self.system {
            a.push("--system".into());
        }
        if self.user {
            a.push("--user".into());
        }
        if let Some(dir) = &self.directory {
            let mut s = OsString::from("--directory=");
            s.push(dir);
            a.push(s);
        }
        for f in &self.files {
            a.push(format!("--file={f}").into());
        }
        if let Some(ns) = &self.namespace {
            a.push(format!("--namespace={ns}").into());
        }
        match start {
            JournalStart::Now => a.push("--lines=0".into()),
            JournalStart::Since(t) => {
                a.push(format!("--since=@{}", t.as_second()).into());
                a.push("--no-tail".into());
            }
            JournalStart::AfterCursor(c) => {
                a.push(format!("--after-cursor={c}").into());
                a.push("--no-tail".into());
            }
        }
        for (i, group) in self.matches.iter().enumerate() {
            if i > 0 {
                a.push("+".into());
            }
            a.extend(group.iter().map(OsString::from));
        }
        a
    }
}

/// Parses one line of `journalctl --output=json` into an entry.
pub fn parse_record(
    line: &[u8],
    encoding: Encoding,
    max_line: usize,
) -> Result<JournalEntry, RecordError> {
    let record: Map<String, Value> =
        serde_json::from_slice(line).map_err(|e| RecordError::Json(e.to_string()))?;
    format_entry(&record, encoding, max_line)
}

/// Builds the entry fail2ban builds from a journal record (`formatJournalEntry`):
/// `[_HOSTNAME] [SYSLOG_IDENTIFIER or _COMM][\[SYSLOG_PID or _PID\]]: MESSAGE`, kernel
/// messages with their monotonic time, several `MESSAGE` values joined by spaces, and
/// newlines shown as `\n`.
pub fn format_entry(
    record: &Map<String, Value>,
    encoding: Encoding,
    max_line: usize,
) -> Result<JournalEntry, RecordError> {
    let cursor = match record.get("__CURSOR") {
        Some(Value::String(c)) => c.clone(),
        _ => return Err(RecordError::Missing("__CURSOR")),
    };
    let time = timestamp(record, "_SOURCE_REALTIME_TIMESTAMP")
        .or_else(|| timestamp(record, "__REALTIME_TIMESTAMP"))
        .ok_or(RecordError::Missing("__REALTIME_TIMESTAMP"))??;

    let text_of = |field: &str| -> Option<String> {
        record
            .get(field)
            .and_then(|v| first_value(v, encoding))
            .filter(|s| !s.is_empty())
    };
    let mut parts: Vec<String> = Vec::with_capacity(4);
    if let Some(host) = text_of("_HOSTNAME") {
        parts.push(host);
    }
    if let Some(mut ident) = text_of("SYSLOG_IDENTIFIER").or_else(|| text_of("_COMM")) {
        let pid = text_of("SYSLOG_PID")
            .filter(|p| parse_py_int(p, false) != Some(0))
            .or_else(|| text_of("_PID").filter(|p| parse_py_int(p, false) != Some(0)));
        if let Some(pid) = pid {
            ident.push('[');
            match parse_py_int(&pid, false).or_else(|| parse_py_int(&pid, true)) {
                Some(n) => ident.push_str(&n.to_string()),
                None => ident.push_str(&pid),
            }
            ident.push(']');
        }
        ident.push(':');
        let kernel = ident == "kernel:";
        parts.push(ident);
        if kernel
            && let Some(us) = micros(record, "_SOURCE_MONOTONIC_TIMESTAMP")
                .or_else(|| micros(record, "__MONOTONIC_TIMESTAMP"))
        {
            let secs = format!("{}.{:06}", us / 1_000_000, us % 1_000_000);
            parts.push(format!("[{secs:>12}]"));
        }
    }
    let message = match record.get("MESSAGE") {
        Some(Value::Array(items)) if !is_byte_array(items) => items
            .iter()
            .map(|v| decode_value(v, encoding).unwrap_or_default())
            .collect::<Vec<_>>()
            .join(" "),
        Some(v) => decode_value(v, encoding).unwrap_or_default(),
        None => String::new(),
    };
    parts.push(message);
    let mut text = parts.join(" ").replace('\n', "\\n");
    if text.len() > max_line {
        let mut cut = max_line;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    Ok(JournalEntry { text, time, cursor })
}

fn timestamp(
    record: &Map<String, Value>,
    field: &str,
) -> Option<Result<jiff::Timestamp, RecordError>> {
    let raw = record.get(field)?;
    let us = match raw {
        Value::String(s) => s.trim().parse::<i64>().ok(),
        Value::Number(n) => n.as_i64(),
        _ => None,
    };
    Some(
        us.and_then(|us| jiff::Timestamp::from_microsecond(us).ok())
            .ok_or_else(|| RecordError::BadTime(raw.to_string())),
    )
}

fn micros(record: &Map<String, Value>, field: &str) -> Option<u64> {
    match record.get(field)? {
        Value::String(s) => s.trim().parse().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

/// journalctl writes a value that is not valid UTF-8 as an array of byte values.
fn is_byte_array(items: &[Value]) -> bool {
    items
        .iter()
        .all(|v| v.as_u64().is_some_and(|n| n <= u64::from(u8::MAX)))
}

/// A single field value as text: a string, or bytes decoded per the log encoding.
fn decode_value(v: &Value, encoding: Encoding) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Array(items) if is_byte_array(items) => {
            let bytes: Vec<u8> = items
                .iter()
                .filter_map(|b| b.as_u64().map(|n| n as u8))
                .collect();
            Some(encoding.decode(&bytes))
        }
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The first value of a field that may occur several times in an entry.
fn first_value(v: &Value, encoding: Encoding) -> Option<String> {
    match v {
        Value::Array(items) if !is_byte_array(items) => {
            items.first().and_then(|x| decode_value(x, encoding))
        }
        v => decode_value(v, encoding),
    }
}

/// Python's `int(s)` (`prefixed == false`) or `int(s, 0)` (`prefixed == true`): how fail2ban
/// and python-systemd turn a PID field into a number.
fn parse_py_int(s: &str, prefixed: bool) -> Option<i128> {
    let s = s.trim();
    let (neg, body) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let (radix, digits) = if prefixed {
        let lower = body.get(..2).map(str::to_ascii_lowercase);
        match lower.as_deref() {
            Some("0x") => (16, &body[2..]),
            Some("0o") => (8, &body[2..]),
            Some("0b") => (2, &body[2..]),
            _ => {
                // Base 0 refuses leading zeros ("010"), except for zero itself.
                if body.len() > 1
                    && body.starts_with('0')
                    && !body.trim_start_matches('0').is_empty()
                {
                    return None;
                }
                (10, body)
            }
        }
    } else {
        (10, body)
    };
    if digits.is_empty()
        || digits.starts_with('_')
        || digits.ends_with('_')
        || digits.contains("__")
    {
        return None;
    }
    let clean: String = digits.chars().filter(|&c| c != '_').collect();
    let n = i128::from_str_radix(&clean, radix).ok()?;
    Some(if neg { -n } else { n })
}

/// A journalctl child process feeding a channel of batches.
#[derive(Debug)]
pub struct JournalSource {
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<Option<String>>>,
}

impl JournalSource {
    /// Starts reading. Must be called within a tokio runtime.
    pub fn spawn(
        opts: JournalOptions,
        start: JournalStart,
        channel_capacity: usize,
    ) -> (JournalSource, mpsc::Receiver<JournalBatch>) {
        let (tx, rx) = mpsc::channel(channel_capacity.max(1));
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(run(opts, start, tx, stop_rx));
        (
            JournalSource {
                stop,
                task: Some(task),
            },
            rx,
        )
    }

    /// Stops journalctl and returns the cursor of the last entry read.
    pub async fn stop(mut self) -> Option<String> {
        let _ = self.stop.send(true);
        match self.task.take()?.await {
            Ok(cursor) => cursor,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => None,
        }
    }
}

impl Drop for JournalSource {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// How one journalctl run ended.
enum RunEnd {
    /// journalctl closed its output (exited).
    Eof,
    /// Asked to stop, or nobody reads the batches any more.
    Stop,
}

/// Per-run state shared by the reading loop.
struct RunState {
    cursor: Option<String>,
    entries: u64,
    invalid: u64,
    too_long: u64,
}

async fn run(
    opts: JournalOptions,
    start: JournalStart,
    tx: mpsc::Sender<JournalBatch>,
    mut stop: watch::Receiver<bool>,
) -> Option<String> {
    let started_at = jiff::Timestamp::now();
    let mut state = RunState {
        cursor: None,
        entries: 0,
        invalid: 0,
        too_long: 0,
    };
    let mut start = start;
    if let JournalStart::AfterCursor(c) = &start {
        state.cursor = Some(c.clone());
    }
    let mut first_run = true;
    let mut backoff = opts.backoff_min;
    let mut failed_with_cursor = 0;
    loop {
        let run_start = match (&state.cursor, &start) {
            (Some(c), _) => JournalStart::AfterCursor(c.clone()),
            // Nothing read yet: after a restart, everything since the source started.
            (None, JournalStart::Now) if !first_run => JournalStart::Since(started_at),
            (None, s) => s.clone(),
        };
        first_run = false;
        let entries_before = state.entries;
        let began = tokio::time::Instant::now();
        let args = opts.args(&run_start);
        let mut cmd = tokio::process::Command::new(&opts.journalctl);
        cmd.args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        tracing::info!(journalctl = %opts.journalctl.display(), start = ?run_start, "Starting journalctl");
        match cmd.spawn() {
            Err(e) => {
                tracing::warn!(journalctl = %opts.journalctl.display(), error = %e, "Cannot start journalctl");
            }
            Ok(mut child) => {
                let stderr_tail = Arc::new(Mutex::new(Vec::<String>::new()));
                if let Some(err) = child.stderr.take() {
                    tokio::spawn(collect_stderr(err, stderr_tail.clone()));
                }
                let stdout = child.stdout.take().expect("stdout is piped");
                let mut reader = BufReader::with_capacity(64 * 1024, stdout);
                let end = read_run(&mut reader, &opts, &tx, &mut stop, &mut state).await;
                if matches!(end, RunEnd::Stop) {
                    let _ = child.start_kill();
                    let _ = child.wait().await;
                    return state.cursor;
                }
                let status = child.wait().await;
                let stderr = stderr_tail
                    .lock()
                    .map(|v| v.join(" | "))
                    .unwrap_or_default();
                tracing::warn!(
                    status = ?status.ok(),
                    stderr,
                    entries = state.entries - entries_before,
                    "journalctl exited; it will be restarted"
                );
            }
        }
        let produced = state.entries > entries_before;
        if produced || began.elapsed() > Duration::from_secs(60) {
            backoff = opts.backoff_min;
        }
        if !produced && matches!(run_start, JournalStart::AfterCursor(_)) {
            failed_with_cursor += 1;
            if failed_with_cursor >= 2 {
                // journalctl keeps refusing the cursor (malformed, or from another
                // journal): go on from the time the cursor names, or from now.
                let c = state.cursor.take().unwrap_or_default();
                start = match cursor_time(&c) {
                    Some(t) => JournalStart::Since(t),
                    None => JournalStart::Now,
                };
                tracing::warn!(cursor = %c, start = ?start, "journalctl rejects the saved cursor");
                failed_with_cursor = 0;
            }
        } else {
            failed_with_cursor = 0;
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => return state.cursor,
        }
        backoff = (backoff * 2).min(opts.backoff_max.max(opts.backoff_min));
    }
}

/// Reads records until journalctl closes its output or the source is stopped.
async fn read_run<R: AsyncRead + Unpin>(
    reader: &mut BufReader<R>,
    opts: &JournalOptions,
    tx: &mpsc::Sender<JournalBatch>,
    stop: &mut watch::Receiver<bool>,
    state: &mut RunState,
) -> RunEnd {
    let mut buf = Vec::new();
    let mut warned = false;
    loop {
        let mut batch = JournalBatch::default();
        let first = tokio::select! {
            r = next_record(reader, &mut buf, opts.max_record_bytes) => r,
            _ = stop.changed() => return RunEnd::Stop,
        };
        let mut next = first;
        loop {
            match next {
                Ok(None) => {
                    if !batch.entries.is_empty() {
                        return match send(tx, batch, stop).await {
                            true => RunEnd::Eof,
                            false => RunEnd::Stop,
                        };
                    }
                    return RunEnd::Eof;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "Cannot read journalctl output");
                    return RunEnd::Eof;
                }
                Ok(Some(false)) => {
                    state.too_long += 1;
                    tracing::debug!(
                        limit = opts.max_record_bytes,
                        skipped = state.too_long,
                        "Journal record too long, skipped"
                    );
                }
                Ok(Some(true)) => {
                    let line = buf.as_slice();
                    if line.first() == Some(&b'{') {
                        match parse_record(line, opts.encoding, opts.max_line_bytes) {
                            Ok(entry) => {
                                state.cursor = Some(entry.cursor.clone());
                                state.entries += 1;
                                batch.cursor = Some(entry.cursor.clone());
                                batch.entries.push(entry);
                            }
                            Err(e) => {
                                state.invalid += 1;
                                if !warned {
                                    warned = true;
                                    tracing::warn!(error = %e, invalid = state.invalid, "Invalid journal record skipped");
                                }
                            }
                        }
                    }
                }
            }
            // Take what is already buffered into the same batch.
            if batch.entries.len() >= opts.max_batch
                || memchr::memchr(b'\n', reader.buffer()).is_none()
            {
                break;
            }
            next = next_record(reader, &mut buf, opts.max_record_bytes).await;
        }
        if !batch.entries.is_empty() && !send(tx, batch, stop).await {
            return RunEnd::Stop;
        }
    }
}

async fn send(
    tx: &mpsc::Sender<JournalBatch>,
    batch: JournalBatch,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    tokio::select! {
        r = tx.send(batch) => r.is_ok(),
        _ = stop.changed() => false,
    }
}

/// Reads one `\n`-terminated record into `buf`. `Some(true)`: a record; `Some(false)`: a
/// record longer than `max` (skipped); None at the end of the output.
async fn next_record<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Option<bool>> {
    buf.clear();
    let mut too_long = false;
    loop {
        let avail = reader.fill_buf().await?;
        if avail.is_empty() {
            return Ok(if buf.is_empty() && !too_long {
                None
            } else {
                Some(!too_long)
            });
        }
        let (chunk, done) = match memchr::memchr(b'\n', avail) {
            Some(i) => (&avail[..i], Some(i + 1)),
            None => (avail, None),
        };
        if !too_long {
            if buf.len() + chunk.len() > max {
                too_long = true;
                buf.clear();
            } else {
                buf.extend_from_slice(chunk);
            }
        }
        let used = done.unwrap_or(avail.len());
        reader.consume(used);
        if done.is_some() {
            return Ok(Some(!too_long));
        }
    }
}

/// Keeps the last lines journalctl wrote to stderr, for the message when it exits.
async fn collect_stderr<R: AsyncRead + Unpin>(err: R, tail: Arc<Mutex<Vec<String>>>) {
    let mut lines = BufReader::new(err).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if let Ok(mut t) = tail.lock() {
            if t.len() >= 5 {
                t.remove(0);
            }
            t.push(line.chars().take(500).collect());
        }
    }
}

/// The time in a journal cursor (`t=` field, hex microseconds).
fn cursor_time(cursor: &str) -> Option<jiff::Timestamp> {
    let t = cursor.split(';').find_map(|kv| kv.strip_prefix("t="))?;
    let us = i64::from_str_radix(t, 16).ok()?;
    jiff::Timestamp::from_microsecond(us).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(v: Value) -> Result<JournalEntry, RecordError> {
        format_entry(v.as_object().unwrap(), Encoding::Utf8, 1024)
    }

    #[test]
    fn journalmatch_splits_into_alternatives() {
        assert_eq!(
            parse_journalmatch("_SYSTEMD_UNIT=sshd.service + _COMM=sshd").unwrap(),
            vec![vec!["_SYSTEMD_UNIT=sshd.service"], vec!["_COMM=sshd"]]
        );
        assert_eq!(
            parse_journalmatch("_SYSTEMD_UNIT=fail2ban.service PRIORITY=5").unwrap(),
            vec![vec!["_SYSTEMD_UNIT=fail2ban.service", "PRIORITY=5"]]
        );
        assert_eq!(
            parse_journalmatch("MESSAGE='a b' + ").unwrap(),
            vec![vec!["MESSAGE=a b"]]
        );
        assert!(parse_journalmatch("").unwrap().is_empty());
        assert_eq!(
            parse_journalmatch("sshd"),
            Err(JournalError::BadMatch {
                term: "sshd".into()
            })
        );
        assert!(matches!(
            parse_journalmatch("lower=x"),
            Err(JournalError::BadMatch { .. })
        ));
        assert!(matches!(
            parse_journalmatch("MESSAGE='open"),
            Err(JournalError::UnbalancedQuote(_))
        ));
    }

    #[test]
    fn args_follow_options_start_and_matches() {
        let opts = JournalOptions {
            matches: vec![
                vec!["_SYSTEMD_UNIT=sshd.service".into()],
                vec!["_COMM=sshd".into()],
            ],
            ..JournalOptions::default()
        };
        let a: Vec<String> = opts
            .args(&JournalStart::AfterCursor("s=1;i=2".into()))
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect();
        assert!(a.contains(&"--follow".to_string()));
        assert!(a.contains(&"--output=json".to_string()));
        assert!(a.contains(&"--system".to_string()));
        assert!(a.contains(&"--after-cursor=s=1;i=2".to_string()));
        assert!(a.contains(&"--no-tail".to_string()));
        assert_eq!(
            &a[a.len() - 3..],
            ["_SYSTEMD_UNIT=sshd.service", "+", "_COMM=sshd"]
        );
        let now: Vec<_> = opts.args(&JournalStart::Now);
        assert!(now.contains(&OsString::from("--lines=0")));
        assert!(!now.contains(&OsString::from("--no-tail")));
        let t = jiff::Timestamp::from_second(1_700_000_000).unwrap();
        assert!(
            opts.args(&JournalStart::Since(t))
                .contains(&OsString::from("--since=@1700000000"))
        );
    }

    #[test]
    fn backend_options_map_to_journalctl() {
        let mut b = BTreeMap::new();
        b.insert(
            "journalpath".to_string(),
            "/var/log/journal/remote".to_string(),
        );
        let (o, w) = JournalOptions::from_backend(&b, &[], "auto").unwrap();
        assert_eq!(
            o.directory.as_deref(),
            Some(std::path::Path::new("/var/log/journal/remote"))
        );
        assert!(
            !o.system,
            "fail2ban opens all journal types when a path is given"
        );
        assert!(w.is_empty());

        let mut b = BTreeMap::new();
        b.insert("journalflags".to_string(), "14".to_string());
        let (o, w) = JournalOptions::from_backend(&b, &[], "utf-8").unwrap();
        assert!(o.system && o.user);
        assert_eq!(w.len(), 1, "{w:?}");

        let mut b = BTreeMap::new();
        b.insert(
            "journalfiles".to_string(),
            "/a/*.journal /b/x.journal".to_string(),
        );
        let (o, _) = JournalOptions::from_backend(&b, &[], "utf-8").unwrap();
        let args = o.args(&JournalStart::Now);
        assert!(args.contains(&OsString::from("--file=/a/*.journal")));
        assert!(args.contains(&OsString::from("--file=/b/x.journal")));

        b.insert("journalpath".to_string(), "/x".to_string());
        assert_eq!(
            JournalOptions::from_backend(&b, &[], "utf-8").unwrap_err(),
            JournalError::PathAndFiles
        );
        let mut b = BTreeMap::new();
        b.insert("journalflags".to_string(), "four".to_string());
        assert!(matches!(
            JournalOptions::from_backend(&b, &[], "utf-8"),
            Err(JournalError::BadFlags { .. })
        ));
        let mut b = BTreeMap::new();
        b.insert("rotated".to_string(), "false".to_string());
        assert!(matches!(
            JournalOptions::from_backend(&b, &[], "utf-8"),
            Err(JournalError::UnknownOption(_))
        ));
        let bad = vec![vec!["nope".to_string()]];
        assert!(JournalOptions::from_backend(&BTreeMap::new(), &bad, "utf-8").is_err());
    }

    #[test]
    fn entry_text_is_built_as_fail2ban_builds_it() {
        let e = entry(json!({
            "__CURSOR": "c1",
            "__REALTIME_TIMESTAMP": "1700000000123456",
            "_HOSTNAME": "web1",
            "SYSLOG_IDENTIFIER": "sshd",
            "_COMM": "sshd",
            "SYSLOG_PID": "4242",
            "_PID": "1",
            "MESSAGE": "Failed password for root from 192.0.2.7 port 22 ssh2"
        }))
        .unwrap();
        assert_eq!(
            e.text,
            "web1 sshd[4242]: Failed password for root from 192.0.2.7 port 22 ssh2"
        );
        assert_eq!(e.cursor, "c1");
        assert_eq!(e.time.as_microsecond(), 1_700_000_000_123_456);

        // No identifier: _COMM; no SYSLOG_PID: _PID; the source time wins.
        let e = entry(json!({
            "__CURSOR": "c2",
            "__REALTIME_TIMESTAMP": "1700000000000000",
            "_SOURCE_REALTIME_TIMESTAMP": "1699999999000000",
            "_COMM": "dovecot",
            "_PID": "77",
            "MESSAGE": "line one\nline two"
        }))
        .unwrap();
        assert_eq!(e.text, "dovecot[77]: line one\\nline two");
        assert_eq!(e.time.as_second(), 1_699_999_999);

        // Nothing but a message.
        let e = entry(json!({"__CURSOR": "c", "__REALTIME_TIMESTAMP": "0", "MESSAGE": "bare"}))
            .unwrap();
        assert_eq!(e.text, "bare");
    }

    #[test]
    fn byte_array_null_and_repeated_messages() {
        // "caf\xe9 192.0.2.1": not UTF-8, so journalctl sends bytes.
        let bytes: Vec<Value> = b"caf\xe9 192.0.2.1".iter().map(|&b| json!(b)).collect();
        let rec = json!({"__CURSOR": "c", "__REALTIME_TIMESTAMP": "1", "SYSLOG_IDENTIFIER": "app", "MESSAGE": bytes});
        let e = format_entry(rec.as_object().unwrap(), Encoding::Latin1, 1024).unwrap();
        assert_eq!(e.text, "app: café 192.0.2.1");
        let e = format_entry(rec.as_object().unwrap(), Encoding::Utf8, 1024).unwrap();
        assert_eq!(e.text, "app: caf\u{fffd} 192.0.2.1");

        let e = entry(json!({"__CURSOR": "c", "__REALTIME_TIMESTAMP": "1", "SYSLOG_IDENTIFIER": "app", "MESSAGE": null})).unwrap();
        assert_eq!(e.text, "app: ");

        let e = entry(
            json!({"__CURSOR": "c", "__REALTIME_TIMESTAMP": "1", "MESSAGE": ["a", [98, 99]]}),
        )
        .unwrap();
        assert_eq!(e.text, "a bc");
    }

    #[test]
    fn pids_are_formatted_like_python() {
        let with_pid = |pid: &str| {
            entry(json!({"__CURSOR": "c", "__REALTIME_TIMESTAMP": "1", "SYSLOG_IDENTIFIER": "x", "SYSLOG_PID": pid, "MESSAGE": "m"}))
                .unwrap()
                .text
        };
        assert_eq!(with_pid("0042"), "x[42]: m");
        assert_eq!(with_pid(" 7 "), "x[7]: m");
        assert_eq!(with_pid("0x1f"), "x[31]: m");
        assert_eq!(with_pid("abc"), "x[abc]: m");
        assert_eq!(with_pid(""), "x: m");
        assert_eq!(parse_py_int("010", true), None);
        assert_eq!(parse_py_int("1_000", false), Some(1000));
        assert_eq!(parse_py_int("-5", false), Some(-5));
    }

    #[test]
    fn kernel_messages_carry_their_monotonic_time() {
        let e = entry(json!({
            "__CURSOR": "c", "__REALTIME_TIMESTAMP": "1",
            "__MONOTONIC_TIMESTAMP": "12345678",
            "SYSLOG_IDENTIFIER": "kernel",
            "MESSAGE": "IN=eth0 SRC=192.0.2.9"
        }))
        .unwrap();
        assert_eq!(e.text, "kernel: [   12.345678] IN=eth0 SRC=192.0.2.9");
    }

    #[test]
    fn bad_records_are_errors_not_panics() {
        assert!(matches!(
            parse_record(b"not json", Encoding::Utf8, 100),
            Err(RecordError::Json(_))
        ));
        assert_eq!(
            entry(json!({"__REALTIME_TIMESTAMP": "1"})).unwrap_err(),
            RecordError::Missing("__CURSOR")
        );
        assert!(matches!(
            entry(json!({"__CURSOR": "c", "__REALTIME_TIMESTAMP": "soon"})),
            Err(RecordError::BadTime(_))
        ));
        let long = "x".repeat(50);
        let e = format_entry(
            json!({"__CURSOR": "c", "__REALTIME_TIMESTAMP": "1", "MESSAGE": format!("é{long}")})
                .as_object()
                .unwrap(),
            Encoding::Utf8,
            10,
        )
        .unwrap();
        assert_eq!(e.text.len(), 10);
    }

    #[test]
    fn cursor_time_reads_the_t_field() {
        let c = "s=739ad463348b4ceca5a9e69c95a3c93f;i=4ece7;b=6c7c6013a8674c5ab6b8dc4a1ab5f8d6;m=5e0ae5cce;t=5f1c8ad6e6e46;x=2fc9a4d18cd2e9b1";
        let t = cursor_time(c).unwrap();
        assert_eq!(t.as_microsecond(), 0x5f1c8ad6e6e46);
        assert_eq!(cursor_time("garbage"), None);
    }

    #[tokio::test]
    async fn records_are_read_and_long_ones_skipped() {
        let input = b"{\"a\":1}\n0123456789012345678901234567890\nxy\n".to_vec();
        let mut r = BufReader::with_capacity(8, &input[..]);
        let mut buf = Vec::new();
        assert_eq!(next_record(&mut r, &mut buf, 20).await.unwrap(), Some(true));
        assert_eq!(buf, b"{\"a\":1}");
        assert_eq!(
            next_record(&mut r, &mut buf, 20).await.unwrap(),
            Some(false)
        );
        assert_eq!(next_record(&mut r, &mut buf, 20).await.unwrap(), Some(true));
        assert_eq!(buf, b"xy");
        assert_eq!(next_record(&mut r, &mut buf, 20).await.unwrap(), None);
    }
}
