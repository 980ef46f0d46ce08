//! Errors raised while building a date detector or parsing a time zone.

/// A bad `datepattern` or `logtimezone` value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DateError {
    /// The time zone specification is none of the accepted forms.
    #[error(
        "unknown time zone {spec:?}: expected UTC, GMT, Z, an abbreviation such as CET, \
         an offset such as UTC+0200 or -05:00, an Olson name such as Europe/Paris, \
         or a POSIX TZ string such as CET-1CEST,M3.5.0,M10.5.0"
    )]
    UnknownZone {
        /// The value as given.
        spec: String,
    },
    /// A `%` in a datepattern is followed by no known format code.
    #[error("datepattern {pattern:?}: unknown format code {code:?} at byte {at}")]
    UnknownCode {
        /// The datepattern line.
        pattern: String,
        /// The `%` and what follows it.
        code: String,
        /// Byte offset of the `%` in the line.
        at: usize,
    },
    /// The datepattern, once its format codes are expanded, is not a valid regular
    /// expression.
    #[error("datepattern {pattern:?}: invalid regular expression: {reason}")]
    Regex {
        /// The datepattern line.
        pattern: String,
        /// What the regex compiler said.
        reason: String,
    },
    /// Two datepattern lines produce templates with the same name.
    #[error("datepattern {pattern:?}: there is already a template named {name:?}")]
    Duplicate {
        /// The datepattern line that repeats an earlier one.
        pattern: String,
        /// The template name both produce.
        name: String,
    },
}
