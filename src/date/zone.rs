//! Time zones: `logtimezone` values, zones written in log lines, and the local zone.
//!
//! fail2ban understands fixed offsets only: `UTC`, `GMT`, `Z`, `UTC+0200`, `-05:00`, and a
//! table of zone abbreviations, each taken as one fixed offset (`CET` is always +01:00, never
//! summer time). warden accepts those with the same meaning, and on top of them single-digit
//! hour offsets (`GMT-5`), Olson names (`Europe/Paris`) and POSIX TZ strings, which follow
//! daylight saving time.

use jiff::tz::{Offset, TimeZone};

use super::error::DateError;

/// Zone abbreviations and their offsets in minutes east of UTC, as fail2ban reads them
/// (single letters are the military zones).
const ABBREVIATIONS: &[(i32, &[&str])] = &[
    (-720, &["Y"]),
    (-660, &["X", "NUT", "SST"]),
    (-600, &["W", "CKT", "HAST", "HST", "TAHT", "TKT"]),
    (-570, &["MART", "MIT"]),
    (-540, &["V", "AKST", "GAMT", "GIT", "HADT", "HNY"]),
    (-480, &["U", "AKDT", "CIST", "HAY", "HNP", "PST", "PT"]),
    (-420, &["T", "HAP", "HNR", "MST", "PDT"]),
    (-360, &["S", "CST", "EAST", "GALT", "HAR", "HNC", "MDT"]),
    (
        -300,
        &[
            "R", "CDT", "COT", "EASST", "ECT", "EST", "ET", "HAC", "HNE", "PET",
        ],
    ),
    (-270, &["HLV", "VET"]),
    (
        -240,
        &[
            "Q", "AST", "BOT", "CLT", "COST", "EDT", "FKT", "GYT", "HAE", "HNA", "PYT",
        ],
    ),
    (-210, &["HNT", "NST", "NT"]),
    (
        -180,
        &[
            "P", "ADT", "ART", "BRT", "CLST", "FKST", "GFT", "HAA", "PMST", "PYST", "SRT", "UYT",
            "WGT",
        ],
    ),
    (-150, &["HAT", "NDT"]),
    (-120, &["O", "BRST", "FNT", "PMDT", "UYST", "WGST"]),
    (-60, &["N", "AZOT", "CVT", "EGT"]),
    (0, &["Z", "EGST", "GMT", "UTC", "WET", "WT"]),
    (60, &["A", "CET", "DFT", "WAT", "WEDT", "WEST"]),
    (120, &["B", "CAT", "CEDT", "CEST", "EET", "SAST", "WAST"]),
    (180, &["C", "EAT", "EEDT", "EEST", "IDT", "MSK"]),
    (210, &["IRST"]),
    (
        240,
        &[
            "D", "AMT", "AZT", "GET", "GST", "KUYT", "MSD", "MUT", "RET", "SAMT", "SCT",
        ],
    ),
    (270, &["AFT", "IRDT"]),
    (
        300,
        &[
            "E", "AMST", "AQTT", "AZST", "HMT", "MAWT", "MVT", "PKT", "TFT", "TJT", "TMT", "UZT",
            "YEKT",
        ],
    ),
    (330, &["SLT"]),
    (345, &["NPT"]),
    (
        360,
        &[
            "F", "ALMT", "BIOT", "BTT", "IOT", "KGT", "NOVT", "OMST", "YEKST",
        ],
    ),
    (390, &["CCT", "MMT"]),
    (
        420,
        &[
            "G", "CXT", "DAVT", "HOVT", "ICT", "KRAT", "NOVST", "OMSST", "THA", "WIB",
        ],
    ),
    (
        480,
        &[
            "H", "ACT", "AWST", "BDT", "BNT", "CAST", "HKT", "IRKT", "KRAST", "MYT", "PHT", "SGT",
            "ULAT", "WITA", "WST",
        ],
    ),
    (
        540,
        &[
            "I", "AWDT", "IRKST", "JST", "KST", "PWT", "TLT", "WDT", "WIT", "YAKT",
        ],
    ),
    (570, &["ACST"]),
    (600, &["K", "AEST", "ChST", "PGT", "VLAT", "YAKST", "YAPT"]),
    (630, &["ACDT", "LHST"]),
    (
        660,
        &[
            "L", "AEDT", "LHDT", "MAGT", "NCT", "PONT", "SBT", "VLAST", "VUT",
        ],
    ),
    (690, &["NFT"]),
    (
        720,
        &[
            "M", "ANAST", "ANAT", "FJT", "GILT", "MAGST", "MHT", "NZST", "PETST", "PETT", "TVT",
            "WFT",
        ],
    ),
    (780, &["FJST", "NZDT"]),
];

/// The fixed offset (minutes east of UTC) of a zone abbreviation such as `CEST`.
pub fn abbreviation_offset(abbr: &str) -> Option<i32> {
    ABBREVIATIONS
        .iter()
        .find(|(_, names)| names.contains(&abbr))
        .map(|(minutes, _)| *minutes)
}

/// Why a zone written in a log line gives no offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ZoneValueError {
    /// Not of the form `ABBR`, `ABBR±hh[[:]mm]` or `±hh[[:]mm]` (fail2ban: ValueError).
    Malformed,
    /// Well-formed, but the abbreviation is not in the table (fail2ban: KeyError).
    UnknownAbbreviation,
}

/// Splits fail2ban's fixed-offset zone syntax, `[ABBR][±hh[[:]mm]]`, where ABBR is one or
/// three to five capital letters. Returns the abbreviation and the offset in minutes.
fn split_fixed(s: &str) -> Option<(Option<&str>, i32)> {
    let b = s.as_bytes();
    let upper = b.iter().take_while(|c| c.is_ascii_uppercase()).count();
    // The abbreviation is one letter or three to five; with two letters (or more than
    // five) only a shorter prefix would be taken, and the rest then fails to parse.
    let abbr_len = match upper {
        0 => 0,
        1 | 3..=5 => upper,
        _ => return None,
    };
    let rest = &b[abbr_len..];
    let minutes = match rest {
        [] => 0,
        [sign @ (b'+' | b'-'), h1 @ (b'0' | b'1'), h2, tail @ ..] if h2.is_ascii_digit() => {
            let hours = i32::from(h1 - b'0') * 10 + i32::from(h2 - b'0');
            let mins = match tail {
                [] => 0,
                [m1, m2] | [b':', m1, m2] if m1.is_ascii_digit() && m2.is_ascii_digit() => {
                    i32::from(m1 - b'0') * 10 + i32::from(m2 - b'0')
                }
                _ => return None,
            };
            let total = hours * 60 + mins;
            if *sign == b'-' { -total } else { total }
        }
        _ => return None,
    };
    let abbr = (abbr_len > 0).then(|| &s[..abbr_len]);
    Some((abbr, minutes))
}

/// Offset in minutes of a zone written in a log line (`%z`/`%Z` values), with fail2ban's
/// rules: `Z`, `UTC` and `GMT` are UTC, an abbreviation is looked up in the table, an
/// explicit offset is added to it.
pub(crate) fn zone_value_minutes(value: &str) -> Result<i32, ZoneValueError> {
    if matches!(value, "Z" | "UTC" | "GMT") {
        return Ok(0);
    }
    let (abbr, minutes) = split_fixed(value).ok_or(ZoneValueError::Malformed)?;
    let base = match abbr {
        None => 0,
        Some(a) => abbreviation_offset(a).ok_or(ZoneValueError::UnknownAbbreviation)?,
    };
    Ok(base + minutes)
}

/// `UTC-5`, `GMT+2`, `+5`, `-05:30`: offsets with one- or two-digit hours and an optional
/// `UTC`/`GMT` prefix. fail2ban rejects single-digit hours; warden reads them with the
/// same sign convention as `UTC+0200` (east of UTC is positive).
fn loose_offset_minutes(s: &str) -> Option<i32> {
    let rest = s
        .strip_prefix("UTC")
        .or_else(|| s.strip_prefix("GMT"))
        .unwrap_or(s);
    let (sign, rest) = match rest.as_bytes().first()? {
        b'+' => (1, &rest[1..]),
        b'-' => (-1, &rest[1..]),
        _ => return None,
    };
    let (hours, mins) = match rest.split_once(':') {
        Some((h, m)) => (h, Some(m)),
        None if rest.len() > 2 => (&rest[..rest.len() - 2], Some(&rest[rest.len() - 2..])),
        None => (rest, None),
    };
    if hours.is_empty() || hours.len() > 2 || !hours.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let hours: i32 = hours.parse().ok()?;
    let mins: i32 = match mins {
        None => 0,
        Some(m) if m.len() == 2 && m.bytes().all(|c| c.is_ascii_digit()) => m.parse().ok()?,
        Some(_) => return None,
    };
    if hours > 23 || mins > 59 {
        return None;
    }
    Some(sign * (hours * 60 + mins))
}

fn fixed_zone(minutes: i32) -> TimeZone {
    // Offsets built above stay within ±26 hours, which jiff accepts.
    match Offset::from_seconds(minutes * 60) {
        Ok(offset) => TimeZone::fixed(offset),
        Err(_) => TimeZone::UTC,
    }
}

/// Parses a `logtimezone` value: fail2ban's fixed forms (`UTC`, `UTC+0200`, `CET`, `-05:00`),
/// one-digit hour offsets (`GMT-5` is five hours west of UTC), Olson names
/// (`Europe/Paris`), and POSIX TZ strings (`CET-1CEST,M3.5.0,M10.5.0`).
pub fn parse_timezone(spec: &str) -> Result<TimeZone, DateError> {
    let s = spec.trim();
    let unknown = || DateError::UnknownZone {
        spec: spec.to_string(),
    };
    if s.is_empty() {
        return Err(unknown());
    }
    if let Some((abbr, minutes)) = split_fixed(s) {
        let base = match abbr {
            None => Some(0),
            Some(a) => abbreviation_offset(a),
        };
        if let Some(base) = base {
            return Ok(fixed_zone(base + minutes));
        }
    }
    if let Some(minutes) = loose_offset_minutes(s) {
        return Ok(fixed_zone(minutes));
    }
    if let Ok(tz) = TimeZone::get(s) {
        return Ok(tz);
    }
    if s.bytes().any(|c| c.is_ascii_digit())
        && let Ok(tz) = TimeZone::posix(s)
    {
        return Ok(tz);
    }
    Err(unknown())
}

/// The local time zone: the `TZ` environment variable (an Olson name, a TZif path or a
/// POSIX TZ string such as `CET-01CEST-02,M3.5.0,M10.5.0`), else the system zone, else UTC.
pub fn local_zone() -> TimeZone {
    TimeZone::try_system().unwrap_or(TimeZone::UTC)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::Timestamp;

    fn offset_at(tz: &TimeZone, ts: i64) -> i32 {
        tz.to_offset(Timestamp::from_second(ts).unwrap()).seconds() / 60
    }

    #[test]
    fn fail2ban_fixed_forms() {
        for (spec, minutes) in [
            ("UTC", 0),
            ("GMT", 0),
            ("Z", 0),
            ("UTC+0200", 120),
            ("UTC-0530", -330),
            ("UTC+02:00", 120),
            ("+0100", 60),
            ("-05", -300),
            ("CET", 60),
            ("CEST", 120),
            ("EST", -300),
            ("CET+0100", 120),
            ("NPT", 345),
            ("A", 60),
        ] {
            let tz = parse_timezone(spec).unwrap_or_else(|e| panic!("{spec}: {e}"));
            // Winter and summer: a fixed offset never moves.
            assert_eq!(offset_at(&tz, 1_104_537_600), minutes, "{spec} in January");
            assert_eq!(offset_at(&tz, 1_121_212_800), minutes, "{spec} in July");
        }
    }

    #[test]
    fn loose_offsets() {
        for (spec, minutes) in [
            ("GMT-5", -300),
            ("UTC+2", 120),
            ("+5", 300),
            ("-5:30", -330),
            ("UTC+10", 600),
        ] {
            let tz = parse_timezone(spec).unwrap_or_else(|e| panic!("{spec}: {e}"));
            assert_eq!(offset_at(&tz, 1_104_537_600), minutes, "{spec}");
        }
    }

    #[test]
    fn olson_names_follow_dst() {
        let tz = parse_timezone("Europe/Paris").unwrap();
        assert_eq!(offset_at(&tz, 1_104_537_600), 60);
        assert_eq!(offset_at(&tz, 1_121_212_800), 120);
        let tz = parse_timezone("America/New_York").unwrap();
        assert_eq!(offset_at(&tz, 1_104_537_600), -300);
    }

    #[test]
    fn posix_tz_strings_follow_dst() {
        let tz = parse_timezone("CET-01CEST-02,M3.5.0,M10.5.0").unwrap();
        assert_eq!(offset_at(&tz, 1_104_537_600), 60);
        assert_eq!(offset_at(&tz, 1_124_013_600), 120);
        let tz = parse_timezone("EST5EDT,M3.2.0,M11.1.0").unwrap();
        assert_eq!(offset_at(&tz, 1_104_537_600), -300);
        assert_eq!(offset_at(&tz, 1_121_212_800), -240);
    }

    #[test]
    fn bad_zones_are_named_in_the_error() {
        for spec in ["", "  ", "Mars/Olympus", "UTC+2500", "XYZZY", "+", "GMT+"] {
            let err = parse_timezone(spec).expect_err(spec);
            let msg = err.to_string();
            assert!(msg.contains("unknown time zone"), "{msg}");
            assert!(msg.contains(&format!("{spec:?}")), "{msg}");
        }
    }

    #[test]
    fn zone_values_in_lines() {
        assert_eq!(zone_value_minutes("Z"), Ok(0));
        assert_eq!(zone_value_minutes("GMT"), Ok(0));
        assert_eq!(zone_value_minutes("+0200"), Ok(120));
        assert_eq!(zone_value_minutes("-02:30"), Ok(-150));
        assert_eq!(zone_value_minutes("+05"), Ok(300));
        assert_eq!(zone_value_minutes("PDT"), Ok(-420));
        assert_eq!(zone_value_minutes("CEST+0100"), Ok(180));
        assert_eq!(zone_value_minutes("utc"), Err(ZoneValueError::Malformed));
        assert_eq!(zone_value_minutes("ChST"), Err(ZoneValueError::Malformed));
        assert_eq!(
            zone_value_minutes("XYZ"),
            Err(ZoneValueError::UnknownAbbreviation)
        );
    }
}
