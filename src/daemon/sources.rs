//! Sources feeding jails: shared file tailers, journal readers and pflog readers.
//!
//! A file tailer follows one `logpath` entry (one pattern, one encoding) for every jail
//! that names it, so ten jails reading `auth.log` read it once; and the jails among them
//! with the same filter share one matcher, so each line is also matched once (on the
//! blocking pool). The failures found go to every subscribed jail with one completion
//! token; the read positions after the batch are saved (in the ledger, under the owner
//! `file:<pattern>`) once every jail has counted them.
//! Journal and pflog readers belong to one jail each; they save their cursor the same way.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use super::clock::Clock;
use super::jail::{Completion, JailInput, Save, match_lines};
use crate::filter::LineProcessor;
use crate::source::file::{FilePosition, FileSource, FileTailer, Notice, WatchOptions};
use crate::source::journal::{JournalOptions, JournalSource, JournalStart};
use crate::source::pflog::{PflogPosition, PflogTail, StartAt};

/// The source name under which a tailer's positions are saved.
pub const POSITIONS: &str = "positions";
/// The source name of a journal cursor.
pub const JOURNAL: &str = "journal";

/// A jail subscribed to a source.
#[derive(Debug, Clone)]
pub struct Subscriber {
    pub jail: String,
    pub tx: mpsc::Sender<JailInput>,
}

/// The identity of a shared tailer.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TailKey {
    pub pattern: String,
    pub encoding: String,
}

impl TailKey {
    /// The ledger owner of the tailer's positions.
    pub fn owner(&self) -> String {
        if self.encoding == "auto" || self.encoding.eq_ignore_ascii_case("utf-8") {
            format!("file:{}", self.pattern)
        } else {
            format!("file:{}:{}", self.encoding, self.pattern)
        }
    }
}

/// Jails sharing one matcher on a tailer (same filter, same time zone): each line is
/// matched once for all of them.
#[derive(Debug, Clone)]
pub struct Group {
    pub key: String,
    pub jails: Vec<Subscriber>,
}

/// A change of a tailer's groups, with matchers for the groups that are new.
struct GroupUpdate {
    groups: Vec<Group>,
    processors: Vec<(String, Box<LineProcessor>)>,
}

/// A running shared tailer.
#[derive(Debug)]
pub struct Tailer {
    pub key: TailKey,
    source: Option<FileSource>,
    forward: Option<JoinHandle<()>>,
    ctl: mpsc::UnboundedSender<GroupUpdate>,
    groups: BTreeMap<String, Vec<Subscriber>>,
    /// Files followed now (for `warden status`).
    pub files: Arc<Mutex<BTreeSet<PathBuf>>>,
    pub notify: bool,
}

impl std::fmt::Debug for GroupUpdate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupUpdate")
            .field("groups", &self.groups)
            .finish_non_exhaustive()
    }
}

impl Tailer {
    /// Starts following `key` from `saved` positions for the jails of `group`, matched by
    /// `processor`. `tail`: start at the end of files present now that have no saved
    /// position.
    #[allow(clippy::too_many_arguments)]
    pub fn spawn(
        key: TailKey,
        tail: bool,
        notify: bool,
        saved: Vec<FilePosition>,
        group: Group,
        processor: Box<LineProcessor>,
        clock: Arc<dyn Clock>,
    ) -> Result<Tailer, crate::source::file::FileSourceError> {
        let entry = if tail {
            format!("{} tail", key.pattern)
        } else {
            key.pattern.clone()
        };
        let tailer = FileTailer::from_config(&[entry], &key.encoding, saved.clone())?;
        let (source, rx) = FileSource::spawn(
            tailer,
            WatchOptions {
                notify,
                ..WatchOptions::default()
            },
        );
        let (ctl, ctl_rx) = mpsc::unbounded_channel();
        let files = Arc::new(Mutex::new(BTreeSet::new()));
        let mut procs = HashMap::new();
        procs.insert(group.key.clone(), processor);
        let forward = tokio::spawn(forward(
            rx,
            ctl_rx,
            vec![group.clone()],
            procs,
            key.owner(),
            saved,
            files.clone(),
            clock,
        ));
        Ok(Tailer {
            key,
            source: Some(source),
            forward: Some(forward),
            ctl,
            groups: BTreeMap::from([(group.key, group.jails)]),
            files,
            notify,
        })
    }

    /// Whether jails of the matcher `key` already read this tailer.
    pub fn has_group(&self, key: &str) -> bool {
        self.groups.contains_key(key)
    }

    /// Adds a jail to the group `key`; `processor` is needed when the group is new.
    pub fn subscribe(&mut self, key: &str, sub: Subscriber, processor: Option<Box<LineProcessor>>) {
        self.groups.entry(key.to_string()).or_default().push(sub);
        let processors = processor
            .map(|p| vec![(key.to_string(), p)])
            .unwrap_or_default();
        self.push(processors);
    }

    /// Removes a jail; true when no jail is left.
    pub fn unsubscribe(&mut self, jail: &str) -> bool {
        for subs in self.groups.values_mut() {
            subs.retain(|s| s.jail != jail);
        }
        self.groups.retain(|_, subs| !subs.is_empty());
        self.push(Vec::new());
        self.groups.is_empty()
    }

    /// The jails reading this tailer.
    pub fn jails(&self) -> Vec<String> {
        self.groups
            .values()
            .flat_map(|g| g.iter().map(|s| s.jail.clone()))
            .collect()
    }

    fn push(&self, processors: Vec<(String, Box<LineProcessor>)>) {
        let groups = self
            .groups
            .iter()
            .map(|(k, jails)| Group {
                key: k.clone(),
                jails: jails.clone(),
            })
            .collect();
        let _ = self.ctl.send(GroupUpdate { groups, processors });
    }

    /// Stops reading; batches already handed on are still processed by the jails.
    pub async fn stop(mut self) {
        if let Some(s) = self.source.take() {
            s.stop().await;
        }
        if let Some(f) = self.forward.take() {
            let _ = f.await;
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn forward(
    mut rx: mpsc::Receiver<crate::source::file::Batch>,
    mut ctl: mpsc::UnboundedReceiver<GroupUpdate>,
    mut groups: Vec<Group>,
    mut procs: HashMap<String, Box<LineProcessor>>,
    owner: String,
    saved: Vec<FilePosition>,
    files: Arc<Mutex<BTreeSet<PathBuf>>>,
    clock: Arc<dyn Clock>,
) {
    let mut positions: BTreeMap<PathBuf, FilePosition> =
        saved.into_iter().map(|p| (p.path.clone(), p)).collect();
    let mut catch_up = true;
    loop {
        let batch = tokio::select! {
            biased;
            u = ctl.recv() => {
                if let Some(u) = u {
                    procs.extend(u.processors);
                    procs.retain(|k, _| u.groups.iter().any(|g| &g.key == k));
                    groups = u.groups;
                }
                continue;
            }
            b = rx.recv() => match b {
                Some(b) => b,
                None => break,
            },
        };
        {
            let mut f = files.lock().unwrap_or_else(|e| e.into_inner());
            for n in &batch.notices {
                match n {
                    Notice::Opened { path, .. } | Notice::Rotated { path } => {
                        f.insert(path.clone());
                    }
                    Notice::Missing { path } | Notice::Error { path, .. } => {
                        f.remove(path);
                    }
                    _ => {}
                }
            }
            for p in &batch.forgotten {
                f.remove(p);
            }
        }
        let changed = !batch.positions.is_empty() || !batch.forgotten.is_empty();
        for p in batch.positions {
            positions.insert(p.path.clone(), p);
        }
        for p in &batch.forgotten {
            positions.remove(p);
        }
        let this_catch_up = catch_up;
        if !batch.more {
            catch_up = false;
        }
        if (batch.lines.is_empty() && !changed) || groups.is_empty() {
            continue;
        }
        let n_lines = batch.lines.len() as u64;
        let lines = batch.lines;
        let keys: Vec<String> = groups.iter().map(|g| g.key.clone()).collect();
        let now = clock.timestamp();
        let mut taken = std::mem::take(&mut procs);
        let (back, results) = super::blocking(move || {
            let mut results = Vec::with_capacity(keys.len());
            for k in keys {
                if let Some(p) = taken.get_mut(&k) {
                    let (found, matched) = match_lines(p, &lines, now);
                    results.push((k, Arc::new(found), matched));
                }
            }
            (taken, results)
        })
        .await;
        procs = back;
        let receivers: usize = results
            .iter()
            .filter_map(|(k, _, _)| groups.iter().find(|g| &g.key == k))
            .map(|g| g.jails.len())
            .sum();
        if receivers == 0 {
            continue;
        }
        let save = Save {
            owner: owner.clone(),
            source: POSITIONS.to_string(),
            value: serde_json::to_string(&positions.values().collect::<Vec<_>>())
                .expect("positions serialise"),
        };
        let done = Completion::new(receivers, save);
        for (k, found, matched) in results {
            let Some(g) = groups.iter().find(|g| g.key == k) else {
                continue;
            };
            for s in &g.jails {
                let msg = JailInput::Found {
                    found: found.clone(),
                    lines: n_lines,
                    matched,
                    catch_up: this_catch_up,
                    done: Some(done.clone()),
                };
                if s.tx.send(msg).await.is_err() {
                    // The jail is gone: count it done so the others still save.
                    done.finish_one();
                    debug!(jail = %s.jail, "A jail stopped while its tailer was sending.");
                }
            }
        }
    }
}

/// Reads saved tailer positions (as stored by the completion of a batch).
pub fn parse_positions(value: &str) -> Vec<FilePosition> {
    serde_json::from_str(value).unwrap_or_else(|e| {
        warn!(error = %e, "Unreadable saved file positions; reading from the start.");
        Vec::new()
    })
}

/// A source that belongs to one jail.
#[derive(Debug)]
pub enum OwnSource {
    Journal(JournalSource, JoinHandle<()>),
    Pflog(watch::Sender<bool>, JoinHandle<()>),
}

impl OwnSource {
    pub async fn stop(self) {
        match self {
            OwnSource::Journal(src, fwd) => {
                src.stop().await;
                let _ = fwd.await;
            }
            OwnSource::Pflog(stop, task) => {
                let _ = stop.send(true);
                let _ = task.await;
            }
        }
    }
}

/// Starts a journal reader for a jail.
pub fn spawn_journal(
    jail: &str,
    opts: JournalOptions,
    start: JournalStart,
    tx: mpsc::Sender<JailInput>,
) -> OwnSource {
    let (src, mut rx) = JournalSource::spawn(opts, start, 16);
    let owner = format!("jail:{jail}");
    let fwd = tokio::spawn(async move {
        while let Some(batch) = rx.recv().await {
            let done = batch.cursor.map(|c| {
                Completion::new(
                    1,
                    Save {
                        owner: owner.clone(),
                        source: JOURNAL.to_string(),
                        value: c,
                    },
                )
            });
            if tx
                .send(JailInput::Journal {
                    entries: Arc::new(batch.entries),
                    done,
                })
                .await
                .is_err()
            {
                break;
            }
        }
    });
    OwnSource::Journal(src, fwd)
}

/// The cursor source name of a pflog file.
pub fn pflog_source(path: &std::path::Path) -> String {
    format!("pflog:{}", path.display())
}

/// Starts a pflog reader for a jail.
pub fn spawn_pflog(
    jail: &str,
    path: PathBuf,
    saved: Option<PflogPosition>,
    tx: mpsc::Sender<JailInput>,
) -> OwnSource {
    let (stop_tx, mut stop) = watch::channel(false);
    let owner = format!("jail:{jail}");
    let source = pflog_source(&path);
    let start = match saved {
        Some(p) => StartAt::Resume(p),
        None => StartAt::Beginning,
    };
    let jail = jail.to_string();
    let task = tokio::spawn(async move {
        let mut tail = Some(PflogTail::new(path, start));
        let mut last = None;
        let mut errors_logged = 0u32;
        loop {
            let t = tail.take().expect("put back after each poll");
            let (t, polled) = super::blocking(move || {
                let mut t = t;
                let p = t.poll();
                (t, p)
            })
            .await;
            let position = t.position();
            tail = Some(t);
            let mut events = Vec::with_capacity(polled.items.len());
            for item in polled.items {
                match item {
                    Ok(ev) => events.push(ev),
                    Err(e) => {
                        // A torn or hostile capture can produce an error per record.
                        if errors_logged < 10 {
                            errors_logged += 1;
                            warn!(jail = %jail, error = %e, "Unreadable pflog record.");
                        }
                    }
                }
            }
            if !events.is_empty() || position != last {
                last = position;
                let done = position.map(|p| {
                    Completion::new(
                        1,
                        Save {
                            owner: owner.clone(),
                            source: source.clone(),
                            value: serde_json::to_string(&p).expect("positions serialise"),
                        },
                    )
                });
                if tx.send(JailInput::Pflog { events, done }).await.is_err() {
                    break;
                }
            }
            if polled.more {
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.changed() => break,
            }
            if *stop.borrow() {
                break;
            }
        }
    });
    OwnSource::Pflog(stop_tx, task)
}
