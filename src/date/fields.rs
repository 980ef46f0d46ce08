//! From the matched fields of a date (year, month name, hour, zone, …) to a timestamp, with
//! fail2ban's rules for what is missing: no year means this year (last year when that would
//! put the date more than a day ahead of "now"), no day means today (yesterday when the time
//! is still to come), and no zone means the detector's zone.

use jiff::civil::{Date, DateTime};
use jiff::tz::{AmbiguousOffset, Offset, TimeZone};
use jiff::{SignedDuration, Timestamp, ToSpan};

/// A civil day: fail2ban moves naive times by 24 hours, never by a zone-aware day.
const DAY: SignedDuration = SignedDuration::from_hours(24);

use super::zone::zone_value_minutes;

/// The zone for dates that carry none, remembering the offset of the last civil hour it
/// converted: log lines come in runs from the same hour.
#[derive(Debug, Clone)]
pub(crate) struct LocalZone {
    zone: TimeZone,
    hour: Option<(DateTime, Offset)>,
}

impl LocalZone {
    pub(crate) fn new(zone: TimeZone) -> LocalZone {
        LocalZone { zone, hour: None }
    }

    pub(crate) fn zone(&self) -> &TimeZone {
        &self.zone
    }

    /// The instant of a civil time. Inside a DST gap the time moves forward by the gap,
    /// as mktime does; inside a fold the earlier instant is taken (mktime's choice there
    /// depends on its history).
    pub(crate) fn instant(&mut self, dt: DateTime) -> Option<Timestamp> {
        if let Some((h, offset)) = self.hour
            && (h.date(), h.hour()) == (dt.date(), dt.hour())
        {
            return offset.to_timestamp(dt).ok();
        }
        let hour = DateTime::new(dt.year(), dt.month(), dt.day(), dt.hour(), 0, 0, 0).ok()?;
        // The hour is cached only when both its ends have the same single offset, so no
        // transition falls inside it.
        let single = |dt: DateTime| match self.zone.to_ambiguous_timestamp(dt).offset() {
            AmbiguousOffset::Unambiguous { offset } => Some(offset),
            _ => None,
        };
        let last = hour
            .checked_add(SignedDuration::new(3599, 999_999_999))
            .ok();
        self.hour = match (single(hour), last.and_then(single)) {
            (Some(a), Some(b)) if a == b => Some((hour, a)),
            _ => None,
        };
        self.zone.to_ambiguous_timestamp(dt).compatible().ok()
    }
}

/// The current time as fail2ban compares dates with it: civil time in the detector's zone,
/// and the same a day later.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CivilNow {
    now: DateTime,
    day_later: DateTime,
}

impl CivilNow {
    pub(crate) fn new(now: DateTime) -> CivilNow {
        CivilNow {
            now,
            day_later: now.checked_add(DAY).unwrap_or(DateTime::MAX),
        }
    }
}

/// The strptime field a capture holds, named by its format letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Key {
    /// `%Y`, `%ExY`: four-digit year.
    Year,
    /// `%y`, `%Exy`: two-digit year, taken in 2000–2099.
    Year2,
    /// `%m`, `%Exm`.
    Month,
    /// `%B`: full month name.
    MonthName,
    /// `%b`: abbreviated month name.
    MonthAbbr,
    /// `%d`, `%Exd`.
    Day,
    /// `%H`, `%k`, `%ExH`.
    Hour,
    /// `%I`, `%l`: 12-hour clock, completed by `%p`.
    Hour12,
    /// `%M`.
    Minute,
    /// `%S`.
    Second,
    /// `%f`: parsed, then dropped (fail2ban keeps whole seconds).
    Fraction,
    /// `%A`.
    WeekdayName,
    /// `%a`.
    WeekdayAbbr,
    /// `%w`: 0 is Sunday.
    WeekdayNumber,
    /// `%j`.
    YearDay,
    /// `%U`: week of the year, weeks starting on Sunday.
    WeekSunday,
    /// `%W`: week of the year, weeks starting on Monday.
    WeekMonday,
    /// `%z`, `%Z`: zone offset or abbreviation.
    Zone,
    /// `%p`: AM/PM.
    AmPm,
    /// `%s`: seconds since the epoch (a warden extension; fail2ban 1.0.2 has no `%s`).
    Epoch,
}

impl Key {
    /// The key a regex group name stands for (the group names fail2ban's expansions use).
    pub(crate) fn from_group(name: &str) -> Option<Key> {
        Some(match name {
            "Y" => Key::Year,
            "y" => Key::Year2,
            "m" => Key::Month,
            "B" => Key::MonthName,
            "b" => Key::MonthAbbr,
            "d" => Key::Day,
            "H" => Key::Hour,
            "I" => Key::Hour12,
            "M" => Key::Minute,
            "S" => Key::Second,
            "f" => Key::Fraction,
            "A" => Key::WeekdayName,
            "a" => Key::WeekdayAbbr,
            "w" => Key::WeekdayNumber,
            "j" => Key::YearDay,
            "U" => Key::WeekSunday,
            "W" => Key::WeekMonday,
            "z" | "Z" => Key::Zone,
            "p" => Key::AmPm,
            "s" => Key::Epoch,
            _ => return None,
        })
    }
}

const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];
const WEEKDAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

/// Index of `name` (any case) in `list`, comparing whole names or three-letter abbreviations.
fn name_index(list: &[&str], name: &str, abbreviated: bool) -> Option<usize> {
    if abbreviated && name.len() == 3 {
        let b = name.as_bytes();
        let lower = [
            b[0].to_ascii_lowercase(),
            b[1].to_ascii_lowercase(),
            b[2].to_ascii_lowercase(),
        ];
        return list.iter().position(|full| full.as_bytes()[..3] == lower);
    }
    list.iter().position(|full| {
        let want = if abbreviated { &full[..3] } else { full };
        want.eq_ignore_ascii_case(name)
    })
}

/// Python's `int()` on a matched number: surrounding blanks are allowed (`%d` may be " 5").
fn int(text: &str) -> Option<i64> {
    let mut t = text.as_bytes();
    while let [b' ', rest @ ..] = t {
        t = rest;
    }
    while let [rest @ .., b' '] = t {
        t = rest;
    }
    if t.is_empty() || t.len() > 18 {
        return None;
    }
    t.iter().try_fold(0i64, |n, c| {
        c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0'))
    })
}

/// The fields of one date match, in the state fail2ban's strptime leaves them.
#[derive(Debug, Default, Clone)]
pub(crate) struct Fields {
    year: Option<i32>,
    month: Option<i8>,
    day: Option<i8>,
    hour: i64,
    minute: i64,
    second: i64,
    weekday: Option<i64>,
    julian: Option<i64>,
    week: Option<(i64, bool)>,
    offset_minutes: Option<i32>,
    epoch: Option<i64>,
    /// A value no date can be built from (an unknown zone abbreviation, `%I` without a
    /// matched `%p`, a number that does not parse).
    invalid: bool,
}

impl Fields {
    /// Applies captures in pattern order (a later capture of the same field wins, as in
    /// fail2ban). `ampm` is the `%p` capture: `None` when the pattern has no `%p`,
    /// `Some(None)` when it has one that did not take part in the match.
    pub(crate) fn from_captures<'t>(
        captures: impl Iterator<Item = (Key, &'t str)>,
        ampm: Option<Option<&str>>,
    ) -> Fields {
        let mut f = Fields::default();
        for (key, text) in captures {
            if f.apply(key, text, ampm).is_none() {
                f.invalid = true;
            }
        }
        f
    }

    fn apply(&mut self, key: Key, text: &str, ampm: Option<Option<&str>>) -> Option<()> {
        match key {
            Key::Year => self.year = Some(i32::try_from(int(text)?).ok()?),
            Key::Year2 => {
                let y = i32::try_from(int(text)?).ok()?;
                self.year = Some(if y <= 2000 { y + 2000 } else { y });
            }
            Key::Month => self.month = Some(i8::try_from(int(text)?).ok()?),
            Key::MonthName | Key::MonthAbbr => {
                let i = name_index(&MONTHS, text, key == Key::MonthAbbr)?;
                self.month = Some(i as i8 + 1);
            }
            Key::Day => self.day = Some(i8::try_from(int(text)?).ok()?),
            Key::Hour => self.hour = int(text)?,
            Key::Hour12 => {
                let mut hour = int(text)?;
                // A `%p` group that exists but did not match has no text to lower-case:
                // fail2ban raises on it.
                let marker = match ampm {
                    None => "",
                    Some(None) => return None,
                    Some(Some(p)) => p,
                };
                if marker.is_empty() || marker.eq_ignore_ascii_case("am") {
                    if hour == 12 {
                        hour = 0;
                    }
                } else if marker.eq_ignore_ascii_case("pm") && hour != 12 {
                    hour += 12;
                }
                self.hour = hour;
            }
            Key::Minute => self.minute = int(text)?,
            Key::Second => self.second = int(text)?,
            Key::Fraction | Key::AmPm => {}
            Key::WeekdayName | Key::WeekdayAbbr => {
                let i = name_index(&WEEKDAYS, text, key == Key::WeekdayAbbr)?;
                self.weekday = Some(i as i64);
            }
            Key::WeekdayNumber => {
                let w = int(text)? - 1;
                self.weekday = Some(if w < 0 { 6 } else { w });
            }
            Key::YearDay => self.julian = Some(int(text)?),
            Key::WeekSunday => self.week = Some((int(text)?, false)),
            Key::WeekMonday => self.week = Some((int(text)?, true)),
            Key::Zone => self.offset_minutes = Some(zone_value_minutes(text).ok()?),
            Key::Epoch => self.epoch = Some(int(text)?),
        }
        Some(())
    }

    /// The timestamp these fields name, or `None` when they name no valid date (31 April,
    /// 24:00, a leap day carried into a common year, …).
    ///
    /// `now` is the current time as a civil time in `zone`; it supplies a missing year or
    /// day. A date with an explicit offset is compared with `now` after shifting it to UTC,
    /// as fail2ban does (it compares against local time all the same).
    pub(crate) fn resolve(&self, civil: &CivilNow, zone: &mut LocalZone) -> Option<Timestamp> {
        let now = civil.now;
        if self.invalid {
            return None;
        }
        if let Some(e) = self.epoch {
            return Timestamp::from_second(e).ok();
        }
        let assume_year = self.year.is_none();
        let mut year = self.year.unwrap_or(i32::from(now.year()));
        let (mut month, mut day) = (self.month, self.day);
        if month.is_none() || day.is_none() {
            let mut julian = self.julian;
            if julian.is_none()
                && let (Some((week, monday)), Some(weekday)) = (self.week, self.weekday)
            {
                julian = Some(julian_from_week(year, week, weekday, monday)?);
            }
            if let Some(j) = julian {
                let first = Date::new(i16::try_from(year).ok()?, 1, 1).ok()?;
                let date = first.checked_add((j - 1).days()).ok()?;
                year = i32::from(date.year());
                month = Some(date.month());
                day = Some(date.day());
            }
        }
        let assume_today = month.is_none() && day.is_none();
        if assume_today {
            month = Some(now.month());
            day = Some(now.day());
        }
        let (month, day) = (month?, day?);
        let year16 = i16::try_from(year).ok().filter(|y| *y >= 1)?;
        let hour = i8::try_from(self.hour).ok()?;
        let minute = i8::try_from(self.minute).ok()?;
        let second = i8::try_from(self.second).ok()?;
        let mut dt = DateTime::new(year16, month, day, hour, minute, second, 0).ok()?;
        if let Some(off) = self.offset_minutes {
            dt = dt
                .checked_sub(SignedDuration::from_mins(i64::from(off)))
                .ok()?;
        }
        if assume_today && dt > now {
            // Rolled over midnight: the time is yesterday's.
            dt = dt.checked_sub(DAY).ok()?;
        }
        if assume_year && dt > civil.day_later {
            // More than a day ahead (a day of slack for zone mix-ups): last year's date.
            // The time of day stays as shifted by the offset; the calendar day is the one
            // written in the line.
            let prev = i16::try_from(year - 1).ok().filter(|y| *y >= 1)?;
            dt = DateTime::new(
                prev,
                month,
                day,
                dt.hour(),
                dt.minute(),
                dt.second(),
                dt.subsec_nanosecond(),
            )
            .ok()?;
        }
        if self.offset_minutes.is_some() {
            return dt.to_zoned(TimeZone::UTC).ok().map(|z| z.timestamp());
        }
        zone.instant(dt)
    }
}

/// Day of the year from a week number and a weekday (Monday = 0), as Python's strptime
/// computes it for `%U`/`%W`.
fn julian_from_week(year: i32, week: i64, weekday: i64, monday_start: bool) -> Option<i64> {
    let first = Date::new(i16::try_from(year).ok()?, 1, 1).ok()?;
    let mut first_weekday = i64::from(first.weekday().to_monday_zero_offset());
    let mut weekday = weekday;
    if !monday_start {
        first_weekday = (first_weekday + 1) % 7;
        weekday = (weekday + 1) % 7;
    }
    let week0_len = (7 - first_weekday) % 7;
    Some(if week == 0 {
        1 + weekday - first_weekday
    } else {
        1 + week0_len + 7 * (week - 1) + weekday
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::datetime;

    fn cet() -> TimeZone {
        TimeZone::posix("CET-01CEST-02,M3.5.0,M10.5.0").unwrap()
    }

    fn fields(pairs: &[(Key, &str)]) -> Fields {
        let ampm = pairs
            .iter()
            .find(|(k, _)| *k == Key::AmPm)
            .map(|(_, v)| Some(*v));
        Fields::from_captures(pairs.iter().copied(), ampm)
    }

    fn at(pairs: &[(Key, &str)], now: DateTime) -> Option<i64> {
        fields(pairs)
            .resolve(&CivilNow::new(now), &mut LocalZone::new(cet()))
            .map(|t| t.as_second())
    }

    const NOW: DateTime = datetime(2005, 8, 14, 12, 0, 0, 0);

    #[test]
    fn full_date_in_local_zone() {
        let t = at(
            &[
                (Key::Year, "2005"),
                (Key::Month, "1"),
                (Key::Day, "23"),
                (Key::Hour, "21"),
                (Key::Minute, "59"),
                (Key::Second, "59"),
            ],
            NOW,
        );
        // 2005-01-23 21:59:59 CET
        assert_eq!(t, Some(1_106_513_999));
    }

    #[test]
    fn explicit_offset_wins_over_zone() {
        let base = [
            (Key::Year, "2005"),
            (Key::Month, "08"),
            (Key::Day, "14"),
            (Key::Hour, "10"),
            (Key::Minute, "00"),
            (Key::Second, "00"),
        ];
        let mut z = base.to_vec();
        z.push((Key::Zone, "Z"));
        assert_eq!(at(&z, NOW), Some(1_124_013_600));
        let mut z = base.to_vec();
        z.push((Key::Zone, "-0130"));
        assert_eq!(at(&z, NOW), Some(1_124_013_600 + 5400));
        let mut z = base.to_vec();
        z.push((Key::Zone, "NOPE"));
        assert_eq!(at(&z, NOW), None, "unknown abbreviation");
    }

    #[test]
    fn year_inference_keeps_this_year_up_to_a_day_ahead() {
        let line = |mon: &'static str, day: &'static str, hms: [&'static str; 3]| {
            vec![
                (Key::MonthAbbr, mon),
                (Key::Day, day),
                (Key::Hour, hms[0]),
                (Key::Minute, hms[1]),
                (Key::Second, hms[2]),
            ]
        };
        // Today, earlier: this year.
        assert_eq!(
            at(&line("Aug", "14", ["11", "00", "00"]), NOW),
            Some(1_124_010_000)
        );
        // Just in the future (within a day): still this year.
        assert_eq!(
            at(&line("Aug", "15", ["11", "59", "59"]), NOW),
            Some(1_124_099_999)
        );
        // More than a day ahead: last year.
        let t = at(&line("Aug", "15", ["12", "00", "01"]), NOW).unwrap();
        assert_eq!(
            Timestamp::from_second(t)
                .unwrap()
                .to_zoned(cet())
                .datetime(),
            datetime(2004, 8, 15, 12, 0, 1, 0)
        );
    }

    #[test]
    fn year_inference_over_new_year() {
        let now = datetime(2006, 1, 1, 0, 10, 0, 0);
        let dec31 = [
            (Key::MonthAbbr, "Dec"),
            (Key::Day, "31"),
            (Key::Hour, "23"),
            (Key::Minute, "59"),
            (Key::Second, "58"),
        ];
        let t = at(&dec31, now).unwrap();
        assert_eq!(
            Timestamp::from_second(t)
                .unwrap()
                .to_zoned(cet())
                .datetime(),
            datetime(2005, 12, 31, 23, 59, 58, 0)
        );
        // The year is never moved forward: a Jan 1 line read just before midnight on New
        // Year's Eve (a sender clock running ahead) lands in January of the current year.
        let now = datetime(2005, 12, 31, 23, 59, 0, 0);
        let jan1 = [
            (Key::MonthAbbr, "Jan"),
            (Key::Day, "1"),
            (Key::Hour, "00"),
            (Key::Minute, "00"),
            (Key::Second, "30"),
        ];
        let t = at(&jan1, now).unwrap();
        assert_eq!(
            Timestamp::from_second(t)
                .unwrap()
                .to_zoned(cet())
                .datetime(),
            datetime(2005, 1, 1, 0, 0, 30, 0)
        );
    }

    #[test]
    fn leap_day_without_year() {
        let feb29 = [
            (Key::MonthAbbr, "Feb"),
            (Key::Day, "29"),
            (Key::Hour, "12"),
            (Key::Minute, "00"),
            (Key::Second, "00"),
        ];
        // In a leap year, after the day: fine.
        assert!(at(&feb29, datetime(2008, 3, 10, 0, 0, 0, 0)).is_some());
        // In a common year the date does not exist.
        assert_eq!(at(&feb29, datetime(2005, 3, 10, 0, 0, 0, 0)), None);
        // In a leap year but before the day by more than a day: last year has no Feb 29.
        assert_eq!(at(&feb29, datetime(2008, 2, 20, 0, 0, 0, 0)), None);
    }

    #[test]
    fn time_only_is_today_or_yesterday() {
        let hms = |h: &'static str| vec![(Key::Hour, h), (Key::Minute, "30"), (Key::Second, "00")];
        let day = |t: i64| {
            Timestamp::from_second(t)
                .unwrap()
                .to_zoned(cet())
                .datetime()
        };
        assert_eq!(
            day(at(&hms("11"), NOW).unwrap()),
            datetime(2005, 8, 14, 11, 30, 0, 0)
        );
        assert_eq!(
            day(at(&hms("13"), NOW).unwrap()),
            datetime(2005, 8, 13, 13, 30, 0, 0)
        );
    }

    #[test]
    fn impossible_dates_give_none() {
        let base = |d: &'static str, h: &'static str, s: &'static str| {
            vec![
                (Key::Year, "2005"),
                (Key::Month, "4"),
                (Key::Day, d),
                (Key::Hour, h),
                (Key::Minute, "00"),
                (Key::Second, s),
            ]
        };
        assert!(at(&base("30", "10", "00"), NOW).is_some());
        assert_eq!(at(&base("31", "10", "00"), NOW), None);
        assert_eq!(at(&base("30", "24", "00"), NOW), None);
        assert_eq!(at(&base("30", "10", "60"), NOW), None);
        // A month without a day.
        assert_eq!(at(&[(Key::Year, "2005"), (Key::Month, "4")], NOW), None);
    }

    #[test]
    fn twelve_hour_clock() {
        let t = |h: &'static str, p: &'static str| {
            let mut v = vec![
                (Key::Year, "2005"),
                (Key::MonthAbbr, "jan"),
                (Key::Day, "2"),
                (Key::Hour12, h),
                (Key::Minute, "0"),
                (Key::Second, "0"),
            ];
            v.push((Key::AmPm, p));
            Timestamp::from_second(at(&v, NOW).unwrap())
                .unwrap()
                .to_zoned(cet())
                .hour()
        };
        assert_eq!(t("12", "AM"), 0);
        assert_eq!(t("1", "am"), 1);
        assert_eq!(t("12", "PM"), 12);
        assert_eq!(t("3", "pm"), 15);
        let missing = Fields::from_captures([(Key::Hour12, "3")].into_iter(), Some(None));
        assert_eq!(
            missing.resolve(&CivilNow::new(NOW), &mut LocalZone::new(cet())),
            None
        );
    }

    #[test]
    fn year_day_and_weeks() {
        let t = |pairs: &[(Key, &str)]| {
            Timestamp::from_second(at(pairs, NOW).unwrap())
                .unwrap()
                .to_zoned(cet())
                .date()
        };
        assert_eq!(
            t(&[(Key::Year, "2005"), (Key::YearDay, "32")]),
            jiff::civil::date(2005, 2, 1)
        );
        assert_eq!(
            t(&[(Key::Year, "2005"), (Key::YearDay, "366")]),
            jiff::civil::date(2006, 1, 1)
        );
        // 2005-01-01 is a Saturday; %W week 1 starts on Monday 3 January.
        assert_eq!(
            t(&[
                (Key::Year, "2005"),
                (Key::WeekMonday, "1"),
                (Key::WeekdayAbbr, "Wed")
            ]),
            jiff::civil::date(2005, 1, 5)
        );
        // %U week 1 starts on Sunday 2 January; %w 0 is Sunday.
        assert_eq!(
            t(&[
                (Key::Year, "2005"),
                (Key::WeekSunday, "1"),
                (Key::WeekdayNumber, "0")
            ]),
            jiff::civil::date(2005, 1, 2)
        );
    }

    #[test]
    fn dst_gap_moves_forward_and_fold_takes_the_earlier() {
        let t = |mo: &'static str, d: &'static str, h: &'static str| {
            at(
                &[
                    (Key::Year, "2005"),
                    (Key::Month, mo),
                    (Key::Day, d),
                    (Key::Hour, h),
                    (Key::Minute, "30"),
                    (Key::Second, "00"),
                ],
                NOW,
            )
            .unwrap()
        };
        // 02:30 on 27 March does not exist in CET/CEST: it reads as 03:30 CEST.
        assert_eq!(t("3", "27", "02"), 1_111_887_000);
        // With this POSIX rule summer time ends at 02:00 CEST, so 01:30 on 30 October
        // happens twice; the first (CEST) is taken.
        assert_eq!(t("10", "30", "01"), 1_130_628_600);
        assert_eq!(t("10", "30", "02"), 1_130_635_800);
    }

    #[test]
    fn hour_cache_agrees_with_the_zone_around_transitions() {
        for zone in [
            cet(),
            TimeZone::get("Europe/Berlin").unwrap(),
            TimeZone::get("Australia/Lord_Howe").unwrap(),
        ] {
            let mut local = LocalZone::new(zone.clone());
            for (y, m, d) in [(2005, 3, 27), (2005, 10, 30), (2005, 10, 2), (2006, 4, 2)] {
                let mut dt = datetime(y, m, d, 0, 0, 0, 0);
                for _ in 0..(5 * 60 / 7) {
                    let want = zone.to_ambiguous_timestamp(dt).compatible().ok();
                    assert_eq!(local.instant(dt), want, "{dt}");
                    dt = dt.checked_add(SignedDuration::from_mins(7)).unwrap();
                }
            }
        }
    }

    #[test]
    fn two_digit_years_are_in_this_century() {
        let t = at(
            &[
                (Key::Year2, "13"),
                (Key::Month, "03"),
                (Key::Day, "22"),
                (Key::Hour, "11"),
                (Key::Minute, "46"),
                (Key::Second, "11"),
            ],
            NOW,
        )
        .unwrap();
        assert_eq!(
            Timestamp::from_second(t).unwrap().to_zoned(cet()).year(),
            2013
        );
    }
}
