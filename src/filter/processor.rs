//! One source's lines through date detection and the filter: fail2ban's `processLine`.
//!
//! The date is found and cut out, the text before and after it goes through the filter
//! pipeline, and failures carry the line's time. Lines whose date cannot be read take the
//! previous line's date when it is less than a minute old (continuation lines of a
//! multi-line message), as fail2ban does; what to do with a line that has no date at all
//! depends on the caller: a live daemon uses "now"; offline (`warden test`, the sample
//! tests) the line's failures are kept without a time, as fail2ban-regex keeps them.
//! Rules about old and future timestamps belong to the jail, which knows its findtime.

use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};

use super::pipeline::{Filter, FilterSpec, FilterState, LineParts, LineResult, SessionClock};
use crate::config::FilterConfig;
use crate::date::{DateDetector, DateError};

/// A date older than this is not lent to a following dateless line.
const LAST_DATE_REUSE: SignedDuration = SignedDuration::from_secs(60);

/// What became of one line.
#[derive(Debug, Clone)]
pub struct Processed {
    pub result: LineResult,
    /// The time the line was given (None: no date and not live; the failures then carry
    /// the reference time, which is no date of the line).
    pub time: Option<Timestamp>,
    /// The date template that matched, if any.
    pub template: Option<usize>,
    /// True when the line's own date could not be found or read.
    pub no_date: bool,
}

/// Date detection and filter state of one source.
#[derive(Debug)]
pub struct LineProcessor {
    dates: DateDetector,
    state: FilterState,
    last: Option<(Timestamp, String)>,
    /// Report every matching failregex (fail2ban-regex and the sample tests), not just the
    /// first.
    pub check_all: bool,
    /// A live daemon: a line with no date takes "now" instead of being left out.
    pub live: bool,
}

impl LineProcessor {
    pub fn new(filter: Arc<Filter>, dates: DateDetector) -> LineProcessor {
        LineProcessor {
            dates,
            state: FilterState::new(filter),
            last: None,
            check_all: false,
            live: true,
        }
    }

    pub fn filter(&self) -> &Arc<Filter> {
        self.state.filter()
    }

    pub fn dates(&self) -> &DateDetector {
        &self.dates
    }

    pub fn state(&self) -> &FilterState {
        &self.state
    }

    /// Whether failures carry their fields, users and matched lines (see
    /// [`FilterState::set_details`]).
    pub fn set_details(&mut self, on: bool) {
        self.state.set_details(on);
    }

    /// Whether every line given holds no newline (see [`FilterState::set_split_lines`]).
    pub fn set_split_lines(&mut self, on: bool) {
        self.state.set_split_lines(on);
    }

    /// Chooses the clock that ages sessions (see [`SessionClock`]).
    pub fn set_session_clock(&mut self, clock: SessionClock) {
        self.state.set_session_clock(clock);
    }

    /// Runs one line (without its line ending) at wall-clock or simulated time `now`.
    pub fn process(&mut self, line: &str, now: Timestamp) -> Processed {
        let mut parts = LineParts {
            before: "",
            date: "",
            after: line,
        };
        let mut time = None;
        let mut template = None;
        match self.dates.detect(line, now) {
            Some(m) if !m.span.is_empty() => {
                template = Some(m.template);
                let (before, after) = m.around(line);
                parts = LineParts {
                    before,
                    date: &line[m.span.clone()],
                    after,
                };
                if m.parsed {
                    time = Some(m.time);
                    remember(&mut self.last, m.time, &line[m.span]);
                }
            }
            Some(m) => {
                // The template matched nothing (an optional date): the previous date if it is
                // recent, else now.
                template = Some(m.template);
                time = Some(match recent(&self.last, now) {
                    Some((t, _)) => t,
                    None => now,
                });
            }
            None => {}
        }
        let no_date = time.is_none();
        if no_date {
            if let Some((t, text)) = recent(&self.last, now) {
                parts = LineParts {
                    before: "",
                    date: text,
                    after: line,
                };
                time = Some(t);
            } else if self.live {
                time = Some(now);
            }
        }
        let result = self
            .state
            .process_parts(parts, time.unwrap_or(now), self.check_all);
        Processed {
            result,
            time,
            template,
            no_date,
        }
    }

    /// Runs a line whose time its source knows (a journal entry): no date detection;
    /// `date_text` is what fail2ban puts in front of the line in a failure's `matches`
    /// (the journal backend's formatted time). Following dateless lines may borrow it.
    pub fn process_dated(&mut self, line: &str, time: Timestamp, date_text: &str) -> Processed {
        let parts = LineParts {
            before: "",
            date: date_text,
            after: line,
        };
        let result = self.state.process_parts(parts, time, self.check_all);
        remember(&mut self.last, time, date_text);
        Processed {
            result,
            time: Some(time),
            template: None,
            no_date: false,
        }
    }
}

/// Stores the line's date as the last one; the text is kept in the same memory from line
/// to line.
fn remember(last: &mut Option<(Timestamp, String)>, time: Timestamp, date_text: &str) {
    match last {
        Some((t, text)) => {
            *t = time;
            text.clear();
            text.push_str(date_text);
        }
        None => *last = Some((time, date_text.to_string())),
    }
}

/// The last date and its text, when recent enough to lend to a dateless line. Borrowed
/// from the processor's field alone, so the line can go to the filter state without a
/// copy of the text.
fn recent(last: &Option<(Timestamp, String)>, now: Timestamp) -> Option<(Timestamp, &str)> {
    last.as_ref()
        .filter(|(t, _)| *t > now - LAST_DATE_REUSE)
        .map(|(t, text)| (*t, text.as_str()))
}

/// Why a filter configuration cannot be turned into a processor.
#[derive(Debug, thiserror::Error)]
pub enum ProcessorError {
    #[error(transparent)]
    Filter(#[from] super::pipeline::FilterError),
    #[error("datepattern: {0}")]
    Date(#[from] DateError),
    #[error("{0}")]
    Option(String),
}

/// The filter spec of a resolved filter configuration.
pub fn spec_from_config(fc: &FilterConfig, usedns: crate::config::UseDns) -> FilterSpec {
    let flag = |k: &str| {
        fc.options.get(k).is_some_and(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "1" | "yes" | "true" | "on"
            )
        })
    };
    FilterSpec {
        prefregex: fc.prefregex.clone(),
        failregex: fc.failregex.clone(),
        ignoreregex: fc.ignoreregex.clone(),
        maxlines: fc.maxlines.max(1),
        usedns,
        unicode: flag("unicode"),
        backtrack_limit: fc
            .options
            .get("backtrack_limit")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(super::pipeline::DEFAULT_BACKTRACK_LIMIT),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn processor(datepattern: Option<&str>, failregex: &str) -> LineProcessor {
        let filter = Filter::compile(&FilterSpec {
            failregex: vec![failregex.to_string()],
            ..FilterSpec::default()
        })
        .unwrap();
        let dates = DateDetector::new(datepattern, jiff::tz::TimeZone::UTC).unwrap();
        LineProcessor::new(Arc::new(filter), dates)
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn date_is_cut_and_failure_gets_the_line_time() {
        let mut p = processor(None, r"^\s*Failed password for \S+ from <HOST>");
        let now = ts("2024-03-10T12:00:00Z");
        let out = p.process(
            "Mar 10 11:59:00 Failed password for root from 192.0.2.7 port 22",
            now,
        );
        let LineResult::Matched(f) = out.result else {
            panic!("{out:?}")
        };
        assert_eq!(f[0].id, "192.0.2.7");
        assert_eq!(f[0].time, ts("2024-03-10T11:59:00Z"));
        assert!(!out.no_date);
        assert!(
            f[0].matches[0].starts_with("Mar 10 11:59:00 "),
            "whole line kept"
        );
    }

    #[test]
    fn dateless_line_borrows_a_recent_date_or_takes_now_when_live() {
        let mut p = processor(None, r"^\s*Failed from <HOST>");
        let now = ts("2024-03-10T12:00:00Z");
        p.process("Mar 10 11:59:30 something else", now);
        let out = p.process("Failed from 192.0.2.8", now);
        assert!(out.no_date);
        assert_eq!(out.time, Some(ts("2024-03-10T11:59:30Z")));
        // More than a minute later the old date is not lent any more.
        let later = ts("2024-03-10T12:05:00Z");
        let out = p.process("Failed from 192.0.2.8", later);
        assert_eq!(out.time, Some(later));
        assert!(matches!(out.result, LineResult::Matched(_)));
        // Offline, a line with no date keeps its failure, without a time.
        p.live = false;
        let out = p.process("Failed from 192.0.2.8", later);
        assert_eq!(out.time, None);
        assert!(matches!(out.result, LineResult::Matched(_)));
    }

    #[test]
    fn none_datepattern_uses_now() {
        let mut p = processor(Some("{NONE}"), r"^Failed from <HOST>");
        p.live = false;
        let now = ts("2024-03-10T12:00:00Z");
        let out = p.process("Failed from 192.0.2.9", now);
        assert_eq!(out.time, Some(now));
        assert!(matches!(out.result, LineResult::Matched(_)));
    }
}
