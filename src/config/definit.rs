//! What filter and action files share: a `[Definition]` section whose values the jail can
//! override with arguments (`name[key=value]`), an optional `[Init]` section whose values
//! are the defaults of those arguments, and the `<tag>` substitution that combines them.
//!
//! Precedence, as in fail2ban: the jail's arguments, then `[Init]`, then `[Definition]`
//! (and the file's `[DEFAULT]`). `[Init]` values are also available as `<known/key>`.

use std::collections::HashSet;
use std::path::PathBuf;
use std::rc::Rc;

use indexmap::IndexMap;

use super::diag::Problem;
use super::ini::Value;
use super::interp::Vars;
use super::store::{Store, split_conditional};
use super::tags;

/// A filter or action file, read, with the arguments the jail gives it.
#[derive(Debug, Clone)]
pub(crate) struct DefInit {
    pub store: Rc<Store>,
    /// The main file, as shown in messages.
    pub file: PathBuf,
    /// Arguments first, then `[Init]` values the arguments do not set, then `known/...`.
    pub init: IndexMap<String, Value>,
}

impl DefInit {
    pub fn new(store: Rc<Store>, file: PathBuf, args: &IndexMap<String, Value>) -> Self {
        DefInit {
            store,
            file,
            init: args.clone(),
        }
    }

    /// Sets an argument unless the jail gave it.
    pub fn default_arg(&mut self, key: &str, value: Value) {
        if !self.init.contains_key(key) {
            self.init.insert(key.to_string(), value);
        }
    }

    /// Adds the `[Init]` section's own values (interpolated without the jail's variables).
    pub fn read_init(&mut self) -> Result<(), Problem> {
        let Some(own) = self.store.own("Init") else {
            return Ok(());
        };
        for key in own.keys() {
            let Some(v) = self.store.get("Init", key, &Vars::new(), None)? else {
                continue;
            };
            if !key.starts_with("known/") {
                self.init.insert(format!("known/{key}"), v.clone());
            }
            if !self.init.contains_key(key) {
                self.init.insert(key.clone(), v);
            }
        }
        Ok(())
    }

    /// The variables `[Definition]` is interpolated with: the jail's, overridden by the
    /// arguments and `[Init]`.
    pub fn vars(&self, outer: &Vars) -> Vars {
        let mut v = outer.clone();
        for (k, val) in &self.init {
            v.insert(k.clone(), val.clone());
        }
        v
    }

    /// `[Definition]` values of `keys`, skipping keys the variables already give.
    pub fn definition_values(
        &self,
        keys: &[&str],
        vars: &Vars,
    ) -> Result<IndexMap<String, Value>, Problem> {
        let mut out = IndexMap::new();
        for key in keys {
            if vars.contains_key(*key) {
                continue;
            }
            if let Some(v) = self.store.get("Definition", key, vars, None)? {
                out.insert(key.to_string(), v);
            }
        }
        Ok(out)
    }

    /// Every `[Definition]` (and `[DEFAULT]`) value not yet in `out`, interpolated with
    /// `vars`.
    pub fn add_all_definition(
        &self,
        out: &mut IndexMap<String, Value>,
        vars: &Vars,
    ) -> Result<(), Problem> {
        if !self.store.has_section("Definition") {
            return Ok(());
        }
        for key in self.store.option_names("Definition") {
            if out.contains_key(&key) {
                continue;
            }
            if let Some(v) = self.store.get("Definition", &key, vars, None)? {
                out.insert(key, v);
            }
        }
        Ok(())
    }

    /// Combines `opts` with the arguments and substitutes `<tags>` among them; names that
    /// are no option are looked up in `[Definition]` (and `section/key` elsewhere).
    pub fn combine(
        &self,
        opts: IndexMap<String, Value>,
        vars: &Vars,
        extra_ignore: &[&str],
    ) -> Result<IndexMap<String, Value>, Problem> {
        let mut all = opts;
        for (k, v) in &self.init {
            all.insert(k.clone(), v.clone());
        }
        let mut ignore: HashSet<String> = extra_ignore.iter().map(|s| s.to_string()).collect();
        for k in all.keys() {
            if let Some((base, _)) = split_conditional(k) {
                ignore.insert(base.to_string());
            }
        }
        let store = &self.store;
        let mut lookup = |name: &str| -> Result<Option<String>, Problem> {
            Ok(store.get_ex("Definition", name, vars)?.map(|v| v.text))
        };
        tags::substitute(&all, "", &ignore, &mut lookup)
    }
}
