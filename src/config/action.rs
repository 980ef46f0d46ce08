//! Actions: an `action.d` file combined with the jail's arguments. Values are interpolated
//! (`%(x)s`) but their `<tags>` stay symbolic: fail2ban renders them per ban, and so does
//! warden's action runner.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::rc::Rc;

use indexmap::IndexMap;

use super::definit::DefInit;
use super::diag::Problem;
use super::ini::Value;
use super::interp::Vars;
use super::model::{ActionConfig, Span};
use super::store::{Files, Store, split_conditional};
use super::tags;

/// Tags fail2ban leaves for ban time even when an action option of that name exists.
pub const RUNTIME_TAGS: [&str; 5] = [
    "matches",
    "ipmatches",
    "ipjailmatches",
    "timeout",
    "bantime",
];

/// Resolves one action of jail `jail`. None when no `action.d/<name>` file exists; the flag
/// tells whether one of its files has lines that could not be parsed.
pub(crate) fn resolve(
    files: &Files,
    name: &str,
    given: &IndexMap<String, Value>,
    jail: &str,
    jail_vars: &Vars,
    span: &Span,
) -> Result<Option<(ActionConfig, bool)>, Problem> {
    let Some(store) = Store::read_base(files, &Path::new("action.d").join(name)) else {
        return Ok(None);
    };
    let main = store
        .files
        .first()
        .map(|f| files.source.display(f))
        .unwrap_or_default();
    let has_errors = store.has_errors;
    let mut def = DefInit::new(Rc::new(store), main.clone(), given);
    // The jail's name is the default `name`; `actname` tells two uses of a file apart.
    let instance = given
        .get("name")
        .map(|v| v.text.clone())
        .unwrap_or_else(|| jail.to_string());
    let actname = match given.get("actname") {
        Some(v) => v.text.clone(),
        None if instance == jail => name.to_string(),
        None => match instance.strip_prefix(jail) {
            Some(rest) => format!("{name}{rest}"),
            None => format!("{name}-{instance}"),
        },
    };
    def.default_arg("name", Value::synthetic(&instance, span.clone()));
    def.default_arg("actname", Value::synthetic(&actname, span.clone()));
    def.read_init()?;
    let vars = def.vars(jail_vars);
    let mut params = IndexMap::new();
    def.add_all_definition(&mut params, &vars)?;
    for (k, v) in &def.init {
        params.insert(k.clone(), v.clone());
    }
    add_qualified(&def.store, &vars, &mut params)?;
    let config = ActionConfig {
        name: actname,
        kind: name.to_string(),
        file: Some(main),
        args: given
            .iter()
            .map(|(k, v)| (k.clone(), v.text.clone()))
            .collect(),
        params: params.into_iter().map(|(k, v)| (k, v.text)).collect(),
        span: span.clone(),
    };
    Ok(Some((config, has_errors)))
}

/// Adds the `<section/key>` and `<known/key>` values the parameters' tags refer to (also
/// through tags built from tags, such as `<ipt_<type>/_chain_rule>`) as parameters of those
/// names, so the tags can be rendered from the parameters alone.
fn add_qualified(
    store: &Store,
    vars: &Vars,
    params: &mut IndexMap<String, Value>,
) -> Result<(), Problem> {
    for cond in ["", "family=inet4", "family=inet6"] {
        let mut found: IndexMap<String, Value> = IndexMap::new();
        let mut lookup = |name: &str| -> Result<Option<String>, Problem> {
            if !name.contains('/') {
                return Ok(None);
            }
            let v = store.get_ex("Definition", name, vars)?;
            if let Some(v) = &v {
                found.insert(name.to_string(), v.clone());
            }
            Ok(v.map(|v| v.text))
        };
        let mut ignore: HashSet<String> = RUNTIME_TAGS.iter().map(|s| s.to_string()).collect();
        if cond.is_empty() {
            for k in params.keys() {
                if let Some((base, _)) = split_conditional(k) {
                    ignore.insert(base.to_string());
                }
            }
        }
        let result = tags::substitute(params, cond, &ignore, &mut lookup);
        // fail2ban substitutes without a family when the jail starts (errors stop the
        // jail); the family variants are only rendered per ban.
        if cond.is_empty() {
            result?;
        }
        for (k, v) in found {
            params.entry(k).or_insert(v);
        }
    }
    Ok(())
}

/// Substitutes the static `<tags>` of an action's parameters among themselves, as fail2ban
/// does once when a jail starts: `<port>`, `<name>`, `<known/x>`, nested tags. Ban-time tags
/// (`<ip>`, `<bantime>`, `<matches>`, ...) and tags that have a `?family=...` variant stay.
/// With `family` (`inet4`/`inet6`), `key?family=<family>` values are preferred, as at ban time.
pub fn render_static_tags(
    params: &BTreeMap<String, String>,
    family: Option<&str>,
) -> Result<BTreeMap<String, String>, String> {
    let span = Span {
        file: "(action)".into(),
        line: 0,
    };
    let map: IndexMap<String, Value> = params
        .iter()
        .map(|(k, v)| (k.clone(), Value::synthetic(v.clone(), span.clone())))
        .collect();
    let mut ignore: HashSet<String> = RUNTIME_TAGS.iter().map(|s| s.to_string()).collect();
    if family.is_none() {
        for k in map.keys() {
            if let Some((base, _)) = split_conditional(k) {
                ignore.insert(base.to_string());
            }
        }
    }
    let cond = family.map(|f| format!("family={f}")).unwrap_or_default();
    let mut lookup = |_: &str| Ok(None);
    tags::substitute(&map, &cond, &ignore, &mut lookup)
        .map(|m| m.into_iter().map(|(k, v)| (k, v.text)).collect())
        .map_err(|p| p.message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_tags_render_and_runtime_tags_stay() {
        let params: BTreeMap<String, String> = [
            ("actionban", "<cmd> -t f2b-<name> -T add <ip> # <bantime>"),
            ("cmd", "pfctl -a f2b/<name>"),
            ("name", "sshd"),
            ("bantime", "600"),
            ("blocktype", "REJECT"),
            ("blocktype?family=inet6", "REJECT6"),
            ("rule", "-j <blocktype>"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let r = render_static_tags(&params, None).unwrap();
        assert_eq!(
            r["actionban"],
            "pfctl -a f2b/sshd -t f2b-sshd -T add <ip> # <bantime>"
        );
        assert_eq!(r["rule"], "-j <blocktype>");
        let r6 = render_static_tags(&params, Some("inet6")).unwrap();
        assert_eq!(r6["rule"], "-j REJECT6");
    }
}
