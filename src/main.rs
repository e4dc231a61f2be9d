//! The `shardis` binary: parse flags, build the configuration, run the server.

use clap::Parser;
use shardis::config::{Cli, Config};

/// Counts live heap bytes for INFO memory (see `runtime::alloc`).
#[global_allocator]
static ALLOC: shardis::runtime::alloc::Counting = shardis::runtime::alloc::Counting;

fn main() {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            let code = match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => 0,
                _ => 1,
            };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    let cfg = match Config::from_cli(&cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("shardis: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = shardis::server::run(cfg) {
        eprintln!("shardis: {e}");
        std::process::exit(1);
    }
}
