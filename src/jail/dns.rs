//! Host names in failures (`usedns = yes|warn`): resolved with a bounded cache, a bounded
//! number of lookups in flight, and a timeout, so an attacker who controls the names in a
//! log cannot make a jail wait on slow DNS or fill memory.
//!
//! Lookups run on short-lived threads of their own (the system resolver has no timeout of
//! its own); the caller waits at most [`LOOKUP_TIMEOUT`]. A lookup that times out keeps
//! running and fills the cache when it ends, so the next failure of the same name finds
//! the answer.

use std::collections::HashMap;
use std::net::{IpAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long an answer (also "no address") is reused.
pub const CACHE_TTL: Duration = Duration::from_secs(300);
/// Most names cached.
pub const CACHE_MAX: usize = 10_000;
/// Most lookups running at once; beyond it a name counts as unresolved.
pub const MAX_IN_FLIGHT: usize = 8;
/// How long one failure waits for its lookup.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(3);

/// Something that turns a host name into addresses.
pub trait Resolve: Send + Sync {
    /// The addresses of `name`; empty when it has none or could not be resolved in time.
    fn resolve(&self, name: &str) -> Vec<IpAddr>;
}

type Lookup = dyn Fn(&str) -> Vec<IpAddr> + Send + Sync;
type Cache = Mutex<HashMap<String, (Instant, Arc<Vec<IpAddr>>)>>;

/// The system resolver behind a cache.
pub struct Resolver {
    cache: Cache,
    in_flight: AtomicUsize,
    lookup: Arc<Lookup>,
    timeout: Duration,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver").finish_non_exhaustive()
    }
}

/// The system resolver's addresses for `name`, sorted, without duplicates (none on error).
pub(crate) fn system_lookup(name: &str) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = (name, 0)
        .to_socket_addrs()
        .map(|it| it.map(|sa| sa.ip()).collect())
        .unwrap_or_default();
    out.sort();
    out.dedup();
    out
}

impl Default for Resolver {
    fn default() -> Self {
        Resolver::with_lookup(Arc::new(system_lookup), LOOKUP_TIMEOUT)
    }
}

impl Resolver {
    /// A resolver using `lookup` instead of the system's (tests).
    pub fn with_lookup(lookup: Arc<Lookup>, timeout: Duration) -> Resolver {
        Resolver {
            cache: Mutex::new(HashMap::new()),
            in_flight: AtomicUsize::new(0),
            lookup,
            timeout,
        }
    }

    fn cached(&self, name: &str) -> Option<Arc<Vec<IpAddr>>> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .get(name)
            .filter(|(at, _)| at.elapsed() < CACHE_TTL)
            .map(|(_, v)| v.clone())
    }

    fn store(cache: &Cache, name: &str, v: Arc<Vec<IpAddr>>) {
        let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_MAX {
            cache.retain(|_, (at, _)| at.elapsed() < CACHE_TTL);
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
        }
        cache.insert(name.to_string(), (Instant::now(), v));
    }
}

impl Resolve for Arc<Resolver> {
    fn resolve(&self, name: &str) -> Vec<IpAddr> {
        if let Some(v) = self.cached(name) {
            return v.as_ref().clone();
        }
        if self.in_flight.fetch_add(1, Ordering::AcqRel) >= MAX_IN_FLIGHT {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            tracing::debug!(
                name,
                "Too many DNS lookups in flight; the name counts as unresolved."
            );
            return Vec::new();
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let me = self.clone();
        let owned = name.to_string();
        let spawned = std::thread::Builder::new()
            .name("warden-dns".into())
            .spawn(move || {
                let addrs = Arc::new((me.lookup)(&owned));
                Resolver::store(&me.cache, &owned, addrs.clone());
                me.in_flight.fetch_sub(1, Ordering::AcqRel);
                let _ = tx.send(addrs);
            });
        if spawned.is_err() {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            return Vec::new();
        }
        match rx.recv_timeout(self.timeout) {
            Ok(v) => v.as_ref().clone(),
            Err(_) => {
                tracing::debug!(name, "DNS lookup timed out; the name counts as unresolved.");
                Vec::new()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[test]
    fn answers_are_cached() {
        let calls = Arc::new(AtomicU32::new(0));
        let c = calls.clone();
        let r = Arc::new(Resolver::with_lookup(
            Arc::new(move |n: &str| {
                c.fetch_add(1, Ordering::SeqCst);
                if n == "bad.example" {
                    vec!["192.0.2.66".parse().unwrap()]
                } else {
                    Vec::new()
                }
            }),
            Duration::from_secs(5),
        ));
        assert_eq!(
            r.resolve("bad.example"),
            vec!["192.0.2.66".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(r.resolve("bad.example").len(), 1);
        assert!(r.resolve("none.example").is_empty());
        assert!(r.resolve("none.example").is_empty());
        assert_eq!(calls.load(Ordering::SeqCst), 2, "one lookup per name");
    }

    #[test]
    fn slow_lookups_time_out_and_fill_the_cache_later() {
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let gate = Mutex::new(gate);
        let r = Arc::new(Resolver::with_lookup(
            Arc::new(move |_: &str| {
                let _ = gate.lock().unwrap().recv();
                vec!["192.0.2.1".parse().unwrap()]
            }),
            Duration::from_millis(20),
        ));
        assert!(r.resolve("slow.example").is_empty(), "timed out");
        release.send(()).unwrap();
        while r.in_flight.load(Ordering::Acquire) > 0 {
            std::thread::yield_now();
        }
        assert_eq!(r.resolve("slow.example").len(), 1, "answer cached");
    }
}
