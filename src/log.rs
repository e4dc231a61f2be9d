//! Redis-style log lines (`pid:role dd Mon yyyy hh:mm:ss.mmm * message`) on stderr or in the
//! `logfile`, filtered by `--loglevel`. Called from any thread.

use std::io::Write;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Mutex, OnceLock};

static LEVEL: AtomicU8 = AtomicU8::new(2);

/// The log file, when `logfile` names one (opened once at startup, appended to).
static FILE: OnceLock<Mutex<std::fs::File>> = OnceLock::new();

/// Sends every later line to `path` (appending), as redis-server's `logfile`.
pub fn set_file(path: &str) -> std::io::Result<()> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    let _ = FILE.set(Mutex::new(f));
    Ok(())
}

/// Sets the level: debug(0), verbose(1), notice(2), warning(3), nothing(4).
pub fn set_level(name: &str) {
    let l = match name {
        "debug" => 0,
        "verbose" => 1,
        "notice" => 2,
        "warning" => 3,
        _ => 4,
    };
    LEVEL.store(l, Ordering::Relaxed);
}

fn emit(level: u8, mark: char, msg: &str) {
    if level < LEVEL.load(Ordering::Relaxed) {
        return;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    let line = format!(
        "{}:M {:02}:{:02}:{:02}.{:03} {} {}\n",
        std::process::id(),
        h,
        m,
        s,
        now.subsec_millis(),
        mark,
        msg
    );
    match FILE.get() {
        Some(f) => {
            if let Ok(mut f) = f.lock() {
                let _ = f.write_all(line.as_bytes());
            }
        }
        None => {
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
    }
}

pub fn verbose(msg: &str) {
    emit(1, '-', msg);
}

pub fn notice(msg: &str) {
    emit(2, '*', msg);
}

pub fn warning(msg: &str) {
    emit(3, '#', msg);
}
