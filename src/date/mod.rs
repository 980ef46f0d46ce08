//! Date templates and detection: finds the timestamp in a log line and parses it.
//!
//! A [`DateDetector`] is built from a filter's `datepattern` (or fail2ban's default
//! templates) and a zone, and fed the lines of one source in order. It finds the date with
//! fail2ban's template list and selection rules, and reports the time and the byte range
//! to cut out of the line before the failregex is applied. The default templates are
//! native recognisers; custom patterns are regular expressions with strptime `%` codes.

mod defaults;
mod detector;
mod error;
mod fields;
mod native;
mod pattern;
mod template;
mod zone;

pub use detector::{DateDetector, DateMatch};
pub use error::DateError;
pub use zone::{abbreviation_offset, local_zone, parse_timezone};
