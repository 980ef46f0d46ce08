//! Text encodings of logs (`logencoding`): the bytes of one line to a `String`.
//!
//! Filters work on text, but log files carry whatever bytes their writers produced. UTF-8 is
//! decoded lossily (an invalid sequence becomes U+FFFD), latin-1 maps each byte to the code
//! point of the same value, so no line is ever rejected for its bytes.

use serde::{Deserialize, Serialize};

/// An encoding warden can read a log in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Encoding {
    /// UTF-8, invalid sequences replaced (also `auto` and `ascii`).
    #[default]
    Utf8,
    /// ISO-8859-1: every byte is a character.
    Latin1,
}

/// A `logencoding` value warden cannot decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported logencoding {0:?} (supported: auto, utf-8, ascii, latin-1)")]
pub struct UnknownEncoding(pub String);

impl Encoding {
    /// Parses a `logencoding` value. `auto` means the locale's encoding in fail2ban; warden
    /// takes that to be UTF-8, the only locale encoding still in common use for logs.
    pub fn from_name(name: &str) -> Result<Self, UnknownEncoding> {
        let norm: String = name
            .trim()
            .chars()
            .filter(|c| !matches!(c, '-' | '_' | ' '))
            .collect::<String>()
            .to_ascii_lowercase();
        match norm.as_str() {
            "" | "auto" | "utf8" | "ascii" | "usascii" => Ok(Encoding::Utf8),
            "latin1" | "iso88591" | "iso8859" | "l1" | "8859" | "cp819" => Ok(Encoding::Latin1),
            _ => Err(UnknownEncoding(name.to_string())),
        }
    }

    /// The canonical name, for messages.
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Utf8 => "utf-8",
            Encoding::Latin1 => "latin-1",
        }
    }

    /// Decodes one line. Never fails.
    pub fn decode(self, bytes: &[u8]) -> String {
        match self {
            Encoding::Utf8 => String::from_utf8_lossy(bytes).into_owned(),
            Encoding::Latin1 => bytes.iter().map(|&b| char::from(b)).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_recognised_loosely() {
        for n in ["auto", "UTF-8", "utf8", "ascii", "US-ASCII", ""] {
            assert_eq!(Encoding::from_name(n), Ok(Encoding::Utf8), "{n}");
        }
        for n in ["latin-1", "Latin1", "ISO-8859-1", "iso8859_1", "L1"] {
            assert_eq!(Encoding::from_name(n), Ok(Encoding::Latin1), "{n}");
        }
        let err = Encoding::from_name("utf-16").unwrap_err();
        assert!(err.to_string().contains("\"utf-16\""), "{err}");
    }

    #[test]
    fn utf8_is_lossy_and_latin1_is_exact() {
        let bytes = b"user \xe9t\xe9 from 192.0.2.1 \xff";
        assert_eq!(
            Encoding::Utf8.decode(bytes),
            "user \u{fffd}t\u{fffd} from 192.0.2.1 \u{fffd}"
        );
        assert_eq!(Encoding::Latin1.decode(bytes), "user été from 192.0.2.1 ÿ");
        assert_eq!(Encoding::Utf8.decode("été".as_bytes()), "été");
    }
}
