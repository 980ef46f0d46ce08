//! Configuration in fail2ban's layout: INI parsing with source spans, `%(x)s`
//! interpolation, includes, `.local` overrides, and resolution into jails.

pub mod model;

pub use model::*;
