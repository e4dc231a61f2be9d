//! Redis-style log lines (`pid:role dd Mon yyyy hh:mm:ss.mmm * message`) on stderr or in the
//! `logfile`, filtered by `--loglevel`, and to syslog as well with `syslog-enabled yes` (the
//! message alone, at the matching priority, as redis-server). Called from any thread.

use std::io::Write;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Mutex, OnceLock};

static LEVEL: AtomicU8 = AtomicU8::new(2);

/// `syslog-enabled yes`: every line that passes the level also goes to syslog(3).
static SYSLOG: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Starts sending log lines to syslog (`syslog-ident`, `syslog-facility`), once at startup.
pub fn enable_syslog(ident: &str, facility: i32) {
    crate::runtime::sys::open_syslog(ident, facility);
    SYSLOG.store(true, Ordering::Relaxed);
}

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
    if SYSLOG.load(Ordering::Relaxed) {
        let prio = [
            libc::LOG_DEBUG,
            libc::LOG_INFO,
            libc::LOG_NOTICE,
            libc::LOG_WARNING,
        ];
        let p = prio
            .get(level as usize)
            .copied()
            .unwrap_or(libc::LOG_WARNING);
        crate::runtime::sys::syslog(p, msg);
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
    let (year, month, day) = civil_date(secs / 86400);
    let line = format!(
        "{}:{} {:02} {} {} {:02}:{:02}:{:02}.{:03} {} {}\n",
        std::process::id(),
        if crate::role::is_replica() { 'S' } else { 'M' },
        day,
        MONTHS
            .get(month.saturating_sub(1) as usize)
            .unwrap_or(&"Jan"),
        year,
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

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Year, month (1-12) and day of the month of a day count since 1970-01-01 (UTC), by
/// Howard Hinnant's days-from-civil inverse.
fn civil_date(days: u64) -> (i64, u32, u32) {
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
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

#[cfg(test)]
mod tests {
    #[test]
    fn civil_dates() {
        assert_eq!(super::civil_date(0), (1970, 1, 1));
        assert_eq!(super::civil_date(20_426), (2025, 12, 4));
        assert_eq!(super::civil_date(11_016), (2000, 2, 29));
    }
}
