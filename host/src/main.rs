use clap::Parser;
use portico::telemetry::logs::{self, LogFormat};
use std::process::ExitCode;

/// Small allocations on many threads are most of what the ingest path does
/// besides SQLite and the guest; glibc's malloc spent about a fifth of the
/// CPU on them under load (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = portico::cli::Cli::parse();
    let format = std::env::var("PORTICO_LOG_FORMAT").ok();
    match LogFormat::from_env_value(format.as_deref()) {
        Ok(format) => logs::init(format),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(portico::cli::run(cli));
    drop(runtime);
    portico::telemetry::traces::shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the error and its causes, joined.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
