//! Running outside tools: argument vectors (never a shell unless the caller is a
//! fail2ban-style shell action), optional stdin, captured output, a timeout, and the exit
//! status checked by the caller.
//!
//! Synchronous on purpose: firewall backends run on their own worker thread, and the
//! offline commands have no runtime.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A command to run.
#[derive(Debug, Clone)]
pub struct Cmd {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub stdin: Option<Vec<u8>>,
    pub env: Vec<(OsString, OsString)>,
    pub timeout: Duration,
}

impl Cmd {
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Cmd {
            program: program.into(),
            args: Vec::new(),
            stdin: None,
            env: Vec::new(),
            timeout: Duration::from_secs(60),
        }
    }

    pub fn arg(mut self, a: impl Into<OsString>) -> Self {
        self.args.push(a.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn stdin(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(data.into());
        self
    }

    pub fn env(mut self, k: impl Into<OsString>, v: impl Into<OsString>) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }

    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    /// The command line for messages (arguments shown with Debug quoting when needed).
    pub fn display(&self) -> String {
        let mut s = self.program.display().to_string();
        for a in &self.args {
            let a = a.to_string_lossy();
            s.push(' ');
            if a.is_empty() || a.contains(|c: char| c.is_whitespace() || c == '"' || c == '\'') {
                s.push_str(&format!("{a:?}"));
            } else {
                s.push_str(&a);
            }
        }
        s
    }

    /// Runs the command to completion or until its timeout (then it is killed).
    pub fn run(&self) -> Result<Output, ExecError> {
        let mut command = Command::new(&self.program);
        command
            .args(&self.args)
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in &self.env {
            command.env(k, v);
        }
        let started = Instant::now();
        let mut child = command.spawn().map_err(|source| ExecError::Spawn {
            cmd: self.display(),
            source,
        })?;
        // Feeding stdin and draining both pipes on their own threads keeps a chatty child
        // from blocking on a full pipe while we wait for it.
        let stdin_thread = match (child.stdin.take(), self.stdin.clone()) {
            (Some(mut pipe), Some(data)) => Some(std::thread::spawn(move || {
                // A child that exits without reading its input closes the pipe; that is
                // its business and shows in its exit status.
                let _ = pipe.write_all(&data);
            })),
            _ => None,
        };
        let mut out_pipe = child.stdout.take().expect("stdout is piped");
        let mut err_pipe = child.stderr.take().expect("stderr is piped");
        let out_thread = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = out_pipe.read_to_end(&mut buf);
            buf
        });
        let err_thread = std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = err_pipe.read_to_end(&mut buf);
            buf
        });
        let mut sleep = Duration::from_micros(200);
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) => {}
                Err(source) => {
                    return Err(ExecError::Spawn {
                        cmd: self.display(),
                        source,
                    });
                }
            }
            if started.elapsed() >= self.timeout {
                let _ = child.kill();
                let _ = child.wait();
                return Err(ExecError::Timeout {
                    cmd: self.display(),
                    after: self.timeout,
                });
            }
            std::thread::sleep(sleep);
            sleep = (sleep * 2).min(Duration::from_millis(20));
        };
        if let Some(t) = stdin_thread {
            let _ = t.join();
        }
        let stdout = out_thread.join().unwrap_or_default();
        let stderr = err_thread.join().unwrap_or_default();
        Ok(Output {
            cmd: self.display(),
            code: status.code(),
            stdout,
            stderr,
            elapsed: started.elapsed(),
        })
    }

    /// Runs the command and fails unless it exits with one of `ok_codes`.
    pub fn run_checked(&self, ok_codes: &[i32]) -> Result<Output, ExecError> {
        let out = self.run()?;
        match out.code {
            Some(c) if ok_codes.contains(&c) => Ok(out),
            _ => Err(ExecError::Status {
                cmd: out.cmd.clone(),
                code: out.code,
                stderr: out.stderr_text().trim().to_string(),
            }),
        }
    }
}

/// What a finished command produced.
#[derive(Debug, Clone)]
pub struct Output {
    pub cmd: String,
    /// None when killed by a signal.
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub elapsed: Duration,
}

impl Output {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("cannot run {cmd}: {source}")]
    Spawn {
        cmd: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{cmd} timed out after {after:?}")]
    Timeout { cmd: String, after: Duration },
    #[error("{cmd} exited with {}{}", code.map_or("a signal".to_string(), |c| format!("status {c}")), if stderr.is_empty() { String::new() } else { format!(": {stderr}") })]
    Status {
        cmd: String,
        code: Option<i32>,
        stderr: String,
    },
}

impl ExecError {
    /// Whether trying again later may succeed (timeouts and spawn failures may be passing).
    pub fn is_transient(&self) -> bool {
        match self {
            ExecError::Timeout { .. } => true,
            ExecError::Spawn { source, .. } => source.kind() != std::io::ErrorKind::NotFound,
            ExecError::Status { .. } => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_output_and_status() {
        let out = Cmd::new("/bin/sh")
            .args(["-c", "cat; echo err >&2; exit 3"])
            .stdin("hello")
            .run()
            .unwrap();
        assert_eq!(out.code, Some(3));
        assert_eq!(out.stdout_text(), "hello");
        assert_eq!(out.stderr_text(), "err\n");
    }

    #[test]
    fn times_out_and_kills() {
        let err = Cmd::new("/bin/sleep")
            .arg("5")
            .timeout(Duration::from_millis(100))
            .run()
            .unwrap_err();
        assert!(matches!(err, ExecError::Timeout { .. }), "{err}");
    }

    #[test]
    fn checked_reports_stderr() {
        let err = Cmd::new("/bin/sh")
            .args(["-c", "echo 'pfctl: Table does not exist.' >&2; exit 255"])
            .run_checked(&[0])
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("status 255"), "{msg}");
        assert!(msg.contains("Table does not exist."), "{msg}");
    }

    #[test]
    fn missing_program_is_a_spawn_error() {
        let err = Cmd::new("/nonexistent/tool").run().unwrap_err();
        assert!(matches!(err, ExecError::Spawn { .. }));
        assert!(!err.is_transient());
    }
}
