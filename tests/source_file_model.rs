//! Model-based test of the file tailer: random sequences of appends (whole and partial
//! lines), rename-and-create and copytruncate rotations, polls, restarts from the positions
//! a ledger would hold, and the passing of time, checked against the sequence of lines a
//! writer produced. Rotations keep every generation (as logrotate does with a large
//! `rotate` count), so every written line can be found.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use warden::source::file::{FilePosition, FileTailer, LogPattern, TailOptions};

use crate::source_file::Log;

#[derive(Debug, Clone)]
enum Action {
    /// Complete lines.
    Append(usize),
    /// The start of a line, finished by the next append.
    AppendPartial,
    RenameRotate,
    CopyTruncate,
    Poll,
    /// Drop the tailer and start a new one from the positions reported so far.
    Restart,
    /// Time passes beyond the linger time.
    Wait,
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        4 => (1usize..4).prop_map(Action::Append),
        2 => Just(Action::AppendPartial),
        1 => Just(Action::RenameRotate),
        1 => Just(Action::CopyTruncate),
        4 => Just(Action::Poll),
        1 => Just(Action::Restart),
        1 => Just(Action::Wait),
    ]
}

/// What the writer did, as the tailer should report it.
#[derive(Default)]
struct Model {
    /// Every line in the order written.
    expected: Vec<String>,
    /// Lines that were unfinished when their file was rotated: handed out when the rotated
    /// file is closed, which with a linger time is after lines of newer files.
    late: Vec<String>,
    /// The unfinished line of the current file.
    partial: String,
    next: usize,
}

impl Model {
    fn id(&mut self) -> usize {
        self.next += 1;
        self.next
    }

    fn rotated(&mut self) {
        if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            self.late.push(line.clone());
            self.expected.push(line);
        }
    }
}

struct Harness {
    log: Log,
    opts: TailOptions,
    tailer: FileTailer,
    /// What a ledger would hold: the latest position reported per path.
    ledger: BTreeMap<PathBuf, FilePosition>,
    delivered: Vec<String>,
    now: Instant,
}

impl Harness {
    fn new(linger: Duration) -> Harness {
        let log = Log::new("model.log");
        // A generation from before (older than the log): gives a first start something to
        // recognise later.
        std::fs::write(log.generation(1), "from an earlier rotation\n").unwrap();
        std::fs::File::options()
            .write(true)
            .open(log.generation(1))
            .unwrap()
            .set_modified(std::time::SystemTime::now() - Duration::from_secs(3600))
            .unwrap();
        let opts = TailOptions {
            linger,
            max_batch_lines: 7,
            ..TailOptions::default()
        };
        let tailer = new_tailer(&log, &opts, vec![]);
        let mut h = Harness {
            log,
            opts,
            tailer,
            ledger: BTreeMap::new(),
            delivered: Vec::new(),
            now: Instant::now(),
        };
        h.poll();
        h
    }

    fn poll(&mut self) {
        for _ in 0..1000 {
            let b = self.tailer.poll_at(self.now);
            self.delivered.extend(b.lines.into_iter().map(|l| l.text));
            for p in b.positions {
                self.ledger.insert(p.path.clone(), p);
            }
            if !b.more {
                return;
            }
        }
        panic!("the tailer kept asking to be polled");
    }

    fn restart(&mut self) {
        let saved: Vec<FilePosition> = self.ledger.values().cloned().collect();
        // As stored: through JSON.
        let saved = serde_json::from_str(&serde_json::to_string(&saved).unwrap()).unwrap();
        self.tailer = new_tailer(&self.log, &self.opts, saved);
    }
}

fn new_tailer(log: &Log, opts: &TailOptions, saved: Vec<FilePosition>) -> FileTailer {
    FileTailer::new(
        vec![LogPattern::parse(&log.spec()).unwrap()],
        opts.clone(),
        saved,
    )
}

fn run(actions: &[Action], linger: Duration) -> Result<(), TestCaseError> {
    let mut h = Harness::new(linger);
    let mut m = Model::default();
    for a in actions {
        match a {
            Action::Append(n) => {
                for _ in 0..*n {
                    let id = m.id();
                    let piece = format!("line-{id}");
                    h.log.append(&format!("{piece}\n"));
                    let line = std::mem::take(&mut m.partial) + &piece;
                    m.expected.push(line);
                }
            }
            Action::AppendPartial => {
                let id = m.id();
                let piece = format!("part-{id}/");
                h.log.append(&piece);
                m.partial.push_str(&piece);
            }
            Action::RenameRotate => {
                h.log.rotate_rename();
                m.rotated();
            }
            Action::CopyTruncate => {
                h.log.rotate_copytruncate();
                m.rotated();
            }
            Action::Poll => h.poll(),
            Action::Restart => h.restart(),
            Action::Wait => h.now += linger + Duration::from_secs(1),
        }
        // Whatever has been handed out so far is a prefix of what was written (lines of
        // rotated files that were unfinished may come later when files linger).
        let in_order: Vec<&String> = h.delivered.iter().filter(|l| !m.late.contains(l)).collect();
        let expected_order: Vec<&String> =
            m.expected.iter().filter(|l| !m.late.contains(l)).collect();
        prop_assert!(
            expected_order.starts_with(&in_order),
            "after {a:?}: delivered {:?}\nexpected prefix of {:?}",
            h.delivered,
            m.expected
        );
    }
    // Finish the last line, let rotated files close, read everything.
    let id = m.id();
    h.log.append(&format!("end-{id}\n"));
    m.expected
        .push(std::mem::take(&mut m.partial) + &format!("end-{id}"));
    h.poll();
    h.now += linger + Duration::from_secs(1);
    h.poll();

    if linger.is_zero() {
        prop_assert_eq!(&h.delivered, &m.expected);
    } else {
        let mut got = h.delivered.clone();
        let mut want = m.expected.clone();
        got.sort();
        want.sort();
        prop_assert_eq!(got, want, "delivered {:?}", h.delivered);
        let in_order: Vec<&String> = h.delivered.iter().filter(|l| !m.late.contains(l)).collect();
        let expected_order: Vec<&String> =
            m.expected.iter().filter(|l| !m.late.contains(l)).collect();
        prop_assert_eq!(in_order, expected_order);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn every_line_exactly_once_in_order(actions in proptest::collection::vec(action(), 1..40)) {
        run(&actions, Duration::ZERO)?;
    }

    #[test]
    fn every_line_exactly_once_with_lingering_files(
        actions in proptest::collection::vec(action(), 1..40)
    ) {
        run(&actions, Duration::from_secs(10))?;
    }
}

#[test]
fn regression_restart_twice_before_a_poll() {
    let actions = [
        Action::Append(2),
        Action::RenameRotate,
        Action::Restart,
        Action::Append(1),
        Action::Restart,
        Action::CopyTruncate,
        Action::Poll,
    ];
    run(&actions, Duration::ZERO).unwrap();
}
