//! Problems found while loading, before they are attached to a jail.

use super::model::{Diagnostic, Span};

/// A problem at a place in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    pub span: Span,
    pub message: String,
}

impl Problem {
    pub fn new(span: Span, message: impl Into<String>) -> Self {
        Problem {
            span,
            message: message.into(),
        }
    }

    pub fn into_diag(self, jail: Option<&str>) -> Diagnostic {
        Diagnostic {
            span: self.span,
            jail: jail.map(str::to_string),
            message: self.message,
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.span, self.message)
    }
}

/// `s` cut to `max` characters, with `...` when something was cut (long values in messages).
pub(crate) fn clip(s: &str, max: usize) -> String {
    let cut: String = s.chars().take(max).collect();
    if cut.len() < s.len() {
        format!("{cut}...")
    } else {
        cut
    }
}
