//! The `warden` binary: parse the command line, run the subcommand, map errors to exit codes.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    warden::cli::main()
}
