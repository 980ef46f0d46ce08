//! A pfctl simulator for tests (see docs/pf.md). Not built yet.
fn main() {
    eprintln!("pfctl-sim: not built yet");
    std::process::exit(1);
}
