//! The daemon's counters, per jail, in the OpenMetrics text format (`warden metrics`).
//!
//! Every counter is incremented next to the log event it counts. Jails keep handles to
//! their own series ([`JailCounters`]), so the hot path touches one atomic and no lock.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JailLabel {
    pub jail: String,
}

/// Every metric of the daemon.
pub struct Metrics {
    registry: Registry,
    pub lines_read: Family<JailLabel, Counter>,
    pub lines_matched: Family<JailLabel, Counter>,
    pub failures: Family<JailLabel, Counter>,
    pub currently_failed: Family<JailLabel, Gauge>,
    pub bans: Family<JailLabel, Counter>,
    pub unbans: Family<JailLabel, Counter>,
    pub banned: Family<JailLabel, Gauge>,
    pub firewall_errors: Family<JailLabel, Counter>,
    pub states_killed: Family<JailLabel, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// One jail's series, cloned out of the families once.
#[derive(Clone, Debug, Default)]
pub struct JailCounters {
    pub lines_read: Counter,
    pub lines_matched: Counter,
    pub failures: Counter,
    pub currently_failed: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("warden");
        let m = Metrics {
            registry: Registry::default(),
            lines_read: Family::default(),
            lines_matched: Family::default(),
            failures: Family::default(),
            currently_failed: Family::default(),
            bans: Family::default(),
            unbans: Family::default(),
            banned: Family::default(),
            firewall_errors: Family::default(),
            states_killed: Family::default(),
        };
        registry.register(
            "lines_read",
            "Log lines (or records) read",
            m.lines_read.clone(),
        );
        registry.register(
            "lines_matched",
            "Lines a failregex matched",
            m.lines_matched.clone(),
        );
        registry.register("failures", "Failures counted", m.failures.clone());
        registry.register(
            "currently_failed",
            "Addresses with failures in the window",
            m.currently_failed.clone(),
        );
        registry.register("bans", "Bans recorded", m.bans.clone());
        registry.register("unbans", "Bans lifted", m.unbans.clone());
        registry.register("banned", "Bans in force", m.banned.clone());
        registry.register(
            "firewall_errors",
            "Firewall calls that failed",
            m.firewall_errors.clone(),
        );
        registry.register(
            "states_killed",
            "Existing connections or states cut by bans",
            m.states_killed.clone(),
        );
        Metrics { registry, ..m }
    }

    pub fn label(jail: &str) -> JailLabel {
        JailLabel {
            jail: jail.to_string(),
        }
    }

    /// The per-line series of one jail.
    pub fn jail(&self, jail: &str) -> JailCounters {
        let l = Metrics::label(jail);
        JailCounters {
            lines_read: self.lines_read.get_or_create_owned(&l),
            lines_matched: self.lines_matched.get_or_create_owned(&l),
            failures: self.failures.get_or_create_owned(&l),
            currently_failed: self.currently_failed.get_or_create_owned(&l),
        }
    }

    /// The OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a string cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_per_jail_in_openmetrics_text() {
        let m = Metrics::new();
        let c = m.jail("sshd");
        c.lines_read.inc_by(10);
        c.failures.inc();
        m.bans.get_or_create(&Metrics::label("sshd")).inc();
        let text = m.encode();
        assert!(
            text.contains("warden_lines_read_total{jail=\"sshd\"} 10"),
            "{text}"
        );
        assert!(
            text.contains("warden_bans_total{jail=\"sshd\"} 1"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }
}
