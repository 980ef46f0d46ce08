//! The client side of the control socket: connect, send one request, read one response.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::protocol::{Answer, Request, Response};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("warden is not running (no daemon answers on {})", socket.display())]
    NotRunning { socket: PathBuf },
    #[error("permission denied on {}: the control socket is for root", socket.display())]
    PermissionDenied { socket: PathBuf },
    #[error("control socket {}: {source}", socket.display())]
    Io {
        socket: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("bad answer from the daemon: {0}")]
    Protocol(String),
    /// The daemon understood the request and refused it.
    #[error("{0}")]
    Refused(String),
}

/// Sends `request` to the daemon on `socket` and returns its answer.
pub fn request(socket: &Path, request: &Request, timeout: Duration) -> Result<Answer, ClientError> {
    let stream = UnixStream::connect(socket).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
            ClientError::NotRunning {
                socket: socket.to_path_buf(),
            }
        }
        std::io::ErrorKind::PermissionDenied => ClientError::PermissionDenied {
            socket: socket.to_path_buf(),
        },
        _ => ClientError::Io {
            socket: socket.to_path_buf(),
            source: e,
        },
    })?;
    let io = |source| ClientError::Io {
        socket: socket.to_path_buf(),
        source,
    };
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    let mut line = serde_json::to_string(request).expect("requests serialise");
    line.push('\n');
    if let Err(e) = (&stream).write_all(line.as_bytes()) {
        // A daemon that refuses the connection answers and closes at once; its answer
        // says why, so read it before reporting the failed write.
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            return Err(io(e));
        }
    }
    let mut reader = BufReader::new(&stream);
    let mut answer = String::new();
    let n = reader.read_line(&mut answer).map_err(io)?;
    if n == 0 {
        return Err(ClientError::Protocol(
            "the daemon closed the connection without answering".into(),
        ));
    }
    match serde_json::from_str::<Response>(&answer) {
        Ok(Response::Ok { result, .. }) => Ok(result),
        Ok(Response::Err { error, .. }) => Err(ClientError::Refused(error)),
        Err(e) => Err(ClientError::Protocol(format!("{e}: {}", answer.trim()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    #[test]
    fn missing_socket_means_not_running() {
        let dir = tempfile::tempdir().unwrap();
        let err = request(
            &dir.path().join("none.sock"),
            &Request::Ping,
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(matches!(err, ClientError::NotRunning { .. }));
        assert!(err.to_string().contains("not running"));
    }

    #[test]
    fn stale_socket_means_not_running() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stale.sock");
        drop(UnixListener::bind(&path).unwrap());
        let err = request(&path, &Request::Ping, Duration::from_secs(1)).unwrap_err();
        assert!(matches!(err, ClientError::NotRunning { .. }), "{err}");
    }

    #[test]
    fn talks_line_delimited_json() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            let mut r = BufReader::new(&s);
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            let req: Request = serde_json::from_str(&line).unwrap();
            let resp = match req {
                Request::Ping => Response::ok(Answer::Pong),
                _ => Response::err("unexpected"),
            };
            let mut out = serde_json::to_string(&resp).unwrap();
            out.push('\n');
            (&s).write_all(out.as_bytes()).unwrap();
        });
        let a = request(&path, &Request::Ping, Duration::from_secs(5)).unwrap();
        assert_eq!(a, Answer::Pong);
        server.join().unwrap();
    }
}
