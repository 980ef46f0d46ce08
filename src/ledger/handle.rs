//! Use of the ledger from many tasks: a dedicated thread owns the [`Ledger`] and runs the
//! closures sent to it, one at a time, in the order they arrive.
//!
//! Each call is a closure over `&mut Ledger`, so the handle needs no command enum to stay
//! in step with the ledger's API, and a caller can group several operations into one trip
//! to the thread. The reply comes back over a tokio oneshot channel: async callers await
//! it, offline commands block on it.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc;
use std::thread::JoinHandle;

use tokio::sync::oneshot;
use tracing::error;

use super::{Ledger, LedgerError};

type Job = Box<dyn FnOnce(&mut Ledger) + Send>;

/// A clonable handle to the thread that owns the ledger.
#[derive(Clone, Debug)]
pub struct LedgerHandle {
    tx: mpsc::Sender<Job>,
}

/// The owning thread. It stops once every [`LedgerHandle`] is dropped and the calls
/// already sent have run; then it closes the ledger.
#[derive(Debug)]
pub struct LedgerThread {
    join: JoinHandle<Result<(), LedgerError>>,
}

impl LedgerThread {
    /// Waits for the thread to finish (drop every handle first) and returns the result of
    /// closing the ledger.
    pub fn join(self) -> Result<(), LedgerError> {
        self.join.join().unwrap_or(Err(LedgerError::Closed))
    }
}

impl LedgerHandle {
    /// Moves `ledger` to a new thread named `warden-ledger`.
    pub fn spawn(ledger: Ledger) -> std::io::Result<(LedgerHandle, LedgerThread)> {
        let (tx, rx) = mpsc::channel::<Job>();
        let join = std::thread::Builder::new()
            .name("warden-ledger".into())
            .spawn(move || {
                let mut ledger = ledger;
                for job in rx {
                    // A panicking call loses its reply (the caller sees Closed) but not the
                    // thread: the open transaction, if any, rolled back as it unwound.
                    if catch_unwind(AssertUnwindSafe(|| job(&mut ledger))).is_err() {
                        error!(path = %ledger.path().display(), "A ledger call panicked.");
                    }
                }
                ledger.close()
            })?;
        Ok((LedgerHandle { tx }, LedgerThread { join }))
    }

    /// Runs `f` on the ledger thread and awaits its result. If the future is dropped before
    /// the reply, `f` still runs (and what it committed stays committed).
    pub async fn run<T, F>(&self, f: F) -> Result<T, LedgerError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Ledger) -> Result<T, LedgerError> + Send + 'static,
    {
        self.send(f)?.await.unwrap_or(Err(LedgerError::Closed))
    }

    /// Runs `f` on the ledger thread and blocks until it is done. For threads outside the
    /// async runtime (offline commands); panics if called from within an async context.
    pub fn run_blocking<T, F>(&self, f: F) -> Result<T, LedgerError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Ledger) -> Result<T, LedgerError> + Send + 'static,
    {
        self.send(f)?
            .blocking_recv()
            .unwrap_or(Err(LedgerError::Closed))
    }

    fn send<T, F>(&self, f: F) -> Result<oneshot::Receiver<Result<T, LedgerError>>, LedgerError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Ledger) -> Result<T, LedgerError> + Send + 'static,
    {
        let (reply, rx) = oneshot::channel();
        let job: Job = Box::new(move |ledger| {
            // The caller may have gone away; its call still happened.
            let _ = reply.send(f(ledger));
        });
        self.tx.send(job).map_err(|_| LedgerError::Closed)?;
        Ok(rx)
    }
}
