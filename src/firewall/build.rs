//! From a resolved jail and action to a backend instance.
//!
//! warden's own `action.d` files say `native = auto|pf|nftables|log`. fail2ban's `pf` and
//! `nftables*` actions are served by the native backends too (their parameters keep their
//! meaning there), unless the action sets `native = no`; every other action runs its shell
//! commands as fail2ban does.

use std::path::Path;

use super::log::LogAction;
use super::nftables::NftAction;
use super::pf::PfAction;
use super::shell::ShellAction;
use super::{Action, FirewallError, JailSpec, KillScope, PortSpec};
use crate::config::{ActionConfig, JailConfig};

/// The native backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Native {
    Pf,
    Nftables,
    Log,
}

impl std::fmt::Display for Native {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Native::Pf => "pf",
            Native::Nftables => "nftables",
            Native::Log => "log",
        })
    }
}

/// The backend `banaction = auto` stands for on this host, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoChoice {
    pub native: Native,
    pub reason: String,
}

fn find_in_path(tool: &str) -> Option<std::path::PathBuf> {
    for dir in ["/sbin", "/usr/sbin", "/bin", "/usr/bin", "/usr/local/sbin"] {
        let p = Path::new(dir).join(tool);
        if p.is_file() {
            return Some(p);
        }
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(tool))
            .find(|p| p.is_file())
    })
}

/// Chooses the backend for `auto`: pf where pfctl exists, nftables where nft exists and
/// warden runs as root, else the log backend (with the reason, for a clear warning).
pub fn choose_auto() -> AutoChoice {
    let root = nix::unistd::geteuid().is_root();
    if let Some(p) = find_in_path("pfctl") {
        return AutoChoice {
            native: Native::Pf,
            reason: format!("{} exists", p.display()),
        };
    }
    match find_in_path("nft") {
        Some(p) if root => AutoChoice {
            native: Native::Nftables,
            reason: format!("{} exists", p.display()),
        },
        Some(p) => AutoChoice {
            native: Native::Log,
            reason: format!(
                "{} exists but warden is not running as root, so it cannot change the firewall",
                p.display()
            ),
        },
        None => AutoChoice {
            native: Native::Log,
            reason: "neither pfctl nor nft was found".into(),
        },
    }
}

/// Which backend serves `action`: a native one, or None for a shell action.
pub fn native_kind(action: &ActionConfig, auto: Native) -> Result<Option<Native>, FirewallError> {
    let explicit = action
        .params
        .get("native")
        .map(|s| s.trim().to_ascii_lowercase());
    match explicit.as_deref() {
        Some("auto") => Ok(Some(auto)),
        Some("pf") => Ok(Some(Native::Pf)),
        Some("nftables") | Some("nft") => Ok(Some(Native::Nftables)),
        Some("log") => Ok(Some(Native::Log)),
        Some("no") | Some("false") | Some("shell") => Ok(None),
        Some(other) => Err(FirewallError::Config(format!(
            "action {}: native = {other:?} is not one of auto, pf, nftables, log, no",
            action.name
        ))),
        None => Ok(match action.kind.as_str() {
            "pf" => Some(Native::Pf),
            "nftables" | "nftables-multiport" | "nftables-allports" => Some(Native::Nftables),
            _ => None,
        }),
    }
}

/// The description of the jail a backend needs, from the jail and one of its actions.
/// Static tags of the action's parameters (`<name>`, `<port>`, ...) are rendered here.
pub fn spec_for(jail: &JailConfig, action: &ActionConfig) -> Result<JailSpec, FirewallError> {
    let mut params = action.params.clone();
    params
        .entry("name".into())
        .or_insert_with(|| jail.name.clone());
    params
        .entry("actname".into())
        .or_insert_with(|| action.name.clone());
    let rendered = crate::config::render_static_tags(&params, None)
        .map_err(|e| FirewallError::Config(format!("action {}: {e}", action.name)))?;
    let port_text = rendered.get("port").cloned().unwrap_or(jail.port.clone());
    let allports = action.kind.ends_with("-allports")
        || rendered
            .get("type")
            .or_else(|| rendered.get("actiontype"))
            .is_some_and(|t| t.contains("allports"));
    let ports = if allports {
        PortSpec::All
    } else {
        PortSpec::parse(&port_text).map_err(|e| {
            FirewallError::Config(format!(
                "jail {}, action {}: port {port_text:?}: {e}",
                jail.name, action.name
            ))
        })?
    };
    let proto_text = rendered
        .get("protocol")
        .cloned()
        .unwrap_or(jail.protocol.clone());
    let protocols: Vec<String> = proto_text
        .split(|c: char| c == ',' || c.is_whitespace() || c == '{' || c == '}')
        .map(|p| p.trim().to_ascii_lowercase())
        .filter(|p| !p.is_empty())
        .collect();
    let protocols = if protocols.iter().any(|p| p == "all") {
        Vec::new()
    } else {
        protocols
    };
    let kill_text = rendered
        .get("kill_states")
        .or_else(|| jail.options.get("kill_states"))
        .cloned()
        .unwrap_or_default();
    let kill_states = KillScope::parse(&kill_text).ok_or_else(|| {
        FirewallError::Config(format!(
            "jail {}: kill_states = {kill_text:?} is not one of auto, all, ports, none",
            jail.name
        ))
    })?;
    Ok(JailSpec {
        jail: jail.name.clone(),
        ports,
        protocols,
        kill_states,
        params: if native_kind(action, Native::Log)?.is_some() {
            rendered
        } else {
            // Shell actions render their tags per command, with the address family.
            params
        },
    })
}

/// Builds the backend instance for one action of a jail.
pub fn build(
    jail: &JailConfig,
    action: &ActionConfig,
    auto: Native,
) -> Result<(JailSpec, Box<dyn Action>), FirewallError> {
    let spec = spec_for(jail, action)?;
    let backend: Box<dyn Action> = match native_kind(action, auto)? {
        Some(Native::Pf) => Box::new(PfAction::new(&spec)?),
        Some(Native::Nftables) => Box::new(NftAction::new(spec.clone())?),
        Some(Native::Log) => Box::new(LogAction::new(&spec)),
        None => Box::new(ShellAction::new(&spec, &action.name)?),
    };
    Ok((spec, backend))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(jail_local: &str) -> crate::config::Config {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in crate::config::embedded_files() {
            let p = dir.path().join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        }
        std::fs::write(dir.path().join("jail.local"), jail_local).unwrap();
        let c = crate::config::load(dir.path()).unwrap();
        assert!(c.errors.is_empty(), "{:?}", c.errors);
        c
    }

    fn jail<'a>(c: &'a crate::config::Config, name: &str) -> &'a JailConfig {
        c.jails.iter().find(|j| j.name == name).unwrap()
    }

    #[test]
    fn shipped_jails_resolve_to_specs() {
        let c = load("[recidive]\nenabled = true\n[nginx-http-auth]\nenabled = true\n");
        let sshd = jail(&c, "sshd");
        let spec = spec_for(sshd, &sshd.actions[0]).unwrap();
        assert_eq!(spec.ports, PortSpec::parse("22").unwrap());
        assert_eq!(spec.protocols, ["tcp"]);
        assert_eq!(spec.kill_states, KillScope::Auto);
        assert_eq!(spec.kill_states.resolve(&spec.ports), KillScope::Ports);
        let rec = jail(&c, "recidive");
        let spec = spec_for(rec, &rec.actions[0]).unwrap();
        assert!(spec.ports.is_all());
        assert!(spec.protocols.is_empty(), "protocol = all");
        assert_eq!(spec.kill_states, KillScope::All);
        let web = jail(&c, "nginx-http-auth");
        let spec = spec_for(web, &web.actions[0]).unwrap();
        assert!(spec.ports.contains(80) && spec.ports.contains(443));
        assert!(!spec.ports.contains(22));
    }

    #[test]
    fn native_kinds() {
        let c = load(
            "[sshd]\nbanaction = pf\n[nginx-http-auth]\nenabled = true\nbanaction = nftables\n[apache-auth]\nenabled = true\nbanaction = log\n",
        );
        let kinds: Vec<Option<Native>> = ["sshd", "nginx-http-auth", "apache-auth"]
            .iter()
            .map(|j| native_kind(&jail(&c, j).actions[0], Native::Log).unwrap())
            .collect();
        assert_eq!(
            kinds,
            [Some(Native::Pf), Some(Native::Nftables), Some(Native::Log)]
        );
        let pf = jail(&c, "sshd");
        let spec = spec_for(pf, &pf.actions[0]).unwrap();
        // <name>-style tags are rendered for native backends.
        assert!(spec.params.values().all(|v| !v.contains("<name>")));
        let (_, backend) = build(pf, &pf.actions[0], Native::Log).unwrap();
        assert_eq!(
            backend.describe(),
            "pf anchor warden/sshd table warden-sshd"
        );
    }

    #[test]
    fn bad_kill_states_is_a_config_error() {
        let c = load("[sshd]\nkill_states = some\n");
        let sshd = jail(&c, "sshd");
        let e = spec_for(sshd, &sshd.actions[0]).unwrap_err();
        assert!(e.to_string().contains("kill_states"), "{e}");
    }
}
