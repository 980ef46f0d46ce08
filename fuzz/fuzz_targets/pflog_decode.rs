//! Fuzzes the pflog decoder: the bytes as a capture file (pcap or pcapng, framing, pflog
//! header, packet) and as one bare record, with every decoded record printed, serialised
//! and matched. `tests/pflog_props.rs` runs the same entry point on stable.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    warden::source::pflog::decode_everything(data);
});
