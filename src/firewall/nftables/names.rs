//! Names of the objects a jail owns in the shared table.
//!
//! Jail names come from configuration and may hold anything an INI section name can. nft
//! identifiers cannot be quoted where sets are referenced (`@name`), so a jail name is
//! mapped to a token of letters, digits, `_`, `-` and `.`; names that needed changes (or
//! are long) get a hash of the original appended, so two jails never share a token. The
//! hash is FNV-1a, written out here because it must stay the same across builds: sets
//! outlive the process when bans are kept over a restart.

/// A jail name as it may appear inside nft identifiers and comments.
pub fn jail_token(jail: &str) -> String {
    const KEEP_MAX: usize = 40;
    let clean = !jail.is_empty()
        && jail.len() <= KEEP_MAX
        && jail
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if clean {
        return jail.to_string();
    }
    let mut token: String = jail
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
                c
            } else {
                '_'
            }
        })
        .take(32)
        .collect();
    token.push('-');
    token.push_str(&format!("{:08x}", fnv1a32(jail.as_bytes())));
    token
}

fn fnv1a32(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in bytes {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// The names one jail uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JailNames {
    pub token: String,
    /// `ban4-<token>`: the jail's IPv4 set.
    pub set4: String,
    /// `ban6-<token>`: the jail's IPv6 set.
    pub set6: String,
    /// The comment on the jail's rules.
    pub comment: String,
}

impl JailNames {
    pub fn new(jail: &str) -> JailNames {
        let token = jail_token(jail);
        JailNames {
            set4: format!("ban4-{token}"),
            set6: format!("ban6-{token}"),
            comment: format!("warden jail {token}"),
            token,
        }
    }

    pub fn set(&self, v6: bool) -> &str {
        if v6 { &self.set6 } else { &self.set4 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::nftables::options::is_identifier;

    #[test]
    fn plain_names_stay_readable() {
        assert_eq!(jail_token("sshd"), "sshd");
        assert_eq!(jail_token("nginx-http-auth"), "nginx-http-auth");
        assert_eq!(jail_token("postfix.sasl_2"), "postfix.sasl_2");
        let n = JailNames::new("sshd");
        assert_eq!(
            (n.set4.as_str(), n.set6.as_str()),
            ("ban4-sshd", "ban6-sshd")
        );
    }

    #[test]
    fn odd_names_are_sanitised_and_stay_distinct() {
        let odd = [
            "my jail",
            "my_jail ",
            "x\"; flush ruleset; \"",
            "é",
            "",
            "a/b",
            &"long".repeat(20),
        ];
        let mut seen = std::collections::HashSet::new();
        for name in odd {
            let n = JailNames::new(name);
            assert!(is_identifier(&n.set4), "{name:?} gives {}", n.set4);
            assert!(n.comment.chars().all(|c| c != '"' && c != '\\'));
            assert!(seen.insert(n.token.clone()), "{name:?} collides");
        }
        assert_ne!(jail_token("my jail"), jail_token("my_jail"));
        // Stable across builds: sets kept over a restart must be found again.
        assert_eq!(jail_token("my jail"), "my_jail-737e3d6d");
    }
}
