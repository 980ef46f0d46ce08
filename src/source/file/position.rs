//! Read positions as plain values: what the ledger stores per followed path so a restart
//! resumes exactly where the previous run stopped.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Where reading of one configured log path stands.
///
/// `offset` is the byte offset just after the last complete line handed out; bytes of an
/// unfinished line are read again after a restart. The file is recognised by `inode` and
/// `first_line_hash` (`dev` is kept as a hint: device numbers of some file systems change
/// across reboots). `inode == 0` means unknown (a position carried over from fail2ban, which
/// stores only the checksum and offset); such a position matches on the checksum alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilePosition {
    /// The configured path (a glob match), not the name a rotated file now has.
    pub path: PathBuf,
    pub dev: u64,
    pub inode: u64,
    /// SHA-1 (hex) of the first line, None while the file has no complete line.
    pub first_line_hash: Option<String>,
    pub offset: u64,
    /// Files rotated away from `path` that were still being read, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rotated: Vec<RotatedPosition>,
}

/// A file rotated away from its configured path whose end has not been read yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotatedPosition {
    pub dev: u64,
    pub inode: u64,
    pub first_line_hash: Option<String>,
    pub offset: u64,
}

impl FilePosition {
    /// The identity part of the position, without the path.
    pub(crate) fn main(&self) -> RotatedPosition {
        RotatedPosition {
            dev: self.dev,
            inode: self.inode,
            first_line_hash: self.first_line_hash.clone(),
            offset: self.offset,
        }
    }

    /// A position carried over from fail2ban's `logs` table (path, `firstlinemd5`,
    /// `lastfilepos`): no inode, identity by checksum.
    pub fn from_fail2ban(path: impl Into<PathBuf>, firstlinemd5: &str, lastfilepos: u64) -> Self {
        let hash = firstlinemd5.trim().to_ascii_lowercase();
        FilePosition {
            path: path.into(),
            dev: 0,
            inode: 0,
            first_line_hash: (!hash.is_empty()).then_some(hash),
            offset: lastfilepos,
            rotated: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_round_trip_and_rotated_is_optional() {
        let p = FilePosition {
            path: "/var/log/auth.log".into(),
            dev: 2049,
            inode: 1234,
            first_line_hash: Some("ab".into()),
            offset: 99,
            rotated: vec![],
        };
        let json = serde_json::to_string(&p).unwrap();
        assert!(!json.contains("rotated"), "{json}");
        let back: FilePosition = serde_json::from_str(&json).unwrap();
        assert_eq!(back, p);

        let with = FilePosition {
            rotated: vec![RotatedPosition {
                dev: 1,
                inode: 2,
                first_line_hash: None,
                offset: 0,
            }],
            ..p
        };
        let back: FilePosition =
            serde_json::from_str(&serde_json::to_string(&with).unwrap()).unwrap();
        assert_eq!(back, with);
    }

    #[test]
    fn fail2ban_positions_have_no_inode() {
        let p = FilePosition::from_fail2ban("/var/log/x", "ABCDEF", 10);
        assert_eq!(p.inode, 0);
        assert_eq!(p.first_line_hash.as_deref(), Some("abcdef"));
        assert_eq!(
            FilePosition::from_fail2ban("/x", "", 0).first_line_hash,
            None
        );
    }
}
