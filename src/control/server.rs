//! The daemon's side of the control socket: bind it safely, check who connects, and hand
//! each request to the engine.
//!
//! The socket file is created with mode 0600 (owned by the daemon's user, root in
//! production), and every connection's peer credentials are checked as well: only root
//! and the daemon's own user are served, so a socket made reachable by mistake (a wrong
//! mode set by hand, a directory mounted elsewhere) still refuses other users.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tracing::{debug, warn};

use super::protocol::{Request, Response};

/// Longest request line accepted.
const MAX_REQUEST: usize = 64 * 1024;
/// Connections served at once.
const MAX_CONNECTIONS: usize = 64;
/// How long a connection may stay idle between requests.
const IDLE: Duration = Duration::from_secs(300);

/// A request for the engine, with where to send the answer (None: nobody waits).
#[derive(Debug)]
pub struct ControlMsg {
    pub req: Request,
    pub reply: Option<oneshot::Sender<Response>>,
}

/// The socket cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("another warden answers on {}", .0.display())]
    InUse(PathBuf),
    #[error("control socket {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Binds the control socket at `path`: creates its directory, replaces a stale socket
/// file (one nobody answers on), refuses when a daemon answers. Call within a runtime.
pub fn bind(path: &Path) -> Result<UnixListener, ServerError> {
    let io = |source| ServerError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.exists()
    {
        std::fs::create_dir_all(dir).map_err(io)?;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755));
    }
    if std::fs::symlink_metadata(path).is_ok() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(ServerError::InUse(path.to_path_buf()));
        }
        tracing::info!(path = %path.display(), "Replacing a stale control socket.");
        std::fs::remove_file(path).map_err(io)?;
    }
    // Created with no access for others from the start; the mode is then made exact.
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let bound = UnixListener::bind(path);
    nix::sys::stat::umask(old);
    let listener = bound.map_err(io)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    Ok(listener)
}

/// Whether a peer with `uid` may use the socket of a daemon running as `own`.
pub fn allowed(uid: u32, own: u32) -> bool {
    uid == 0 || uid == own
}

/// Serves connections until `stop` turns true.
pub async fn serve(
    listener: UnixListener,
    engine: mpsc::Sender<ControlMsg>,
    mut stop: watch::Receiver<bool>,
) {
    let own = nix::unistd::geteuid().as_raw();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let Ok(permit) = slots.clone().try_acquire_owned() else {
                        warn!("Too many control connections; refusing one.");
                        continue;
                    };
                    let engine = engine.clone();
                    tokio::spawn(async move {
                        connection(stream, engine, own).await;
                        drop(permit);
                    });
                }
                Err(e) => {
                    warn!(error = %e, "Accepting a control connection failed.");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = stop.changed() => break,
        }
    }
}

async fn write(stream: &mut tokio::net::unix::OwnedWriteHalf, r: &Response) -> std::io::Result<()> {
    let mut line = serde_json::to_string(r).expect("responses serialise");
    line.push('\n');
    stream.write_all(line.as_bytes()).await
}

async fn connection(stream: UnixStream, engine: mpsc::Sender<ControlMsg>, own: u32) {
    let cred = stream.peer_cred();
    let (read, mut write_half) = stream.into_split();
    let uid = match cred {
        Ok(c) => c.uid(),
        Err(e) => {
            warn!(error = %e, "Cannot read a control client's credentials; refusing it.");
            return;
        }
    };
    let mut reader = BufReader::new(read);
    let mut line = Vec::new();
    if !allowed(uid, own) {
        warn!(
            uid,
            "Refused a control connection from a user other than root or the daemon's."
        );
        // Read (and ignore) the request first, so the client is not cut off while it is
        // still writing and sees the answer.
        let _ = tokio::time::timeout(
            Duration::from_secs(1),
            (&mut reader)
                .take(MAX_REQUEST as u64)
                .read_until(b'\n', &mut line),
        )
        .await;
        let _ = write(
            &mut write_half,
            &Response::err(format!(
                "permission denied: uid {uid} may not use the control socket"
            )),
        )
        .await;
        return;
    }
    loop {
        line.clear();
        let n = match tokio::time::timeout(
            IDLE,
            (&mut reader)
                .take(MAX_REQUEST as u64 + 1)
                .read_until(b'\n', &mut line),
        )
        .await
        {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => {
                debug!(error = %e, "Control connection read failed.");
                return;
            }
            Err(_) => return,
        };
        if n == 0 {
            return;
        }
        if line.len() > MAX_REQUEST {
            let _ = write(&mut write_half, &Response::err("request too long")).await;
            return;
        }
        let resp = match serde_json::from_slice::<Request>(&line) {
            Err(e) => Response::err(format!("bad request: {e}")),
            Ok(req) => {
                let (tx, rx) = oneshot::channel();
                if engine
                    .send(ControlMsg {
                        req,
                        reply: Some(tx),
                    })
                    .await
                    .is_err()
                {
                    Response::err("the daemon is shutting down")
                } else {
                    rx.await
                        .unwrap_or_else(|_| Response::err("the daemon is shutting down"))
                }
            }
        };
        if write(&mut write_half, &resp).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::protocol::Answer;

    #[test]
    fn only_root_and_the_daemons_user_are_allowed() {
        assert!(allowed(0, 1000));
        assert!(allowed(1000, 1000));
        assert!(!allowed(65534, 1000));
        assert!(!allowed(65534, 0));
    }

    #[tokio::test]
    async fn serves_requests_and_replaces_a_stale_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/w.sock");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let listener = bind(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(matches!(bind(&path), Err(ServerError::InUse(_))));
        let (tx, mut rx) = mpsc::channel(4);
        let (stop_tx, stop) = watch::channel(false);
        let server = tokio::spawn(serve(listener, tx, stop));
        tokio::spawn(async move {
            while let Some(m) = rx.recv().await {
                let r = match m.req {
                    Request::Ping => Response::ok(Answer::Pong),
                    _ => Response::err("no"),
                };
                let _ = m.reply.unwrap().send(r);
            }
        });
        let p = path.clone();
        let answer = tokio::task::spawn_blocking(move || {
            crate::control::client::request(&p, &Request::Ping, Duration::from_secs(5))
        })
        .await
        .unwrap()
        .unwrap();
        assert_eq!(answer, Answer::Pong);
        stop_tx.send(true).unwrap();
        server.await.unwrap();
    }
}
