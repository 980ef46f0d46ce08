//! Expansion of fail2ban's `<TAG>` shorthands inside filter regexes.
//!
//! The result is still a pattern in Python's `re` dialect: `<HOST>` becomes the alternation
//! of IPv4 (with an optional `::ffff:` prefix that is left outside the `ip4` group, which is
//! how mapped addresses end up reported as plain IPv4), IPv6 and host names; `<F-NAME>` and
//! `</F-NAME>` open and close a named group `name` (lowercased, `id` → `fid`,
//! `port` → `fport`); `<SKIPLINES>` swallows whole lines of a multi-line buffer.
//!
//! Substitution is purely textual and runs over the whole string, exactly like fail2ban's:
//! a tag inside a character class is replaced too, an unknown tag stays as written, and a
//! closing tag that was never opened stays literal.
//!
//! One deliberate difference: fail2ban's IPv6 expression ends in `(?<=:):`, a lookbehind
//! that would push every `<HOST>` pattern onto the backtracking engine. Every repetition of
//! the group in front of it ends with `:`, so the lookbehind always holds and a plain `:`
//! matches the same strings.

use crate::config::model::UseDns;

/// Dotted-quad IPv4, as loose as fail2ban's (octets up to 999; validity is checked when the
/// address is parsed).
pub const IP4: &str = r"(?:\d{1,3}\.){3}\d{1,3}";

/// IPv6 in its usual textual forms (compressed, full, trailing `::`), with the lookbehind
/// of fail2ban's expression replaced by the equivalent plain `:`.
pub const IP6: &str = r"(?:[0-9a-fA-F]{1,4}::?|::){1,7}(?:[0-9a-fA-F]{1,4}|:)";

/// The IPv4 alternative of `<HOST>`/`<ADDR>`: an IPv4-mapped prefix is matched but kept
/// out of the group.
fn ip4_part() -> String {
    format!("(?:::f{{4,6}}:)?(?P<ip4>{IP4})")
}

fn ip6_part() -> String {
    format!("(?P<ip6>{IP6})")
}

/// Host names; `^` in the class is literal, as in fail2ban.
const DNS_PART: &str = r"(?P<dns>[\w\-.^_]*\w)";

const CIDR_PART: &str = r"(?P<cidr>\d+)";

fn addr_part() -> String {
    format!(r"\[?(?:{}|{})\]?", ip4_part(), ip6_part())
}

fn host_part(usedns: UseDns) -> String {
    if usedns == UseDns::No {
        addr_part()
    } else {
        format!("(?:{}|{})", addr_part(), DNS_PART)
    }
}

fn subnet_part() -> String {
    format!(
        r"\[?(?:{}|{})(?:/{})?\]?",
        ip4_part(),
        ip6_part(),
        CIDR_PART
    )
}

/// The group-name prefix of `<SKIPLINES>` captures (`skiplines0`, `skiplines1`, ...).
pub const SKIPLINES_GROUP: &str = "skiplines";

/// Replaces every fail2ban tag in `regex`. `usedns = no` removes the host-name alternative
/// from `<HOST>`; every other mode keeps it.
pub fn expand(regex: &str, usedns: UseDns) -> String {
    let mut out = String::with_capacity(regex.len() + 64);
    let mut opened: Vec<String> = Vec::new();
    let mut skiplines = 0usize;
    let mut rest = regex;
    while let Some(lt) = rest.find('<') {
        out.push_str(&rest[..lt]);
        let candidate = &rest[lt..];
        match tag_len(candidate) {
            Some(len) => {
                let tag = &candidate[..len];
                out.push_str(&substitute(tag, usedns, &mut opened, &mut skiplines));
                rest = &candidate[len..];
            }
            None => {
                out.push('<');
                rest = &candidate[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Length of a tag `</?[\w-]+/?>` at the start of `s`, if there is one.
fn tag_len(s: &str) -> Option<usize> {
    let mut chars = s.char_indices().peekable();
    chars.next(); // '<'
    if let Some(&(_, '/')) = chars.peek() {
        chars.next();
    }
    let mut name_chars = 0usize;
    while let Some(&(_, c)) = chars.peek() {
        if c.is_alphanumeric() || c == '_' || c == '-' {
            name_chars += 1;
            chars.next();
        } else {
            break;
        }
    }
    if name_chars == 0 {
        return None;
    }
    if let Some(&(_, '/')) = chars.peek() {
        chars.next();
    }
    match chars.next() {
        Some((i, '>')) => Some(i + 1),
        _ => None,
    }
}

fn substitute(
    tag: &str,
    usedns: UseDns,
    opened: &mut Vec<String>,
    skiplines: &mut usize,
) -> String {
    let name = &tag[1..tag.len() - 1];
    match name {
        "HOST" => return host_part(usedns),
        "SKIPLINES" => {
            let n = *skiplines;
            *skiplines += 1;
            return format!(r"\n(?P<{SKIPLINES_GROUP}{n}>(?:(?:.*\n)*?))");
        }
        "IP4" | "F-IP4/" => return ip4_part(),
        "IP6" | "F-IP6/" => return ip6_part(),
        "ADDR" | "F-ADDR/" => return addr_part(),
        "CIDR" | "F-CIDR/" => return CIDR_PART.to_string(),
        "SUBNET" | "F-SUBNET/" => return subnet_part(),
        "DNS" | "F-DNS/" => return DNS_PART.to_string(),
        "F-ID/" => return r"(?P<fid>\S+)".to_string(),
        "F-PORT/" => return r"(?P<fport>\w+)".to_string(),
        _ => {}
    }
    let (closing, body) = match name.strip_prefix('/') {
        Some(b) => (true, b),
        None => (false, name),
    };
    let Some(field) = body.strip_prefix("F-") else {
        return tag.to_string();
    };
    if field.is_empty()
        || !field
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    {
        return tag.to_string();
    }
    if closing {
        // fail2ban never forgets an opened tag, so a second closing tag closes again.
        return if opened.iter().any(|o| o == field) {
            ")".to_string()
        } else {
            tag.to_string()
        };
    }
    if !opened.iter().any(|o| o == field) {
        opened.push(field.to_string());
    }
    format!("(?P<{}>", field_group_name(field))
}

/// The group name a `<F-FIELD>` tag opens: lowercase, with fail2ban's two aliases.
pub fn field_group_name(field: &str) -> String {
    let lower = field.to_ascii_lowercase();
    match lower.as_str() {
        "id" => "fid".to_string(),
        "port" => "fport".to_string(),
        _ => lower,
    }
}

/// fail2ban turns a global flag group wrapped in a group, `((?i)x)` or `(?:(?i)x)`, into
/// the scoped form `(?i:x)` before compiling, because Python rejects global flags anywhere
/// but at the start. The outer group disappears, capturing or not.
pub fn localise_global_flags(regex: &str) -> String {
    let b = regex.as_bytes();
    let mut out = String::with_capacity(regex.len());
    let mut copied = 0usize;
    let mut i = 0usize;
    while i < b.len() {
        if b[i] == b'(' && (i == 0 || b[i - 1] != b'\\') {
            let mut j = i + 1;
            if b[j..].starts_with(b"?:") {
                j += 2;
            }
            if b[j..].starts_with(b"(?") {
                let flags_start = j + 2;
                let mut k = flags_start;
                while k < b.len() && b[k].is_ascii_lowercase() {
                    k += 1;
                }
                if k > flags_start && k < b.len() && b[k] == b')' {
                    out.push_str(&regex[copied..i]);
                    out.push_str(&regex[j..k]);
                    out.push(':');
                    i = k + 1;
                    copied = i;
                    continue;
                }
            }
        }
        i += 1;
    }
    out.push_str(&regex[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_includes_dns_unless_usedns_no() {
        let yes = expand("from <HOST> port", UseDns::Warn);
        assert!(yes.contains("(?P<dns>"), "{yes}");
        assert!(yes.contains("(?P<ip4>") && yes.contains("(?P<ip6>"));
        assert!(yes.starts_with("from (?:") && yes.ends_with(" port"));
        let no = expand("from <HOST> port", UseDns::No);
        assert!(!no.contains("(?P<dns>"), "{no}");
        assert!(no.contains("(?P<ip4>") && no.contains("(?P<ip6>"));
        assert_eq!(expand("<HOST>", UseDns::Raw), expand("<HOST>", UseDns::Yes));
    }

    #[test]
    fn no_lookbehind_in_any_address_tag() {
        for tag in ["<HOST>", "<ADDR>", "<IP6>", "<SUBNET>", "<F-IP6/>"] {
            let e = expand(tag, UseDns::Yes);
            assert!(!e.contains("(?<"), "{tag}: {e}");
        }
    }

    #[test]
    fn static_tags() {
        assert_eq!(expand("<IP4>", UseDns::Yes), ip4_part());
        assert_eq!(expand("<F-IP4/>", UseDns::Yes), ip4_part());
        assert_eq!(expand("<IP6>", UseDns::Yes), ip6_part());
        assert_eq!(expand("<DNS>", UseDns::No), DNS_PART);
        assert_eq!(expand("<CIDR>", UseDns::Yes), r"(?P<cidr>\d+)");
        assert_eq!(expand("<F-ID/>", UseDns::Yes), r"(?P<fid>\S+)");
        assert_eq!(expand("<F-PORT/>", UseDns::Yes), r"(?P<fport>\w+)");
        let subnet = expand("<SUBNET>", UseDns::Yes);
        assert!(subnet.contains("(?:/(?P<cidr>"), "{subnet}");
        let addr = expand("<ADDR>", UseDns::Yes);
        assert!(addr.starts_with(r"\[?(?:") && addr.ends_with(r")\]?"));
    }

    #[test]
    fn field_tags_open_and_close_groups() {
        assert_eq!(
            expand("user <F-USER>\\S+</F-USER> x", UseDns::Yes),
            r"user (?P<user>\S+) x"
        );
        assert_eq!(expand("<F-ID>a</F-ID>", UseDns::Yes), "(?P<fid>a)");
        assert_eq!(expand("<F-PORT>a</F-PORT>", UseDns::Yes), "(?P<fport>a)");
        assert_eq!(
            expand("<F-ALT_USER1>a</F-ALT_USER1>", UseDns::Yes),
            "(?P<alt_user1>a)"
        );
        assert_eq!(
            expand("<F-MY-FIELD>a</F-MY-FIELD>", UseDns::Yes),
            "(?P<my-field>a)"
        );
        for special in [
            "NOFAIL",
            "MLFID",
            "MLFFORGET",
            "MLFGAINED",
            "CONTENT",
            "TUPLE_ID_1",
        ] {
            let e = expand(&format!("<F-{special}>x</F-{special}>"), UseDns::Yes);
            assert_eq!(e, format!("(?P<{}>x)", special.to_ascii_lowercase()));
        }
    }

    #[test]
    fn unknown_unopened_and_lowercase_tags_stay_literal() {
        assert_eq!(expand("a </F-USER> b", UseDns::Yes), "a </F-USER> b");
        assert_eq!(expand("<F-user>x", UseDns::Yes), "<F-user>x");
        assert_eq!(expand("<mytag> <>", UseDns::Yes), "<mytag> <>");
        assert_eq!(expand("a<b", UseDns::Yes), "a<b");
        assert_eq!(expand("<F-NOFAIL/>", UseDns::Yes), "<F-NOFAIL/>");
        // A closing tag after its group was closed still closes (fail2ban never forgets).
        assert_eq!(expand("<F-A>x</F-A></F-A>", UseDns::Yes), "(?P<a>x))");
    }

    #[test]
    fn skiplines_are_numbered() {
        let e = expand("a<SKIPLINES>b<SKIPLINES>c", UseDns::Yes);
        assert_eq!(
            e,
            r"a\n(?P<skiplines0>(?:(?:.*\n)*?))b\n(?P<skiplines1>(?:(?:.*\n)*?))c"
        );
    }

    #[test]
    fn tags_next_to_brackets() {
        assert_eq!(expand("[<F-ID/>]", UseDns::Yes), r"[(?P<fid>\S+)]");
        assert_eq!(expand("<<F-ID/>>", UseDns::Yes), r"<(?P<fid>\S+)>");
    }

    #[test]
    fn global_flags_become_scoped() {
        assert_eq!(localise_global_flags("^((?i)abc)$"), "^(?i:abc)$");
        assert_eq!(localise_global_flags("^(?:(?i)abc)$"), "^(?i:abc)$");
        assert_eq!(localise_global_flags("(?i)abc"), "(?i)abc");
        assert_eq!(localise_global_flags(r"\((?i)abc"), r"\((?i)abc");
        assert_eq!(localise_global_flags("((?is)a)((?m)b)"), "(?is:a)(?m:b)");
        assert_eq!(localise_global_flags("((?i-s)a)"), "((?i-s)a)");
    }
}
