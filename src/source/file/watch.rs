//! Running a tailer as a tokio task: `notify` events on the log directories wake it early,
//! a timer polls in any case, and batches go out through a bounded channel.
//!
//! Events are only a hint. Every wake-up reads whatever is new, so a lost, merged or
//! spurious event costs at most one poll interval of latency, never a line. kqueue (BSD)
//! reports directory changes but not writes to files inside, so there the timer does most
//! of the work.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use notify::event::{AccessKind, AccessMode, ModifyKind};
use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;

use super::pattern::LogPattern;
use super::rotated::rotated_base;
use super::{Batch, FilePosition, FileTailer};

/// How a [`FileSource`] is woken.
#[derive(Debug, Clone)]
pub struct WatchOptions {
    /// Polling interval (fail2ban's `sleeptime`, 1 s): the only wake-up with `backend =
    /// polling`, the fallback otherwise.
    pub poll_interval: Duration,
    /// Watch the log directories with inotify/kqueue (`backend = auto|pyinotify|...`).
    pub notify: bool,
    /// Batches waiting for the consumer before the source stops reading.
    pub channel_capacity: usize,
}

impl Default for WatchOptions {
    fn default() -> Self {
        WatchOptions {
            poll_interval: Duration::from_secs(1),
            notify: true,
            channel_capacity: 16,
        }
    }
}

/// Decides whether a file-system event concerns a tailer: it names a followed path, a path
/// a pattern matches, or a rotated generation of one.
#[derive(Debug, Clone)]
pub struct WakeFilter {
    patterns: Arc<Vec<LogPattern>>,
}

impl WakeFilter {
    pub(crate) fn new(patterns: Vec<LogPattern>) -> Self {
        WakeFilter {
            patterns: Arc::new(patterns),
        }
    }

    pub fn is_relevant(&self, path: &Path) -> bool {
        if self.patterns.iter().any(|p| p.matches(path)) {
            return true;
        }
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            return false;
        };
        let bytes = name.as_encoded_bytes();
        (1..bytes.len())
            .filter(|&i| matches!(bytes[i], b'.' | b'-' | b'_'))
            .filter_map(|i| std::str::from_utf8(&bytes[..i]).ok())
            .filter(|base| rotated_base(std::ffi::OsStr::new(base), name))
            .any(|base| {
                let p = dir.join(base);
                self.patterns.iter().any(|pat| pat.matches(&p))
            })
    }

    /// Whether an event should wake the tailer, and whether it changes directory entries
    /// (so glob patterns are to be expanded again).
    fn classify(&self, event: &notify::Event) -> (bool, bool) {
        let entries_changed = matches!(
            event.kind,
            EventKind::Create(_) | EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(_))
        );
        let kind_matters = match event.kind {
            // Our own opens and reads show up as access events.
            EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
            EventKind::Access(_) => false,
            _ => true,
        };
        if !kind_matters {
            return (false, false);
        }
        if event.paths.is_empty() || event.need_rescan() {
            return (true, true);
        }
        let relevant = event.paths.iter().any(|p| self.is_relevant(p));
        (relevant, relevant && entries_changed)
    }
}

/// A tailer running as a task. Dropping it stops the task; [`FileSource::stop`] also
/// returns the final positions.
#[derive(Debug)]
pub struct FileSource {
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<FileTailer>>,
}

impl FileSource {
    /// Starts following. Must be called within a tokio runtime. Each batch carries the
    /// lines of one poll and the positions after them.
    pub fn spawn(tailer: FileTailer, opts: WatchOptions) -> (FileSource, mpsc::Receiver<Batch>) {
        let (tx, rx) = mpsc::channel(opts.channel_capacity.max(1));
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(run(tailer, opts, tx, stop_rx));
        (
            FileSource {
                stop,
                task: Some(task),
            },
            rx,
        )
    }

    /// Stops the task and returns the positions of every followed path.
    pub async fn stop(mut self) -> Vec<FilePosition> {
        let _ = self.stop.send(true);
        match self.task.take() {
            Some(task) => match task.await {
                Ok(tailer) => tailer.positions(),
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(_) => Vec::new(),
            },
            None => Vec::new(),
        }
    }
}

impl Drop for FileSource {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

async fn run(
    tailer: FileTailer,
    opts: WatchOptions,
    tx: mpsc::Sender<Batch>,
    mut stop: watch::Receiver<bool>,
) -> FileTailer {
    let wake = Arc::new(Notify::new());
    let rescan = Arc::new(AtomicBool::new(false));
    let mut watcher = if opts.notify {
        make_watcher(tailer.wake_filter(), wake.clone(), rescan.clone())
    } else {
        None
    };
    let mut watched: BTreeSet<PathBuf> = BTreeSet::new();
    let mut tailer = Some(tailer);

    loop {
        // Read until nothing is left, handing each batch on.
        loop {
            let mut t = tailer.take().expect("tailer is put back after each poll");
            if rescan.swap(false, Ordering::Relaxed) {
                t.request_rescan();
            }
            let polled = tokio::task::spawn_blocking(move || {
                let batch = t.poll();
                (t, batch)
            })
            .await;
            let (t, batch) = match polled {
                Ok(r) => r,
                Err(e) => std::panic::resume_unwind(e.into_panic()),
            };
            tailer = Some(t);
            let more = batch.more;
            if !batch.is_empty() {
                tokio::select! {
                    sent = tx.send(batch) => if sent.is_err() {
                        return tailer.expect("just put back");
                    },
                    _ = stop.changed() => return tailer.expect("just put back"),
                }
            }
            if !more || *stop.borrow() {
                break;
            }
        }
        if *stop.borrow() {
            break;
        }
        if let Some(w) = watcher.as_mut() {
            update_watches(
                w,
                &mut watched,
                tailer.as_ref().expect("present").watch_dirs(),
            );
        }
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(opts.poll_interval) => {}
            _ = stop.changed() => break,
        }
    }
    tailer.expect("present")
}

fn make_watcher(
    filter: WakeFilter,
    wake: Arc<Notify>,
    rescan: Arc<AtomicBool>,
) -> Option<notify::RecommendedWatcher> {
    let handler = move |res: notify::Result<notify::Event>| match res {
        Ok(event) => {
            let (relevant, entries) = filter.classify(&event);
            if entries {
                rescan.store(true, Ordering::Relaxed);
            }
            if relevant {
                wake.notify_one();
            }
        }
        // An overflowed queue and the like: look at everything.
        Err(_) => {
            rescan.store(true, Ordering::Relaxed);
            wake.notify_one();
        }
    };
    match notify::recommended_watcher(handler) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(error = %e, "File notifications unavailable, polling only");
            None
        }
    }
}

/// Watches the directories that exist and are not watched yet; forgets watches on
/// directories that disappeared (the kernel dropped them) so they are set again.
fn update_watches(
    watcher: &mut notify::RecommendedWatcher,
    watched: &mut BTreeSet<PathBuf>,
    wanted: BTreeSet<PathBuf>,
) {
    watched.retain(|d| {
        let alive = d.is_dir();
        if !alive {
            let _ = watcher.unwatch(d);
        }
        alive
    });
    for dir in wanted {
        if watched.contains(&dir) || !dir.is_dir() {
            continue;
        }
        match watcher.watch(&dir, RecursiveMode::NonRecursive) {
            Ok(()) => {
                tracing::debug!(dir = %dir.display(), "Watching log directory");
                watched.insert(dir);
            }
            Err(e) => {
                tracing::debug!(dir = %dir.display(), error = %e, "Cannot watch log directory");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, DataChange};

    fn filter(specs: &[&str]) -> WakeFilter {
        WakeFilter::new(
            specs
                .iter()
                .map(|s| LogPattern::parse(s).unwrap())
                .collect(),
        )
    }

    fn event(kind: EventKind, path: &str) -> notify::Event {
        notify::Event::new(kind).add_path(PathBuf::from(path))
    }

    #[test]
    fn relevant_paths_are_matches_and_their_generations() {
        let f = filter(&["/var/log/auth.log", "/var/log/nginx/*.log"]);
        assert!(f.is_relevant(Path::new("/var/log/auth.log")));
        assert!(f.is_relevant(Path::new("/var/log/auth.log.1")));
        assert!(f.is_relevant(Path::new("/var/log/nginx/error.log")));
        assert!(f.is_relevant(Path::new("/var/log/nginx/error.log-20240101")));
        assert!(!f.is_relevant(Path::new("/var/log/syslog")));
        assert!(!f.is_relevant(Path::new("/var/log/auth.log.old")));
    }

    #[test]
    fn own_opens_do_not_wake_but_writes_and_renames_do() {
        let f = filter(&["/l/a.log"]);
        let open = event(
            EventKind::Access(AccessKind::Open(AccessMode::Read)),
            "/l/a.log",
        );
        assert_eq!(f.classify(&open), (false, false));
        let write = event(
            EventKind::Modify(ModifyKind::Data(DataChange::Any)),
            "/l/a.log",
        );
        assert_eq!(f.classify(&write), (true, false));
        let create = event(EventKind::Create(CreateKind::File), "/l/a.log");
        assert_eq!(f.classify(&create), (true, true));
        let other = event(EventKind::Create(CreateKind::File), "/l/b.log");
        assert_eq!(f.classify(&other), (false, false));
        let closed = event(
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            "/l/a.log",
        );
        assert_eq!(f.classify(&closed), (true, false));
    }
}
