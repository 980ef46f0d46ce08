//! Date templates and detection: finds the timestamp in a log line and parses it.
