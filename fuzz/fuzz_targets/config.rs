//! The config-file line reader and every directive's value parser: each line of the input
//! is split as redis-server splits a config line (`config::split_line`) and applied to a
//! fresh `Config` as a file line would be, and also given to CONFIG SET (`Tunables::set`).
//! Errors are fine; panics are not. Settings that are process-wide (the password, client
//! limit, script busy threshold) are skipped so runs stay independent.

#![no_main]

use libfuzzer_sys::fuzz_target;
use shardis::config::{split_line, Config, Tunables};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let tun = Tunables::new(&Config::default());
    for line in text.lines().take(32) {
        let Some(words) = split_line(line.trim()) else {
            continue;
        };
        let Some((name, rest)) = words.split_first() else {
            continue;
        };
        let name = name.to_ascii_lowercase();
        if matches!(
            name.as_str(),
            "include"
                | "requirepass"
                | "maxclients"
                | "lua-time-limit"
                | "busy-reply-threshold"
                | "dir"
                | "logfile"
                | "pidfile"
                | "daemonize"
                | "aclfile"
                | "user"
        ) {
            continue;
        }
        let value = rest.join(" ");
        let mut cfg = Config::default();
        let _ = cfg.apply(&name, &value);
        let _ = tun.set(&name, &value);
    }
});
