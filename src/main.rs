//! The `shardis` binary: parse flags, build the configuration, run the server.

use clap::Parser;
use shardis::config::{Cli, Config};

/// Counts live heap bytes for INFO memory (see `runtime::alloc`).
#[global_allocator]
static ALLOC: shardis::runtime::alloc::Counting = shardis::runtime::alloc::Counting;

fn main() {
    // The connection side's, replication's and scripting's rows join the command table
    // before anything looks a command up.
    if !shardis::server::cmds::register() {
        eprintln!("internal error: the command table was built too early");
        std::process::exit(1);
    }
    let args: Vec<String> = std::env::args().collect();
    // Sentinel mode is its own process (like redis-sentinel): no shards, no data.
    if args.iter().skip(1).any(|a| a == "--sentinel") {
        std::process::exit(shardis::sentinel::main(&args));
    }
    let (clap_args, extra) = shardis::config::split_command_line(&args);
    let cli = match Cli::try_parse_from(clap_args) {
        Ok(c) => Cli { extra, ..c },
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
    if let Err(e) = shardis::commands::table::set_renames(&cfg.renames) {
        eprintln!("shardis: {e}");
        std::process::exit(1);
    }
    if let Err(e) = prepare(&cfg) {
        eprintln!("shardis: {e}");
        std::process::exit(1);
    }
    if let Err(e) = start_sentinel(&cfg) {
        eprintln!("shardis: {e}");
        std::process::exit(1);
    }
    let res = shardis::server::run(cfg.clone());
    if let Some(p) = &cfg.pidfile {
        let _ = std::fs::remove_file(p);
    }
    if let Err(e) = res {
        shardis::log::warning(&e);
        eprintln!("shardis: {e}");
        std::process::exit(1);
    }
}

/// `--sentinel-port`: a sentinel on its own threads inside this data node.
fn start_sentinel(cfg: &Config) -> Result<(), String> {
    let Some(port) = cfg.sentinel_port else {
        if cfg.sentinel_config.is_some() || !cfg.sentinel_lines.is_empty() {
            return Err("sentinel-config and sentinel-* settings need sentinel-port".into());
        }
        return Ok(());
    };
    let path = cfg
        .sentinel_config
        .clone()
        .unwrap_or_else(|| format!("sentinel-{port}.conf"));
    shardis::sentinel::embed(port, &path, &cfg.sentinel_lines)
}

/// What redis-server does between reading its configuration and serving: enter `dir`, open
/// `logfile`, fork into the background (`daemonize`), write `pidfile`, and log one warning
/// per directive accepted without being supported.
fn prepare(cfg: &Config) -> Result<(), String> {
    if let Some(dir) = &cfg.dir {
        std::env::set_current_dir(dir).map_err(|e| format!("Can't chdir to '{dir}': {e}"))?;
    }
    if !cfg.logfile.is_empty() {
        shardis::log::set_file(&cfg.logfile)
            .map_err(|e| format!("Can't open the log file: {e}"))?;
    }
    if cfg.syslog_enabled {
        shardis::log::enable_syslog(&cfg.syslog_ident, cfg.syslog_facility);
    }
    if cfg.daemonize {
        shardis::runtime::sys::daemonize().map_err(|e| format!("daemonize: {e}"))?;
    }
    if let Some(p) = &cfg.pidfile {
        if let Err(e) = std::fs::write(p, format!("{}\n", std::process::id())) {
            shardis::log::warning(&format!("Failed to write PID file: {e}"));
        }
    }
    for w in &cfg.warnings {
        shardis::log::warning(w);
    }
    // Users: requirepass is the default user's password; `user` lines and `aclfile` add
    // users (Redis refuses both at once).
    if !cfg.acl_users.is_empty() && cfg.aclfile.is_some() {
        return Err("Configuring Redis with users defined in redis.conf and at the same setting an ACL file path is invalid. This setup is very likely to lead to configuration errors and security holes, please define either an ACL file or declare users directly in your redis.conf, but not both.".into());
    }
    if !cfg.requirepass.is_empty() {
        shardis::acl::set_requirepass(&cfg.requirepass);
    }
    for line in &cfg.acl_users {
        shardis::acl::load_line(line)?;
    }
    if let Some(path) = &cfg.aclfile {
        shardis::acl::load_file(path)?;
    }
    Ok(())
}
