//! Configuration in fail2ban's layout: INI parsing with source spans, `%(x)s`
//! interpolation, includes, `.local` overrides, `<tag>` substitution, and resolution into
//! jails.
//!
//! The passes: [`ini`] parses each file once; [`store`] layers files (`X.conf`, `X.d/`,
//! `X.local`, includes) into one view; [`interp`] resolves `%(x)s`; [`tags`] resolves the
//! `<tag>` layer of filters and actions; [`filter`], [`action`] and [`jail`] build the
//! [`model`] types; [`daemon`] reads `warden.conf`. Every problem carries its file and line;
//! a jail with a problem is left out and the others load.

mod action;
mod daemon;
mod definit;
mod diag;
mod duration;
mod filter;
mod ini;
mod interp;
mod jail;
pub mod model;
mod options;
mod source;
mod store;
pub(crate) mod tags;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

pub use action::{RUNTIME_TAGS, render_static_tags};
pub use daemon::{DEFAULT_DBFILE, DEFAULT_PIDFILE, DEFAULT_SOCKET};
pub use duration::parse_duration;
pub use model::*;
pub use source::{DirSource, EMBEDDED_NAME, FileSource, MemSource};

use diag::Problem;
use indexmap::IndexMap;
use ini::Value;
use interp::Vars;
use store::{Files, Store};

/// The directory warden reads when none is given, if it exists.
pub const DEFAULT_DIR: &str = "/etc/warden";

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded_config.rs"));
}

/// The loader could not start: the directory itself is missing or unreadable. Everything
/// else is reported in [`Config::errors`].
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration directory {}: {source}", dir.display())]
    Dir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("configuration path {} is not a directory", .0.display())]
    NotDir(PathBuf),
}

/// Where a configuration comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigLocation {
    /// A directory in fail2ban's layout.
    Dir(PathBuf),
    /// The configuration compiled into the binary.
    Embedded,
}

impl ConfigLocation {
    /// The directory given on the command line, else `/etc/warden` if it exists, else the
    /// embedded configuration.
    pub fn resolve(explicit: Option<&Path>) -> ConfigLocation {
        match explicit {
            Some(p) => ConfigLocation::Dir(p.to_path_buf()),
            None if Path::new(DEFAULT_DIR).is_dir() => ConfigLocation::Dir(DEFAULT_DIR.into()),
            None => ConfigLocation::Embedded,
        }
    }

    /// Loads the configuration at this location.
    pub fn load(&self) -> Result<Config, ConfigError> {
        match self {
            ConfigLocation::Dir(d) => load(d),
            ConfigLocation::Embedded => Ok(load_embedded()),
        }
    }
}

impl std::fmt::Display for ConfigLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigLocation::Dir(d) => write!(f, "{}", d.display()),
            ConfigLocation::Embedded => f.write_str(EMBEDDED_NAME),
        }
    }
}

/// The files of the embedded configuration: `(path relative to config/, text)`.
pub fn embedded_files() -> &'static [(&'static str, &'static str)] {
    embedded::FILES
}

fn embedded_source() -> MemSource {
    MemSource::new(EMBEDDED_NAME, embedded::FILES)
}

/// Loads a configuration directory. Err only when the directory cannot be read.
pub fn load(dir: &Path) -> Result<Config, ConfigError> {
    let meta = std::fs::metadata(dir).map_err(|source| ConfigError::Dir {
        dir: dir.to_path_buf(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(ConfigError::NotDir(dir.to_path_buf()));
    }
    std::fs::read_dir(dir).map_err(|source| ConfigError::Dir {
        dir: dir.to_path_buf(),
        source,
    })?;
    Ok(load_source(&DirSource::new(dir)))
}

/// Loads warden's configuration compiled into the binary (`Config::dir` is `(embedded)`).
pub fn load_embedded() -> Config {
    load_source(&embedded_source())
}

/// Loads a configuration from any file source.
pub fn load_source(src: &dyn FileSource) -> Config {
    let files = Files::new(src);
    let mut errors: Vec<Diagnostic> = Vec::new();
    let mut warnings: Vec<Diagnostic> = Vec::new();
    let mut derrors = Vec::new();
    let mut dwarnings = Vec::new();
    let daemon = daemon::read(&files, &mut derrors, &mut dwarnings);
    let mut jails = Vec::new();
    let mut jail_errors = Vec::new();
    let mut jail_warnings = Vec::new();
    match Store::read_base(&files, Path::new("jail")) {
        None => jail_errors.push(
            Problem::new(
                files.span(Path::new("jail.conf"), 0),
                "no jail.conf or jail.local: no jail is defined",
            )
            .into_diag(None),
        ),
        Some(mut store) => {
            let builtin = Span {
                file: "(built-in)".into(),
                line: 0,
            };
            // fail2ban offers these to every jail (stock jail.conf uses them).
            for (k, v) in [
                ("fail2ban_version", "1.0.2".to_string()),
                ("warden_version", env!("CARGO_PKG_VERSION").to_string()),
                ("fail2ban_confpath", src.root().display().to_string()),
            ] {
                store
                    .defaults
                    .insert(k.to_string(), Value::synthetic(v, builtin.clone()));
            }
            let names: Vec<String> = store.user_sections().map(str::to_string).collect();
            for name in names {
                let out = jail::resolve(&files, &store, &name);
                for p in out.errors {
                    if out.enabled {
                        jail_errors.push(p.into_diag(Some(&name)));
                    } else {
                        let mut d = p.into_diag(Some(&name));
                        d.message.push_str(" (the jail is disabled)");
                        jail_warnings.push(d);
                    }
                }
                jail_warnings.extend(out.warnings.into_iter().map(|p| p.into_diag(Some(&name))));
                if let Some(j) = out.jail {
                    jails.push(j);
                }
            }
        }
    }
    let (ferrors, fwarnings) = files.take_problems();
    errors.extend(ferrors.into_iter().map(|p| p.into_diag(None)));
    errors.extend(derrors.into_iter().map(|p| p.into_diag(None)));
    errors.extend(jail_errors);
    warnings.extend(fwarnings.into_iter().map(|p| p.into_diag(None)));
    warnings.extend(dwarnings.into_iter().map(|p| p.into_diag(None)));
    warnings.extend(jail_warnings);
    tracing::debug!(
        dir = %src.root().display(),
        jails = jails.len(),
        errors = errors.len(),
        warnings = warnings.len(),
        "Configuration loaded."
    );
    Config {
        dir: src.root(),
        daemon,
        jails,
        errors,
        warnings,
    }
}

/// Loads one filter for `warden test`: `spec` is a filter name of the configuration
/// (`sshd`, `sshd[mode=aggressive]`) or a path to a filter file (`./my.conf[mode=x]`).
/// The filter is resolved as a jail with the default backend would see it (`logtype=file`
/// unless the arguments say otherwise).
pub fn load_filter(location: &ConfigLocation, spec: &str) -> Result<FilterConfig, Vec<Diagnostic>> {
    let cli = Span {
        file: "(command line)".into(),
        line: 0,
    };
    let fail = |msg: String| vec![Problem::new(cli.clone(), msg).into_diag(None)];
    let (name, args) = options::extract(spec).map_err(|e| fail(format!("filter {e}")))?;
    let args: IndexMap<String, Value> = args
        .into_iter()
        .map(|(k, v)| (k, Value::synthetic(v, cli.clone())))
        .collect();
    let looks_like_path = name.contains('/') || name.ends_with(".conf") || name.ends_with(".local");
    let path = Path::new(&name);
    // A file inside the configuration's filter.d is loaded by name, so its .local and
    // .d/ files apply; any other file is read on its own (with its includes).
    let in_filter_d = |d: &Path| {
        path.extension()
            .is_some_and(|e| e == "conf" || e == "local")
            && path
                .parent()
                .zip(std::fs::canonicalize(d.join("filter.d")).ok())
                .is_some_and(|(p, fd)| std::fs::canonicalize(p).is_ok_and(|p| p == fd))
    };
    let stem = || {
        path.file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string()
    };
    let (src, fname, by_path): (Box<dyn FileSource>, String, bool) = match location {
        ConfigLocation::Dir(d) if looks_like_path && in_filter_d(d) => {
            (Box::new(DirSource::new(d)), stem(), false)
        }
        _ if looks_like_path => (Box::new(DirSource::new("")), name.clone(), true),
        ConfigLocation::Dir(d) => (Box::new(DirSource::new(d)), name.clone(), false),
        ConfigLocation::Embedded => (Box::new(embedded_source()), name.clone(), false),
    };
    let files = Files::new(src.as_ref());
    let reader = match filter::FilterReader::open(&files, &fname, by_path, &args, "auto", &cli) {
        Ok(Some(r)) => r,
        Ok(None) => {
            let what = if by_path {
                format!("filter file {fname} not found")
            } else {
                format!("filter `{fname}` not found in {location}/filter.d")
            };
            return Err(fail(what));
        }
        Err(p) => return Err(vec![p.into_diag(None)]),
    };
    let result = reader.resolve(&Vars::new()).and_then(|parts| {
        filter::assemble(
            &fname,
            Some(reader.def.file.clone()),
            reader.args.clone(),
            Some(parts),
            &IndexMap::new(),
        )
    });
    let (ferrors, _) = files.take_problems();
    let mut errors: Vec<Diagnostic> = ferrors.into_iter().map(|p| p.into_diag(None)).collect();
    match result {
        Ok(f) if errors.is_empty() => Ok(f),
        Ok(_) => Err(errors),
        Err(p) => {
            errors.push(p.into_diag(None));
            Err(errors)
        }
    }
}

/// The daemon settings of the configuration in use (`dir`, else the default location),
/// with the defaults when it cannot be read. The client uses it to find the socket.
pub fn daemon_settings_for(dir: Option<&Path>) -> DaemonSettings {
    ConfigLocation::resolve(dir)
        .load()
        .map(|c| c.daemon)
        .unwrap_or_else(|_| daemon::defaults())
}
