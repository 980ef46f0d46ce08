//! Durations as fail2ban writes them: `600`, `10m`, `1h 30m`, `1d12h`, `1w`, `1mo`, `1y`,
//! `-1`, and sums or differences of such terms (`1y-6mo`). Units are case-insensitive:
//! s/sec/second(s), m/mi/min/minute(s), h/hou/hour(s), d/da/day(s), w/we/week(s),
//! mo/mon/month(s) (a twelfth of 365.25 days) and y/ye/yea/year(s) (365.25 days).
//! fail2ban evaluates the expression with Python's `eval`; only these forms are accepted here.

/// Seconds per unit name, matched case-insensitively as a whole word after a number.
fn unit_seconds(unit: &str) -> Option<f64> {
    const YEAR: f64 = 365.25 * 86400.0;
    Some(match unit.to_ascii_lowercase().as_str() {
        "" | "s" | "ss" | "se" | "sec" | "second" | "seconds" => 1.0,
        "m" | "mm" | "mi" | "min" | "minute" | "minutes" => 60.0,
        "h" | "hh" | "ho" | "hou" | "hour" | "hours" => 3600.0,
        "d" | "dd" | "da" | "day" | "days" => 86400.0,
        "w" | "ww" | "we" | "wee" | "week" | "weeks" => 7.0 * 86400.0,
        "mo" | "mon" | "month" | "months" => YEAR / 12.0,
        "y" | "yy" | "ye" | "yea" | "year" | "years" => YEAR,
        _ => return None,
    })
}

/// Parses a duration into whole seconds (rounded); `-1` stays `-1` (a permanent ban).
pub fn parse_duration(text: &str) -> Result<i64, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty duration".to_string());
    }
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut total = 0.0f64;
    let mut sign = 1.0f64;
    let mut terms = 0;
    // After a term, `+`/`-` is an operator; before the first term, one sign is allowed.
    let mut expect_term = true;
    let mut signed = false;
    while i < bytes.len() {
        let c = bytes[i] as char;
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c == '+' || c == '-' {
            if expect_term && signed {
                return Err(format!("`{s}`: unexpected `{c}`"));
            }
            sign = if c == '-' { -1.0 } else { 1.0 };
            expect_term = true;
            signed = true;
            i += 1;
            continue;
        }
        if !(c.is_ascii_digit() || c == '.') {
            return Err(format!("`{s}`: expected a number at `{}`", &s[i..]));
        }
        let start = i;
        while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
            i += 1;
        }
        let number: f64 = s[start..i]
            .parse()
            .map_err(|_| format!("`{s}`: `{}` is not a number", &s[start..i]))?;
        // The unit may follow after spaces (`6 months`).
        let mut j = i;
        while j < bytes.len() && bytes[j].is_ascii_whitespace() {
            j += 1;
        }
        if j < bytes.len() && bytes[j].is_ascii_alphabetic() {
            i = j;
        }
        let ustart = i;
        while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
            i += 1;
        }
        let unit = &s[ustart..i];
        let Some(mult) = unit_seconds(unit) else {
            return Err(format!(
                "`{s}`: unknown unit `{unit}` (use s, m, h, d, w, mo or y)"
            ));
        };
        // A term directly after another (`1d12h`, `1h 30m`) adds to it.
        total += sign * number * mult;
        sign = 1.0;
        terms += 1;
        expect_term = false;
        signed = false;
    }
    if terms == 0 || expect_term {
        return Err(format!("`{s}`: incomplete duration"));
    }
    if !total.is_finite() || total.abs() > 1e15 {
        return Err(format!("`{s}`: out of range"));
    }
    Ok(total.round() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_combinations() {
        for (text, secs) in [
            ("600", 600),
            ("10m", 600),
            ("1h", 3600),
            ("1d12h", 129_600),
            ("1d 12h", 129_600),
            ("1w", 604_800),
            ("1mo", 2_629_800),
            ("1y", 31_557_600),
            ("1year-6mo", 15_778_800),
            ("6 months", 15_778_800),
            ("1hour+30min", 5400),
            ("0d 1h 30m", 5400),
            ("-1", -1),
            ("48h", 172_800),
            ("5M", 300),
            ("90s", 90),
            (" 1.5h ", 5400),
        ] {
            assert_eq!(parse_duration(text), Ok(secs), "{text}");
        }
    }

    #[test]
    fn rejects_garbage() {
        for text in ["", "abc", "10x", "1h+", "--1", "1 * 2", "ban.Time"] {
            let e = parse_duration(text).unwrap_err();
            assert!(!e.is_empty(), "{text}");
        }
        assert!(
            parse_duration("10 parsecs")
                .unwrap_err()
                .contains("unknown unit `parsecs`")
        );
    }
}
