//! The `warden` binary: parse the command line, run the subcommand, map errors to exit codes.

#[global_allocator]
static GLOBAL: warden::alloc::Mimalloc = warden::alloc::Mimalloc;

fn main() -> std::process::ExitCode {
    // mimalloc asks for transparent huge pages on its arenas. A daemon whose memory comes
    // and goes in small blocks then pays for every 2 MiB page it touches anew (zeroed at
    // each fault, and counted whole in its RSS): measured on the ingest benchmark, THP
    // cost a fifth of the throughput and 40 MiB of RSS at rest.
    #[cfg(target_os = "linux")]
    let _ = nix::sys::prctl::set_thp_disable(true);
    warden::cli::main()
}
