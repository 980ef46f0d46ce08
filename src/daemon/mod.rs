//! The daemon: task wiring, reload on SIGHUP, clean shutdown.
//!
//! ```text
//!  file tailers ─┐ (one per logpath entry, shared by the jails naming it)
//!  journalctl  ──┼─ JailInput ─▶ jail tasks ── matching and counting on the blocking pool
//!  pflog tails ──┘                 │  ▲ JailCtl (reload, ledger bans, forget)
//!                                  ▼  │
//!                   Output ─▶ engine task ──▶ ledger thread (SQLite)
//!   control socket ─ControlMsg─▶  │     └──▶ firewall worker thread (every Action)
//!   signals ─────────────────────▶┘ ◀── FwReport
//! ```
//!
//! - [`engine`]: the owner of ban state (see its documentation for the ban flow).
//! - [`jail`]: per-jail matching and counting, and its task.
//! - [`sources`]: tailers, journal and pflog readers.
//! - [`firewall`]: the firewall worker.
//! - [`paths`], [`pidfile`], [`logging`], [`metrics`], [`clock`]: the rest.
//!
//! `docs/daemon.md` describes the whole as built. warden never forks: it runs in the
//! foreground under a service manager (systemd `Type=simple`, rc.d `daemon(8)`).

pub mod clock;
pub mod engine;
pub mod firewall;
pub mod jail;
pub mod logging;
pub mod metrics;
pub mod paths;
pub mod pidfile;
pub mod replay;
pub mod sources;

use std::path::PathBuf;
use std::sync::Arc;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

use crate::config::{ConfigError, ConfigLocation};
use crate::control::protocol::Request;
use crate::control::server::{self, ControlMsg, ServerError};
use crate::firewall::build::{Native, choose_auto};
use crate::jail::dns::Resolver;
use crate::ledger::{Ledger, LedgerError, LedgerHandle, LedgerOptions};

/// How `warden run` was asked to run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub config: Option<PathBuf>,
    pub socket: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    /// `auto`, `pf`, `nftables` or `log`: what `native = auto` actions use.
    pub backend: String,
}

/// Runs `f` on tokio's blocking pool and waits for it; a panic there carries on here.
pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// Why the daemon could not start (or stopped with an error).
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("--backend {0:?} is not one of auto, pf, nftables, log")]
    Backend(String),
    #[error(transparent)]
    Log(#[from] logging::LogError),
    #[error(transparent)]
    Pid(#[from] pidfile::PidFileError),
    #[error(transparent)]
    Socket(#[from] ServerError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl DaemonError {
    /// Whether the error is the user's configuration or usage (exit status 2).
    pub fn is_usage(&self) -> bool {
        matches!(self, DaemonError::Config(_) | DaemonError::Backend(_))
    }
}

/// The native backend that `auto` stands for, with a warning when it is the log backend.
fn choose_native(backend: &str) -> Result<Native, DaemonError> {
    Ok(match backend.trim().to_ascii_lowercase().as_str() {
        "" | "auto" => {
            let c = choose_auto();
            if c.native == Native::Log {
                warn!(reason = %c.reason,
                      "No usable firewall: bans are recorded and logged but NOT enforced (log backend). Run as root on a host with nftables or PF, or pass --backend.");
            } else {
                info!(backend = %c.native, reason = %c.reason, "Firewall backend chosen.");
            }
            c.native
        }
        "pf" => Native::Pf,
        "nftables" | "nft" => Native::Nftables,
        "log" => {
            warn!("--backend log: bans are recorded and logged but not enforced.");
            Native::Log
        }
        other => return Err(DaemonError::Backend(other.to_string())),
    })
}

/// Runs the daemon until SIGTERM, SIGINT or `warden stop`.
pub fn run(opts: RunOptions) -> Result<(), DaemonError> {
    let location = ConfigLocation::resolve(opts.config.as_deref());
    let config = location.load()?;
    let settings = config.daemon.clone();
    let logging = Arc::new(logging::init(
        &settings.loglevel,
        &settings.logtarget,
        &settings.syslogsocket,
    )?);
    if !["auto", "pf", "nftables", "nft", "log", ""].contains(&opts.backend.trim()) {
        return Err(DaemonError::Backend(opts.backend.clone()));
    }
    info!(version = env!("CARGO_PKG_VERSION"), config = %location, pid = std::process::id(), "warden starting.");
    let paths = paths::resolve(&settings, opts.socket.as_deref(), opts.data_dir.as_deref());
    for f in &paths.fallbacks {
        warn!(fallback = %f, "Not running as root: using per-user paths.");
    }
    let pid = pidfile::PidFile::acquire(&paths.pidfile)?;
    if let Some(dir) = paths.dbfile.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| DaemonError::Io {
            what: format!("database directory {}", dir.display()),
            source,
        })?;
    }
    let ledger = Ledger::open(&paths.dbfile, LedgerOptions::from_settings(&settings))?;
    let (handle, thread) = LedgerHandle::spawn(ledger).map_err(|source| DaemonError::Io {
        what: "starting the ledger thread".into(),
        source,
    })?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("warden-rt")
        .enable_all()
        .build()
        .map_err(|source| DaemonError::Io {
            what: "starting the runtime".into(),
            source,
        })?;
    let result = runtime.block_on(serve(
        location,
        config,
        opts.backend,
        paths.socket.clone(),
        handle,
        logging,
    ));
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    if let Err(e) = thread.join() {
        error!(error = %e, "Closing the ledger failed.");
    }
    drop(pid);
    match &result {
        Ok(()) => info!("warden stopped."),
        Err(e) => error!(error = %e, "warden stopped with an error."),
    }
    result
}

async fn serve(
    location: ConfigLocation,
    config: crate::config::Config,
    backend: String,
    socket: PathBuf,
    ledger: LedgerHandle,
    logging: Arc<logging::Logging>,
) -> Result<(), DaemonError> {
    let listener = server::bind(&socket)?;
    info!(socket = %socket.display(), "Control socket ready.");
    let native = choose_native(&backend)?;
    let metrics = Arc::new(metrics::Metrics::new());
    let (fw_tx, fw_rx) = mpsc::unbounded_channel();
    let fw =
        firewall::FirewallHandle::spawn(firewall::FwOptions::default(), fw_tx, metrics.clone())
            .map_err(|source| DaemonError::Io {
                what: "starting the firewall worker".into(),
                source,
            })?;
    let (ctl_tx, ctl_rx) = mpsc::channel::<ControlMsg>(64);
    let engine = engine::Engine::start(engine::EngineParts {
        location,
        config,
        native,
        ledger,
        firewall: fw,
        fw_reports: fw_rx,
        control: ctl_rx,
        clock: Arc::new(clock::SystemClock),
        metrics,
        resolver: Some(Arc::new(Arc::new(Resolver::default()))),
        logging: Some(logging.clone()),
        housekeeping: Some(engine::HOUSEKEEPING),
    })
    .await;
    let engine = match engine {
        Ok(e) => e,
        Err(e) => {
            let _ = std::fs::remove_file(&socket);
            return Err(e.into());
        }
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let server_task = tokio::spawn(server::serve(listener, ctl_tx.clone(), stop_rx));
    let signals = tokio::spawn(signals(ctl_tx, logging));
    engine.run().await;
    let _ = stop_tx.send(true);
    let _ = server_task.await;
    signals.abort();
    let _ = std::fs::remove_file(&socket);
    Ok(())
}

/// SIGHUP reloads, SIGTERM and SIGINT stop, SIGUSR1 reopens the log file.
async fn signals(ctl: mpsc::Sender<ControlMsg>, logging: Arc<logging::Logging>) {
    let (Ok(mut hup), Ok(mut term), Ok(mut int), Ok(mut usr1)) = (
        signal(SignalKind::hangup()),
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::user_defined1()),
    ) else {
        error!("Cannot install signal handlers.");
        return;
    };
    loop {
        let req = tokio::select! {
            _ = hup.recv() => {
                info!("SIGHUP: reloading.");
                Request::Reload { jail: None }
            }
            _ = term.recv() => {
                info!("SIGTERM: stopping.");
                Request::Stop
            }
            _ = int.recv() => {
                info!("SIGINT: stopping.");
                Request::Stop
            }
            _ = usr1.recv() => {
                logging.reopen();
                continue;
            }
        };
        if ctl.send(ControlMsg { req, reply: None }).await.is_err() {
            return;
        }
    }
}
