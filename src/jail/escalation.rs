//! Ban-time escalation for repeat offenders: fail2ban's `bantime.increment` rules as pure
//! functions over [`Escalation`] (the resolved `bantime.*` settings).
//!
//! The rules, as fail2ban 1.0.2 applies them:
//!
//! - The count that drives escalation is the number of earlier bans of the address
//!   (`prior`): in the jail, or summed over every jail with `bantime.overalljails`. The
//!   ban being decided is not included. The first ban (`prior == 0`) keeps the jail's
//!   `bantime` untouched: no factor, no cap, no random extra.
//! - Without `multipliers`: `bantime * 2^min(prior, 20) * factor`, never less than
//!   `bantime`. The second ban is twice as long, the third four times, and so on.
//! - With `multipliers`: `bantime * factor * multipliers[prior]`, the last multiplier
//!   repeating. Index 0 is never reached because the first ban is not escalated.
//! - `maxtime` caps the escalated time; it does not apply to the first ban, so a jail
//!   whose `bantime` exceeds `maxtime` gets a longer first ban than later ones.
//! - `rndtime` adds a random number of seconds in `[0, rndtime)` after the cap, so the
//!   unban time of an escalated ban cannot be predicted by a botnet.
//! - Permanent bans (`bantime` -1) and a zero `bantime` are never escalated.
//!
//! Escalated times are whole seconds: fractions produced by a fractional factor or
//! multiplier are dropped.
//!
//! Known bad addresses also weigh more while failures are counted (see
//! [`failure_weight`]): fail2ban counts one failure of an address banned `n` times before
//! (in this jail) as `2^(n-1) + 1` failures, capped at `maxretry`. It lives here because
//! it depends on the same ban count and on `bantime.increment` being set.
//!
//! Only fail2ban's default `bantime.formula` is supported; the configuration layer rejects
//! any other expression with [`is_default_formula`].

use crate::Epoch;
use crate::config::model::Escalation;

/// Largest exponent of the default formula: from the 21st ban on, the factor stays `2^20`.
pub const MAX_EXPONENT: u32 = 20;

/// fail2ban's default `bantime.formula`, the only one warden evaluates.
pub const DEFAULT_FORMULA: &str = "ban.Time * (1<<(ban.Count if ban.Count<20 else 20)) * banFactor";

/// Whether a `bantime.formula` value is the default formula (whitespace is ignored).
pub fn is_default_formula(formula: &str) -> bool {
    let squeeze = |s: &str| s.chars().filter(|c| !c.is_whitespace()).collect::<String>();
    squeeze(formula) == squeeze(DEFAULT_FORMULA)
}

/// A `bantime.*` setting that cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EscalationError {
    #[error("bantime.factor {0} is not a positive finite number")]
    Factor(f64),
    #[error("bantime.multipliers value {0} is not a non-negative finite number")]
    Multiplier(f64),
    #[error("bantime.maxtime {0} is not a positive number of seconds")]
    MaxTime(i64),
    #[error("bantime.rndtime {0} is negative")]
    RndTime(i64),
}

/// Checks the settings that would make escalation meaningless or overflow.
pub fn validate(rule: &Escalation) -> Result<(), EscalationError> {
    if !(rule.factor.is_finite() && rule.factor > 0.0) {
        return Err(EscalationError::Factor(rule.factor));
    }
    if let Some(m) = rule
        .multipliers
        .iter()
        .find(|m| !(m.is_finite() && **m >= 0.0))
    {
        return Err(EscalationError::Multiplier(*m));
    }
    if let Some(t) = rule.maxtime.filter(|t| *t <= 0) {
        return Err(EscalationError::MaxTime(t));
    }
    if let Some(t) = rule.rndtime.filter(|t| *t < 0) {
        return Err(EscalationError::RndTime(t));
    }
    Ok(())
}

/// The ban time in seconds for a ban of an address banned `prior` times before, with
/// `extra` random seconds (drawn with [`draw_extra`]; ignored when nothing escalates).
pub fn ban_time(rule: &Escalation, base: i64, prior: u32, extra: i64) -> i64 {
    if !rule.increment || base <= 0 || prior == 0 {
        return base;
    }
    let base_f = base as f64;
    let grown = if rule.multipliers.is_empty() {
        let exp = prior.min(MAX_EXPONENT);
        // fail2ban wraps the default formula in max(bantime, ...), so a factor below 1
        // never shortens a repeat ban below the first one.
        (base_f * (1u64 << exp) as f64 * rule.factor).max(base_f)
    } else {
        let last = rule.multipliers.len() - 1;
        let m = rule.multipliers[(prior as usize).min(last)];
        base_f * rule.factor * m
    };
    let capped = match rule.maxtime {
        Some(max) => grown.min(max as f64),
        None => grown,
    };
    seconds(capped).saturating_add(extra.max(0))
}

/// Random extra seconds in `[0, rndtime)`, or 0 without `rndtime`.
pub fn draw_extra(rule: &Escalation, rng: &mut dyn RandomSource) -> i64 {
    match rule.rndtime {
        Some(r) if r > 0 => (rng.next_u64() % r as u64) as i64,
        _ => 0,
    }
}

/// How many failures one failure of `failure_time` counts for, for an address that this
/// jail banned `prior` times before, the last ban starting at `last_ban`.
///
/// fail2ban's observer re-weights failures of known bad addresses: `2^(n-1) + 1` (2, 3, 5,
/// 9, ...), capped at `maxretry`. A failure that is not newer than the last ban was already
/// accounted for (a log line read again after a restart) and counts once.
pub fn failure_weight(
    rule: &Escalation,
    prior: u32,
    last_ban: Option<Epoch>,
    failure_time: Epoch,
    maxretry: u32,
) -> u32 {
    if !rule.increment || prior == 0 {
        return 1;
    }
    if last_ban.is_some_and(|t| failure_time <= t) {
        return 1;
    }
    let n = prior.min(MAX_EXPONENT);
    let weight = (1u32 << (n - 1)) + 1;
    weight.min(maxretry).max(1)
}

/// An escalation ready to apply inside a ledger transaction: the rule plus the random
/// extra already drawn, so that the ledger stays deterministic.
#[derive(Debug, Clone, PartialEq)]
pub struct Escalate {
    pub rule: Escalation,
    /// Random seconds added to an escalated ban (see [`draw_extra`]).
    pub extra: i64,
}

impl Escalate {
    /// Draws the random extra for `rule` from `rng`.
    pub fn draw(rule: &Escalation, rng: &mut dyn RandomSource) -> Escalate {
        Escalate {
            rule: rule.clone(),
            extra: draw_extra(rule, rng),
        }
    }

    /// Whether earlier bans are counted over every jail (`bantime.overalljails`).
    pub fn overall(&self) -> bool {
        self.rule.overalljails
    }

    /// See [`ban_time`].
    pub fn ban_time(&self, base: i64, prior: u32) -> i64 {
        ban_time(&self.rule, base, prior, self.extra)
    }
}

/// A source of random numbers, injected so that tests are deterministic.
pub trait RandomSource {
    fn next_u64(&mut self) -> u64;
}

/// A xorshift64* generator: fast, tiny, and plenty for spreading unban times. Not for
/// anything secret.
#[derive(Debug, Clone)]
pub struct XorShift64 {
    state: u64,
}

impl XorShift64 {
    /// A generator with a fixed seed (0 is replaced, as xorshift never leaves 0).
    pub fn new(seed: u64) -> XorShift64 {
        // One splitmix64 step spreads nearby seeds (clock readings) apart.
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        XorShift64 {
            state: if z == 0 { 0x2545_f491_4f6c_dd1d } else { z },
        }
    }

    /// A generator seeded from the clock and the process id.
    pub fn from_clock() -> XorShift64 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        XorShift64::new(nanos ^ (u64::from(std::process::id()) << 32))
    }
}

impl RandomSource for XorShift64 {
    fn next_u64(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Converts fractional seconds to whole seconds, saturating instead of wrapping.
fn seconds(x: f64) -> i64 {
    if x >= i64::MAX as f64 {
        i64::MAX
    } else if x <= 0.0 {
        0
    } else {
        x as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule() -> Escalation {
        Escalation {
            increment: true,
            factor: 1.0,
            multipliers: Vec::new(),
            maxtime: None,
            rndtime: None,
            overalljails: false,
        }
    }

    /// A generator that returns the values it was given, in turn.
    struct Fixed(Vec<u64>);
    impl RandomSource for Fixed {
        fn next_u64(&mut self) -> u64 {
            self.0.remove(0)
        }
    }

    #[test]
    fn first_ban_keeps_the_jail_bantime() {
        let mut r = rule();
        r.factor = 3.0;
        r.maxtime = Some(60);
        r.multipliers = vec![5.0, 10.0];
        assert_eq!(ban_time(&r, 600, 0, 17), 600);
    }

    #[test]
    fn default_formula_doubles_per_earlier_ban() {
        let r = rule();
        let got: Vec<i64> = (0..6).map(|n| ban_time(&r, 600, n, 0)).collect();
        assert_eq!(got, [600, 1200, 2400, 4800, 9600, 19200]);
    }

    #[test]
    fn exponent_stops_at_twenty() {
        let r = rule();
        assert_eq!(ban_time(&r, 1, 20, 0), 1 << 20);
        assert_eq!(ban_time(&r, 1, 21, 0), 1 << 20);
        assert_eq!(ban_time(&r, 1, 500, 0), 1 << 20);
    }

    #[test]
    fn factor_multiplies_repeat_bans_only() {
        let mut r = rule();
        r.factor = 2.0;
        assert_eq!(ban_time(&r, 600, 0, 0), 600);
        assert_eq!(ban_time(&r, 600, 1, 0), 2400);
        assert_eq!(ban_time(&r, 600, 2, 0), 4800);
    }

    #[test]
    fn default_formula_never_goes_below_bantime() {
        let mut r = rule();
        r.factor = 0.1;
        assert_eq!(ban_time(&r, 600, 1, 0), 600);
        assert_eq!(ban_time(&r, 600, 4, 0), 960);
    }

    #[test]
    fn fractional_results_drop_the_fraction() {
        let mut r = rule();
        r.factor = 1.5;
        assert_eq!(ban_time(&r, 7, 1, 0), 21);
        r.factor = 1.25;
        // 7 * 2 * 1.25 = 17.5.
        assert_eq!(ban_time(&r, 7, 1, 0), 17);
    }

    #[test]
    fn multipliers_are_indexed_by_earlier_bans_and_the_last_repeats() {
        // jail.conf's example: "1 2 4 8 16 32 64" with bantime 600 tops out at 10.6 hours.
        let mut r = rule();
        r.multipliers = vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0];
        let got: Vec<i64> = (0..9).map(|n| ban_time(&r, 600, n, 0)).collect();
        assert_eq!(
            got,
            [600, 1200, 2400, 4800, 9600, 19200, 38400, 38400, 38400]
        );
        assert_eq!(38400.0 / 3600.0_f64, 10.666666666666666);
    }

    #[test]
    fn minute_multipliers_example() {
        // jail.conf: with bantime=60, "1 5 30 60 300 720 1440 2880" are minutes.
        let mut r = rule();
        r.multipliers = vec![1.0, 5.0, 30.0, 60.0, 300.0, 720.0, 1440.0, 2880.0];
        let minutes: Vec<i64> = (0..9).map(|n| ban_time(&r, 60, n, 0) / 60).collect();
        assert_eq!(minutes, [1, 5, 30, 60, 300, 720, 1440, 2880, 2880]);
    }

    #[test]
    fn multipliers_use_factor_without_the_bantime_floor() {
        let mut r = rule();
        r.multipliers = vec![1.0, 0.5, 3.0];
        r.factor = 2.0;
        assert_eq!(ban_time(&r, 600, 1, 0), 600);
        r.factor = 0.5;
        assert_eq!(ban_time(&r, 600, 1, 0), 150);
        assert_eq!(ban_time(&r, 600, 2, 0), 900);
    }

    #[test]
    fn maxtime_caps_escalated_bans_but_not_the_first() {
        let mut r = rule();
        r.maxtime = Some(3000);
        assert_eq!(ban_time(&r, 600, 1, 0), 1200);
        assert_eq!(ban_time(&r, 600, 3, 0), 3000);
        assert_eq!(ban_time(&r, 600, 19, 0), 3000);
        // A jail whose bantime is above the cap: first ban unchanged, later ones capped.
        assert_eq!(ban_time(&r, 5000, 0, 0), 5000);
        assert_eq!(ban_time(&r, 5000, 1, 0), 3000);
    }

    #[test]
    fn random_extra_comes_after_the_cap() {
        let mut r = rule();
        r.maxtime = Some(3000);
        r.rndtime = Some(100);
        assert_eq!(ban_time(&r, 600, 5, 42), 3042);
        // Nothing is added where nothing escalates.
        assert_eq!(ban_time(&r, 600, 0, 42), 600);
    }

    #[test]
    fn draw_extra_stays_below_rndtime() {
        let mut r = rule();
        assert_eq!(draw_extra(&r, &mut Fixed(vec![])), 0);
        r.rndtime = Some(0);
        assert_eq!(draw_extra(&r, &mut Fixed(vec![])), 0);
        r.rndtime = Some(100);
        assert_eq!(draw_extra(&r, &mut Fixed(vec![0])), 0);
        assert_eq!(draw_extra(&r, &mut Fixed(vec![99])), 99);
        assert_eq!(draw_extra(&r, &mut Fixed(vec![100])), 0);
        assert_eq!(draw_extra(&r, &mut Fixed(vec![u64::MAX])), 15);
        let mut rng = XorShift64::new(7);
        for _ in 0..10_000 {
            let x = draw_extra(&r, &mut rng);
            assert!((0..100).contains(&x), "{x}");
        }
    }

    #[test]
    fn xorshift_spreads_over_the_range() {
        let mut rng = XorShift64::new(1);
        let mut buckets = [0u32; 10];
        for _ in 0..100_000 {
            buckets[(rng.next_u64() % 10) as usize] += 1;
        }
        for b in buckets {
            assert!((9_000..11_000).contains(&b), "{buckets:?}");
        }
        assert_ne!(XorShift64::new(0).next_u64(), 0);
        let (mut a, mut b) = (XorShift64::new(5), XorShift64::new(5));
        assert_eq!(a.next_u64(), b.next_u64());
        assert_ne!(XorShift64::new(5).next_u64(), XorShift64::new(6).next_u64());
    }

    #[test]
    fn escalate_draws_once_and_applies() {
        let mut r = rule();
        r.rndtime = Some(1000);
        r.overalljails = true;
        let e = Escalate::draw(&r, &mut Fixed(vec![250]));
        assert_eq!(e.extra, 250);
        assert!(e.overall());
        assert_eq!(e.ban_time(600, 0), 600);
        assert_eq!(e.ban_time(600, 1), 1450);
    }

    #[test]
    fn no_escalation_without_increment_or_for_permanent_bans() {
        let mut r = rule();
        assert_eq!(ban_time(&r, -1, 5, 0), -1);
        assert_eq!(ban_time(&r, 0, 5, 0), 0);
        r.increment = false;
        assert_eq!(ban_time(&r, 600, 5, 0), 600);
    }

    #[test]
    fn huge_values_saturate() {
        let mut r = rule();
        r.factor = 1e300;
        assert_eq!(ban_time(&r, i64::MAX / 2, 20, 0), i64::MAX);
        assert_eq!(ban_time(&r, i64::MAX / 2, 20, 10), i64::MAX);
    }

    #[test]
    fn failure_weight_grows_for_known_bad_addresses() {
        let r = rule();
        let w: Vec<u32> = (0..6)
            .map(|n| failure_weight(&r, n, None, 100, 50))
            .collect();
        // fail2ban: "one try will count than 2, 3, 5, 9 ...".
        assert_eq!(w, [1, 2, 3, 5, 9, 17]);
        assert_eq!(failure_weight(&r, 25, None, 100, u32::MAX), (1 << 19) + 1);
    }

    #[test]
    fn failure_weight_is_capped_at_maxretry() {
        let r = rule();
        assert_eq!(failure_weight(&r, 4, None, 100, 5), 5);
        assert_eq!(failure_weight(&r, 30, None, 100, 3), 3);
        assert_eq!(failure_weight(&r, 3, None, 100, 1), 1);
    }

    #[test]
    fn failure_weight_ignores_failures_older_than_the_last_ban() {
        let r = rule();
        assert_eq!(failure_weight(&r, 3, Some(100), 100, 10), 1);
        assert_eq!(failure_weight(&r, 3, Some(100), 99, 10), 1);
        assert_eq!(failure_weight(&r, 3, Some(100), 101, 10), 5);
    }

    #[test]
    fn failure_weight_needs_increment() {
        let mut r = rule();
        r.increment = false;
        assert_eq!(failure_weight(&r, 3, None, 100, 10), 1);
    }

    #[test]
    fn default_formula_is_recognised_and_others_are_not() {
        assert!(is_default_formula(DEFAULT_FORMULA));
        assert!(is_default_formula(
            "ban.Time * (1 << (ban.Count if ban.Count < 20 else 20)) * banFactor"
        ));
        assert!(!is_default_formula(
            "ban.Time * math.exp(float(ban.Count+1)*banFactor)/math.exp(1*banFactor)"
        ));
        assert!(!is_default_formula(""));
    }

    #[test]
    fn validate_rejects_unusable_settings() {
        let ok = rule();
        assert_eq!(validate(&ok), Ok(()));
        let mut r = rule();
        r.factor = 0.0;
        assert_eq!(validate(&r), Err(EscalationError::Factor(0.0)));
        r = rule();
        r.factor = f64::NAN;
        assert!(matches!(validate(&r), Err(EscalationError::Factor(_))));
        r = rule();
        r.multipliers = vec![1.0, -2.0];
        assert_eq!(validate(&r), Err(EscalationError::Multiplier(-2.0)));
        r = rule();
        r.maxtime = Some(0);
        assert_eq!(validate(&r), Err(EscalationError::MaxTime(0)));
        r = rule();
        r.rndtime = Some(-1);
        assert_eq!(validate(&r), Err(EscalationError::RndTime(-1)));
        assert_eq!(
            EscalationError::MaxTime(0).to_string(),
            "bantime.maxtime 0 is not a positive number of seconds"
        );
    }
}
