//! sentinel.conf: reading Redis's directive names at startup and rewriting the file with the
//! state a restarted sentinel must not lose (epochs, its vote, known replicas and sentinels,
//! the current master). Runs on whichever sentinel thread changes that state, under the
//! state lock, before the change is acted on.

use std::io::Write;
use std::path::Path;

use super::{Master, Sentinel};

/// Splits a config line into words; double or single quotes group words.
pub fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut any = false;
    for c in line.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => cur.push(c),
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                any = true;
            }
            None if c.is_whitespace() => {
                if any || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            None => cur.push(c),
        }
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn num<T: std::str::FromStr>(s: &str, what: &str) -> Result<T, String> {
    s.parse()
        .map_err(|_| format!("invalid {what} '{s}' in sentinel config"))
}

/// Applies one directive (already split into words) to the state. Directives that
/// shardis's sentinel does not implement are kept out of the way with a warning.
pub fn apply(s: &mut Sentinel, w: &[String]) -> Result<(), String> {
    let Some(first) = w.first() else {
        return Ok(());
    };
    let arg = |i: usize| w.get(i).map(String::as_str).unwrap_or("");
    match first.to_ascii_lowercase().as_str() {
        "port" => s.port = num(arg(1), "port")?,
        "bind" => s.bind = arg(1).trim_start_matches('-').to_string(),
        "loglevel" | "logfile" if s.embedded => s.warnings.push(format!(
            "sentinel: '{first}' in the sentinel config is ignored: an embedded sentinel logs \
             with its data node's settings"
        )),
        "loglevel" => crate::log::set_level(arg(1)),
        "logfile" if !arg(1).is_empty() => {
            crate::log::set_file(arg(1)).map_err(|e| format!("Can't open the log file: {e}"))?
        }
        "sentinel" => return apply_sentinel(s, &w[1..]),
        "requirepass" => s.requirepass = (!arg(1).is_empty()).then(|| arg(1).to_string()),
        // Access rules and TLS listeners the sentinel does not have: ignoring them would
        // leave its port open to clients the file meant to keep out.
        d @ ("user" | "aclfile" | "protected-mode" | "unixsocket") => {
            if !(d == "protected-mode" && arg(1).eq_ignore_ascii_case("no")) {
                return Err(format!(
                    "'{first}' is not supported by shardis's sentinel (only 'requirepass'): \
                     refusing to start without the access rule it names"
                ));
            }
        }
        d if d.starts_with("tls-") => {
            return Err(format!(
                "'{first}' is not supported by shardis's sentinel: it has no TLS listener \
                 (refusing to start rather than serve in clear text)"
            ))
        }
        other => s.warnings.push(format!(
            "sentinel: directive '{other}' is not supported by shardis's sentinel; ignored"
        )),
    }
    Ok(())
}

fn master_mut<'a>(s: &'a mut Sentinel, name: &str) -> Result<&'a mut Master, String> {
    s.masters
        .get_mut(name)
        .ok_or_else(|| "No such master with specified name.".to_string())
}

fn apply_sentinel(s: &mut Sentinel, w: &[String]) -> Result<(), String> {
    let arg = |i: usize| w.get(i).map(String::as_str).unwrap_or("");
    let sub = arg(0).to_ascii_lowercase();
    match sub.as_str() {
        "monitor" if w.len() == 5 => {
            let quorum: u32 = num(arg(4), "quorum")?;
            if quorum == 0 {
                return Err("Quorum must be 1 or greater.".into());
            }
            let m = Master::new(arg(1), arg(2), num(arg(3), "port")?, quorum);
            s.masters.insert(arg(1).to_string(), m);
        }
        "down-after-milliseconds" if w.len() == 3 => {
            master_mut(s, arg(1))?.down_after = num(arg(2), "down-after-milliseconds")?
        }
        "failover-timeout" if w.len() == 3 => {
            master_mut(s, arg(1))?.failover_timeout = num(arg(2), "failover-timeout")?
        }
        "parallel-syncs" if w.len() == 3 => {
            master_mut(s, arg(1))?.parallel_syncs = num(arg(2), "parallel-syncs")?
        }
        "auth-pass" if w.len() == 3 => {
            master_mut(s, arg(1))?.auth_pass = (!arg(2).is_empty()).then(|| arg(2).into())
        }
        "auth-user" if w.len() == 3 => {
            master_mut(s, arg(1))?.auth_user = (!arg(2).is_empty()).then(|| arg(2).into())
        }
        "resolve-hostnames" | "announce-hostnames" | "announce-ip" | "announce-port"
        | "sentinel-user" | "sentinel-pass"
            if w.len() == 2 =>
        {
            set_global(s, &sub, arg(1))?
        }
        "config-epoch" if w.len() == 3 => {
            master_mut(s, arg(1))?.config_epoch = num(arg(2), "config-epoch")?
        }
        "leader-epoch" if w.len() == 3 => {
            master_mut(s, arg(1))?.leader_epoch = num(arg(2), "leader-epoch")?
        }
        "known-replica" | "known-slave" if w.len() == 4 => {
            let port = num(arg(3), "port")?;
            master_mut(s, arg(1))?.add_inst(arg(2), port);
        }
        "known-sentinel" if w.len() == 5 => {
            let port = num(arg(3), "port")?;
            let runid = arg(4).to_string();
            master_mut(s, arg(1))?.add_peer(arg(2), port, &runid);
        }
        "myid" if w.len() == 2 => {
            if arg(1).len() != 40 {
                return Err("Malformed Sentinel id in myid option.".into());
            }
            s.myid = arg(1).to_string();
        }
        "current-epoch" if w.len() == 2 => s.current_epoch = num(arg(1), "current-epoch")?,
        // Ignoring these would change what a failover does (no script runs, commands go
        // out under their usual names): refused with the reason, never skipped.
        "notification-script" | "client-reconfig-script" | "rename-command" => {
            return Err(format!(
                "'sentinel {}' is not supported by shardis's sentinel (no scripts, no renamed \
                 commands): remove it from the config",
                arg(0)
            ))
        }
        _ => s.warnings.push(format!(
            "sentinel: directive 'sentinel {}' is not supported by shardis's sentinel; ignored",
            w.join(" ")
        )),
    }
    Ok(())
}

/// The global options of `SENTINEL CONFIG SET` (and of the file), as Redis 7.0 checks them.
pub fn set_global(s: &mut Sentinel, opt: &str, v: &str) -> Result<(), String> {
    let yes_no = |v: &str| match v.to_ascii_lowercase().as_str() {
        "yes" => Ok(true),
        "no" => Ok(false),
        _ => Err(format!("Invalid value '{v}' for '{opt}'")),
    };
    let opt_str = |v: &str| (!v.is_empty()).then(|| v.to_string());
    match opt {
        "resolve-hostnames" => s.resolve_hostnames = yes_no(v)?,
        "announce-hostnames" => s.announce_hostnames = yes_no(v)?,
        "announce-ip" => s.announce_ip = v.to_string(),
        "announce-port" => {
            s.announce_port = v
                .parse()
                .map_err(|_| format!("Invalid value '{v}' for '{opt}'"))?
        }
        "sentinel-user" => s.sentinel_user = opt_str(v),
        "sentinel-pass" => s.sentinel_pass = opt_str(v),
        _ => return Err(format!("Unknown option '{opt}'")),
    }
    Ok(())
}

fn quote(s: &str) -> String {
    if s.is_empty() || s.contains(|c: char| c.is_whitespace() || c == '"') {
        format!("\"{}\"", s.replace('"', "\\\""))
    } else {
        s.to_string()
    }
}

/// The state lines, in the order redis-sentinel writes them.
pub fn state_lines(s: &Sentinel) -> Vec<String> {
    let mut out = vec![
        format!("port {}", s.port),
        format!("sentinel myid {}", s.myid),
    ];
    for (name, m) in &s.masters {
        out.push(format!(
            "sentinel monitor {name} {} {} {}",
            m.ip, m.port, m.quorum
        ));
        out.push(format!(
            "sentinel down-after-milliseconds {name} {}",
            m.down_after
        ));
        out.push(format!(
            "sentinel failover-timeout {name} {}",
            m.failover_timeout
        ));
        out.push(format!(
            "sentinel parallel-syncs {name} {}",
            m.parallel_syncs
        ));
        if let Some(p) = &m.auth_pass {
            out.push(format!("sentinel auth-pass {name} {}", quote(p)));
        }
        if let Some(u) = &m.auth_user {
            out.push(format!("sentinel auth-user {name} {}", quote(u)));
        }
        out.push(format!("sentinel config-epoch {name} {}", m.config_epoch));
        out.push(format!("sentinel leader-epoch {name} {}", m.leader_epoch));
        for i in m.replicas() {
            out.push(format!("sentinel known-replica {name} {} {}", i.ip, i.port));
        }
        for p in m.sentinels.values() {
            out.push(format!(
                "sentinel known-sentinel {name} {} {} {}",
                p.ip, p.port, p.runid
            ));
        }
    }
    out.push(format!("sentinel current-epoch {}", s.current_epoch));
    // The global options, only when changed from the defaults (as redis-sentinel writes).
    if s.resolve_hostnames {
        out.push("sentinel resolve-hostnames yes".into());
    }
    if s.announce_hostnames {
        out.push("sentinel announce-hostnames yes".into());
    }
    if !s.announce_ip.is_empty() {
        out.push(format!("sentinel announce-ip {}", quote(&s.announce_ip)));
    }
    if s.announce_port != 0 {
        out.push(format!("sentinel announce-port {}", s.announce_port));
    }
    if let Some(u) = &s.sentinel_user {
        out.push(format!("sentinel sentinel-user {}", quote(u)));
    }
    if let Some(p) = &s.sentinel_pass {
        out.push(format!("sentinel sentinel-pass {}", quote(p)));
    }
    out
}

/// Rewrites the config file: the user's other lines as they were, then the state lines.
/// Written to a temporary file, fsynced and renamed over the old one, so a crash leaves
/// either the old state or the new one.
pub fn save(s: &Sentinel) -> std::io::Result<()> {
    let path = Path::new(&s.conf_path);
    let mut text = String::new();
    for l in &s.conf_other {
        text.push_str(l);
        text.push('\n');
    }
    text.push_str(HEADER);
    text.push('\n');
    for l in state_lines(s) {
        text.push_str(&l);
        text.push('\n');
    }
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

pub const HEADER: &str = "# Generated by shardis sentinel: state rewritten before it is acted on";

/// Reads the file: applies every directive and returns the lines to keep verbatim on
/// rewrite (everything except `port`, `sentinel ...` and our header).
pub fn load(s: &mut Sentinel, text: &str) -> Result<Vec<String>, String> {
    let mut keep = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let t = line.trim();
        let w = words(t);
        let first = w
            .first()
            .map(|f| f.to_ascii_lowercase())
            .unwrap_or_default();
        if t == HEADER || first == "sentinel" || first == "port" {
            // Regenerated on rewrite.
        } else {
            keep.push(line.to_string());
        }
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        apply(s, &w).map_err(|e| format!("line {}: '{}': {e}", n + 1, t))?;
    }
    while keep.last().is_some_and(|l| l.trim().is_empty()) {
        keep.pop();
    }
    Ok(keep)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scripts and renamed commands would change a failover: refused, not skipped.
    #[test]
    fn scripts_and_renamed_commands_are_refused() {
        let words = |t: &str| t.split(' ').map(String::from).collect::<Vec<_>>();
        for line in [
            "sentinel notification-script m /bin/true",
            "sentinel client-reconfig-script m /bin/true",
            "sentinel rename-command m CONFIG GUESSME",
        ] {
            let mut s = Sentinel::for_test();
            let e = apply(&mut s, &words(line)).unwrap_err();
            assert!(e.contains("not supported"), "{line}: {e}");
        }
        let mut s = Sentinel::for_test();
        assert!(apply(&mut s, &words("sentinel deny-scripts-reconfig yes")).is_ok());
        assert_eq!(s.warnings.len(), 1);
    }

    #[test]
    fn load_and_rewrite_keep_state() {
        let mut s = Sentinel::for_test();
        let text = "port 26380\nbind 127.0.0.1\n# mine\nsentinel monitor m 127.0.0.1 6379 2\n\
                    sentinel down-after-milliseconds m 1000\nsentinel known-replica m 127.0.0.1 6380\n\
                    sentinel known-sentinel m 127.0.0.1 26381 aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n\
                    sentinel current-epoch 7\nsentinel leader-epoch m 6\n";
        s.conf_other = load(&mut s, text).unwrap();
        assert_eq!(s.port, 26380);
        assert_eq!(s.current_epoch, 7);
        let m = &s.masters["m"];
        assert_eq!((m.down_after, m.leader_epoch, m.quorum), (1000, 6, 2));
        assert_eq!(m.replicas().count(), 1);
        assert_eq!(m.sentinels.len(), 1);
        let lines = state_lines(&s);
        assert!(lines.contains(&"sentinel current-epoch 7".to_string()));
        assert!(lines.contains(&"sentinel known-replica m 127.0.0.1 6380".to_string()));
        assert_eq!(s.conf_other, vec!["bind 127.0.0.1", "# mine"]);
        assert!(load(&mut s, "sentinel parallel-syncs nope 1").is_err());
        assert_eq!(words("a \"b c\" ''"), vec!["a", "b c", ""]);
    }

    #[test]
    fn global_options_round_trip_through_the_file() {
        let mut s = Sentinel::for_test();
        s.conf_other = load(&mut s, "sentinel monitor m 127.0.0.1 6379 2\n").unwrap();
        for (o, v) in [
            ("resolve-hostnames", "yes"),
            ("announce-ip", "10.0.0.1"),
            ("announce-port", "7000"),
            ("sentinel-pass", "a b"),
        ] {
            set_global(&mut s, o, v).unwrap();
        }
        assert!(set_global(&mut s, "announce-port", "70000").is_err());
        assert!(set_global(&mut s, "resolve-hostnames", "maybe").is_err());
        s.masters.get_mut("m").unwrap().auth_user = Some("bob".into());
        let text = state_lines(&s).join("\n");
        let mut t = Sentinel::for_test();
        load(&mut t, &text).unwrap();
        assert!(t.resolve_hostnames && !t.announce_hostnames);
        assert_eq!(
            (t.announce_ip.as_str(), t.announce_port),
            ("10.0.0.1", 7000)
        );
        assert_eq!(t.sentinel_pass.as_deref(), Some("a b"));
        assert_eq!(t.masters["m"].auth_user.as_deref(), Some("bob"));
    }
}
