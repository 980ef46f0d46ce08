//! Filters: tag expansion, Python-regex translation, the matcher engines, and the
//! per-line pipeline (date, prefregex, failregex, ignoreregex, multi-line).
