//! ACL users as Redis 7.0 has them: passwords (SHA-256), on/off, allowed commands (by
//! category, command and `command|subcommand`), key patterns with read/write permissions
//! (`~`, `%R~`, `%W~`) and channel patterns (`&`), plus the ACL LOG.
//!
//! The users live in one process-wide table behind a mutex, touched only by AUTH, ACL and
//! CONFIG (never on the request path). A connection keeps an `Arc` of its user and the table's
//! epoch; every change bumps the epoch, and a connection whose epoch is old fetches its user
//! again before its next command. A connection whose user may run everything (the default
//! user, unless restricted) skips the checks entirely. Selectors (`(...)`) add permissions:
//! a command runs when the root selector or any one selector allows all of it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::commands::args::glob_match;
use crate::commands::table::{table, CommandSpec, KEY_R, KEY_W, PUBSUB};

/// One key pattern and what it allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyPattern {
    pub pattern: Vec<u8>,
    pub read: bool,
    pub write: bool,
}

/// What one selector allows: commands, key patterns and channel patterns. A user has its
/// root selector plus any number of `(...)` selectors; a command runs when one of them allows
/// all of it (command, keys and channels), as in Redis 7.0.
#[derive(Clone, Debug)]
pub struct Selector {
    /// Allowed, per statistics slot of the command table: each row, then each subcommand
    /// of a container (Redis gives subcommands their own bits: `-@dangerous` takes CLIENT
    /// KILL and leaves CLIENT ID).
    allowed: Vec<bool>,
    /// The command rules as given since the last reset (ACL LIST/GETUSER show them after
    /// `+@all` or `-@all`).
    rules: Vec<String>,
    all_base: bool,
    pub allkeys: bool,
    pub keys: Vec<KeyPattern>,
    pub allchannels: bool,
    pub channels: Vec<Vec<u8>>,
}

/// Why a selector refuses a command, ranked as Redis ranks them (`ACL_DENIED_*`): when no
/// selector allows it, the highest-ranked refusal is reported (a later key position
/// breaking ties).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Denial {
    Command,
    Key(usize),
    Channel(usize),
}

impl Selector {
    /// Nothing allowed (a new user's root selector, or a new `(...)` selector).
    fn new() -> Selector {
        Selector {
            allowed: vec![false; table().stat_slots()],
            rules: Vec::new(),
            all_base: false,
            allkeys: false,
            keys: Vec::new(),
            allchannels: false,
            channels: Vec::new(),
        }
    }

    fn reset_commands(&mut self, all: bool) {
        self.allowed.iter_mut().for_each(|a| *a = all);
        self.rules.clear();
        self.all_base = all;
    }

    /// Applies one selector rule (commands, keys, channels); `Ok(false)` when `rule` is not
    /// one (the caller decides whether it is a user rule or a syntax error).
    fn apply(&mut self, rule: &str) -> Result<bool, String> {
        match rule.to_ascii_lowercase().as_str() {
            "allkeys" | "~*" => {
                self.allkeys = true;
                self.keys.clear();
            }
            "resetkeys" => {
                self.allkeys = false;
                self.keys.clear();
            }
            "allchannels" | "&*" => {
                self.allchannels = true;
                self.channels.clear();
            }
            "resetchannels" => {
                self.allchannels = false;
                self.channels.clear();
            }
            "allcommands" | "+@all" => self.reset_commands(true),
            "nocommands" | "-@all" => self.reset_commands(false),
            _ => {
                let syntax = || "Syntax error".to_string();
                if let Some(p) = rule.strip_prefix('~') {
                    self.add_keys(p, true, true)?;
                } else if let Some(rest) = rule.strip_prefix('%') {
                    let (perm, p) = rest.split_once('~').ok_or_else(syntax)?;
                    let perm = perm.to_ascii_uppercase();
                    if perm.is_empty() || perm.chars().any(|c| c != 'R' && c != 'W') {
                        return Err(syntax());
                    }
                    self.add_keys(p, perm.contains('R'), perm.contains('W'))?;
                } else if let Some(p) = rule.strip_prefix('&') {
                    if self.allchannels {
                        return Err("Adding a pattern after the * pattern (or the 'allchannels' flag) is not valid and does not have any effect. Try 'resetchannels' to start with an empty list of channels".into());
                    }
                    let p = p.as_bytes().to_vec();
                    if !self.channels.contains(&p) {
                        self.channels.push(p);
                    }
                } else if let Some(c) = rule.strip_prefix('+') {
                    self.command_rule(c, true)?;
                } else if let Some(c) = rule.strip_prefix('-') {
                    self.command_rule(c, false)?;
                } else {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// A `(...)` selector from its text (parentheses included): its rules separated by
    /// spaces, each a selector rule. `Err` with Redis's reason.
    fn parse(text: &str) -> Result<Selector, String> {
        let inner = text
            .strip_prefix('(')
            .and_then(|t| t.strip_suffix(')'))
            .unwrap_or_default();
        let mut sel = Selector::new();
        for rule in inner.split(' ').filter(|r| !r.is_empty()) {
            if !sel.apply(rule)? {
                return Err("Syntax error".into());
            }
        }
        Ok(sel)
    }

    fn add_keys(&mut self, p: &str, read: bool, write: bool) -> Result<(), String> {
        if self.allkeys {
            return Err("Adding a pattern after the * pattern (or the 'allkeys' flag) is not valid and does not have any effect. Try 'resetkeys' to start with an empty list of patterns".into());
        }
        if p == "*" && read && write {
            self.allkeys = true;
            self.keys.clear();
            return Ok(());
        }
        let pattern = p.as_bytes().to_vec();
        match self.keys.iter_mut().find(|k| k.pattern == pattern) {
            Some(k) => {
                k.read |= read;
                k.write |= write;
            }
            None => self.keys.push(KeyPattern {
                pattern,
                read,
                write,
            }),
        }
        Ok(())
    }

    /// Sets a slot (see `allowed`).
    fn set(&mut self, slot: usize, allow: bool) {
        if let Some(a) = self.allowed.get_mut(slot) {
            *a = allow;
        }
    }

    /// Sets command `id` and every subcommand of it (Redis's `ACLChangeSelectorPerm`).
    fn set_command(&mut self, id: usize, allow: bool) {
        self.set(id, allow);
        for slot in table().sub_slots(id) {
            self.set(slot, allow);
        }
    }

    fn command_rule(&mut self, what: &str, allow: bool) -> Result<(), String> {
        let sign = if allow { '+' } else { '-' };
        let t = table();
        if let Some(cat) = what.strip_prefix('@') {
            let cat = cat.to_ascii_lowercase();
            // `@all` never gets here (`apply` takes it as allcommands / nocommands).
            let bit = crate::commands::table::category_bit(&cat)
                .ok_or("Unknown command or category name in ACL")?;
            // A container in the category takes all its subcommands with it; each
            // subcommand in it is taken on its own (Redis's order).
            for (id, spec) in t.specs.iter().enumerate() {
                if spec.categories() & bit != 0 {
                    self.set_command(id, allow);
                }
            }
            for (_, slot, cats) in t.entries() {
                if slot >= t.specs.len() && cats & bit != 0 {
                    self.set(slot, allow);
                }
            }
            self.rules.push(format!("{sign}@{cat}"));
            return Ok(());
        }
        let lower = what.to_ascii_lowercase();
        match lower.split_once('|') {
            Some((cmd, sub)) => {
                let (id, spec) = t
                    .lookup(cmd.as_bytes())
                    .ok_or("Unknown command or category name in ACL")?;
                let at = spec
                    .subcommands
                    .iter()
                    .position(|(n, _, _)| *n == sub)
                    .ok_or("Unknown command or category name in ACL")?;
                if let Some(slot) = t.sub_slots(id).nth(at) {
                    self.set(slot, allow);
                }
            }
            None => {
                let (id, _) = t
                    .lookup(lower.as_bytes())
                    .ok_or("Unknown command or category name in ACL")?;
                self.set_command(id, allow);
            }
        }
        self.rules.push(format!("{sign}{lower}"));
        Ok(())
    }

    /// May this selector run command `id` (with `argv`, for a container's subcommand)?
    pub fn may_run(&self, id: usize, argv: &[Bytes]) -> bool {
        let t = table();
        let slot = match t.sub_base.get(id) {
            Some(&base) if base != crate::commands::table::NO_SUBS => t.sub_slot(id, base, argv),
            _ => id,
        };
        self.allowed.get(slot).copied().unwrap_or(false)
    }

    /// May this selector touch `key` with permissions `perm` (`KEY_R`, `KEY_W`; see
    /// `CommandSpec::key_perm`)? A pattern must grant all of them, as Redis's
    /// ACLSelectorCheckKey requires.
    pub fn may_access_key(&self, perm: u8, key: &[u8]) -> bool {
        if self.allkeys {
            return true;
        }
        let (read, write) = (perm & KEY_R != 0, perm & KEY_W != 0);
        self.keys
            .iter()
            .any(|k| (k.read || !read) && (k.write || !write) && glob_match(&k.pattern, key, false))
    }

    /// May this selector publish to or subscribe to `channel` (`pattern`: PSUBSCRIBE, which
    /// must name an allowed pattern literally, as in Redis)?
    pub fn may_use_channel(&self, channel: &[u8], pattern: bool) -> bool {
        self.allchannels
            || self.channels.iter().any(|p| {
                if pattern {
                    p.as_slice() == channel
                } else {
                    glob_match(p, channel, false)
                }
            })
    }

    /// Whether this selector allows all of the command: `Err` with the first refusal.
    fn check(&self, id: usize, spec: &CommandSpec, argv: &[Bytes]) -> Result<(), Denial> {
        if !self.may_run(id, argv) {
            return Err(Denial::Command);
        }
        for (nth, i) in spec.keys.key_positions(argv).enumerate() {
            if let Some(k) = argv.get(i) {
                if !self.may_access_key(spec.key_perm(argv, nth), k) {
                    return Err(Denial::Key(i));
                }
            }
        }
        if spec.flags & PUBSUB != 0 {
            let (first, pattern) = match spec.name {
                "publish" => (1, false),
                "subscribe" => (1, false),
                "psubscribe" => (1, true),
                _ => return Ok(()),
            };
            let last = if spec.name == "publish" {
                2
            } else {
                argv.len()
            };
            for i in first..last.min(argv.len()) {
                if let Some(ch) = argv.get(i) {
                    if !self.may_use_channel(ch, pattern) {
                        return Err(Denial::Channel(i));
                    }
                }
            }
        }
        Ok(())
    }

    fn commands_text(&self) -> String {
        let mut s = String::from(if self.all_base { "+@all" } else { "-@all" });
        for r in &self.rules {
            s.push(' ');
            s.push_str(r);
        }
        s
    }

    fn keys_text(&self) -> Vec<String> {
        if self.allkeys {
            return vec!["~*".into()];
        }
        self.keys
            .iter()
            .map(|k| {
                let p = String::from_utf8_lossy(&k.pattern);
                match (k.read, k.write) {
                    (true, true) => format!("~{p}"),
                    (true, false) => format!("%R~{p}"),
                    _ => format!("%W~{p}"),
                }
            })
            .collect()
    }

    fn channels_text(&self) -> Vec<String> {
        if self.allchannels {
            return vec!["&*".into()];
        }
        self.channels
            .iter()
            .map(|c| format!("&{}", String::from_utf8_lossy(c)))
            .collect()
    }

    /// Keys, channels and commands as ACL LIST shows them (`~k* resetchannels &c -@all +get`).
    fn describe(&self) -> Vec<String> {
        let mut parts = self.keys_text();
        if !self.allchannels {
            parts.push("resetchannels".into());
        }
        parts.extend(self.channels_text());
        parts.push(self.commands_text());
        parts
    }

    /// ACL GETUSER's (commands, keys, channels) of this selector.
    pub fn fields(&self) -> (String, String, String) {
        (
            self.commands_text(),
            self.keys_text().join(" "),
            self.channels_text().join(" "),
        )
    }
}

/// A user (immutable once built; a change replaces it).
#[derive(Clone, Debug)]
pub struct User {
    pub name: String,
    pub enabled: bool,
    pub nopass: bool,
    /// `sanitize-payload` (true) / `skip-sanitize-payload` (false); shown, not used (RESTORE
    /// does not exist yet).
    pub sanitize: Option<bool>,
    /// SHA-256 of each password.
    pub passwords: Vec<[u8; 32]>,
    /// The root selector: the user's own command, key and channel rules.
    pub root: Selector,
    /// The `(...)` selectors, in the order given.
    pub selectors: Vec<Selector>,
}

impl User {
    /// A new user as ACL SETUSER creates it: off, no passwords, no commands, keys or channels.
    pub fn new(name: &str) -> User {
        User {
            name: name.to_string(),
            enabled: false,
            nopass: false,
            sanitize: None,
            passwords: Vec::new(),
            root: Selector::new(),
            selectors: Vec::new(),
        }
    }

    /// The default user as Redis starts it: `on nopass ~* &* +@all`.
    pub fn default_user() -> User {
        let mut u = User::new("default");
        for r in ["on", "nopass", "~*", "&*", "+@all"] {
            let _ = u.apply(r);
        }
        u
    }

    /// May run every command on every key and channel: no checks needed.
    pub fn unrestricted(&self) -> bool {
        let r = &self.root;
        r.allkeys && r.allchannels && r.all_base && r.rules.is_empty()
    }

    /// Applies one ACL SETUSER rule (a `(...)` selector is one rule: see
    /// `merge_selectors`); `Err` with Redis's reason text.
    pub fn apply(&mut self, rule: &str) -> Result<(), String> {
        let lower = rule.to_ascii_lowercase();
        match lower.as_str() {
            "on" => self.enabled = true,
            "sanitize-payload" => self.sanitize = Some(true),
            "skip-sanitize-payload" => self.sanitize = Some(false),
            "off" => self.enabled = false,
            "nopass" => {
                self.nopass = true;
                self.passwords.clear();
            }
            "resetpass" => {
                self.nopass = false;
                self.passwords.clear();
            }
            "clearselectors" => self.selectors.clear(),
            "reset" => {
                *self = User {
                    name: self.name.clone(),
                    ..User::new(&self.name)
                };
                self.apply("resetchannels")?;
                self.sanitize = Some(true);
            }
            _ => return self.apply_prefixed(rule),
        }
        Ok(())
    }

    fn apply_prefixed(&mut self, rule: &str) -> Result<(), String> {
        if let Some(p) = rule.strip_prefix('>') {
            let h = sha256(p.as_bytes());
            if !self.passwords.contains(&h) {
                self.passwords.push(h);
            }
            self.nopass = false;
        } else if let Some(p) = rule.strip_prefix('<') {
            let h = sha256(p.as_bytes());
            let before = self.passwords.len();
            self.passwords.retain(|x| *x != h);
            if self.passwords.len() == before {
                return Err("no such password".into());
            }
        } else if let Some(h) = rule.strip_prefix('#') {
            let h = parse_hash(h)
                .ok_or("The password hash must be exactly 64 characters and contain only lowercase hexadecimal characters")?;
            if !self.passwords.contains(&h) {
                self.passwords.push(h);
            }
            self.nopass = false;
        } else if let Some(h) = rule.strip_prefix('!') {
            let h = parse_hash(h)
                .ok_or("The password hash must be exactly 64 characters and contain only lowercase hexadecimal characters")?;
            let before = self.passwords.len();
            self.passwords.retain(|x| *x != h);
            if self.passwords.len() == before {
                return Err("no such password".into());
            }
        } else if rule.starts_with('(') && rule.ends_with(')') {
            self.selectors.push(Selector::parse(rule)?);
        } else if !self.root.apply(rule)? {
            return Err("Syntax error".into());
        }
        Ok(())
    }

    /// May the root selector run command `id` (key and channel rules aside)?
    pub fn may_run(&self, id: usize, argv: &[Bytes]) -> bool {
        self.root.may_run(id, argv)
    }

    /// May the root selector touch `key` with permissions `perm`?
    pub fn may_access_key(&self, perm: u8, key: &[u8]) -> bool {
        self.root.may_access_key(perm, key)
    }

    /// May the root selector publish to or subscribe to `channel`?
    pub fn may_use_channel(&self, channel: &[u8], pattern: bool) -> bool {
        self.root.may_use_channel(channel, pattern)
    }

    /// The password matches (or the user has `nopass`), and the user is on.
    pub fn check(&self, pass: &[u8]) -> bool {
        if !self.enabled {
            return false;
        }
        if self.nopass {
            return true;
        }
        let h = sha256(pass);
        // Compare every stored hash fully (time independent of where they differ).
        self.passwords
            .iter()
            .fold(false, |found, p| found | same(p, &h))
    }

    fn sanitize_flag(&self) -> Option<String> {
        self.sanitize.map(|s| {
            if s {
                "sanitize-payload"
            } else {
                "skip-sanitize-payload"
            }
            .to_string()
        })
    }

    /// The user as one ACL LIST / aclfile line.
    pub fn describe(&self) -> String {
        let mut parts = vec![
            format!("user {}", self.name),
            if self.enabled { "on" } else { "off" }.to_string(),
        ];
        if self.nopass {
            parts.push("nopass".into());
        }
        parts.extend(self.sanitize_flag());
        parts.extend(self.passwords.iter().map(|p| format!("#{}", hex(p))));
        parts.extend(self.root.describe());
        for s in &self.selectors {
            parts.push(format!("({})", s.describe().join(" ")));
        }
        parts.join(" ")
    }

    /// ACL GETUSER's fields: (flags, passwords, commands, keys, channels) of the user and
    /// its root selector.
    pub fn fields(&self) -> (Vec<String>, Vec<String>, String, String, String) {
        let mut flags = vec![if self.enabled { "on" } else { "off" }.to_string()];
        if self.nopass {
            flags.push("nopass".into());
        }
        flags.extend(self.sanitize_flag());
        let (commands, keys, channels) = self.root.fields();
        (
            flags,
            self.passwords.iter().map(|p| hex(p)).collect(),
            commands,
            keys,
            channels,
        )
    }
}

/// Redis's ACLMergeSelectorArguments: a rule that opens a selector without closing it (`(~x`)
/// is joined, with spaces, to the rules after it up to one that ends with `)`, so
/// `ACL SETUSER u (~x +get)` typed in redis-cli is one selector. `Err` names the rule that
/// opened a selector left unclosed, in Redis's text.
pub fn merge_selectors(rules: &[String]) -> Result<Vec<String>, String> {
    let mut out = Vec::with_capacity(rules.len());
    let mut open: Option<(String, &String)> = None;
    for r in rules {
        if let Some((mut sel, first)) = open.take() {
            sel.push(' ');
            sel.push_str(r);
            if r.ends_with(')') {
                out.push(sel);
            } else {
                open = Some((sel, first));
            }
            continue;
        }
        if r.starts_with('(') && !r.ends_with(')') {
            open = Some((r.clone(), r));
            continue;
        }
        out.push(r.clone());
    }
    match open {
        Some((_, first)) => Err(format!(
            "Unmatched parenthesis in acl selector starting at '{first}'."
        )),
        None => Ok(out),
    }
}

pub fn sha256(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn parse_hash(h: &str) -> Option<[u8; 32]> {
    if h.len() != 64
        || !h
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
    {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(h.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

/// One ACL LOG entry.
#[derive(Clone, Debug)]
pub struct LogEntry {
    pub count: u64,
    pub reason: &'static str,
    pub context: &'static str,
    pub object: String,
    pub username: String,
    pub created: std::time::Instant,
    pub client_info: String,
}

/// The process-wide user table and the ACL LOG.
pub struct Acl {
    pub users: BTreeMap<String, Arc<User>>,
    pub log: VecDeque<LogEntry>,
}

fn state() -> &'static Mutex<Acl> {
    static S: OnceLock<Mutex<Acl>> = OnceLock::new();
    S.get_or_init(|| {
        let mut users = BTreeMap::new();
        users.insert("default".to_string(), Arc::new(User::default_user()));
        Mutex::new(Acl {
            users,
            log: VecDeque::new(),
        })
    })
}

static EPOCH: AtomicU64 = AtomicU64::new(1);

/// The table's version: connections holding an older one fetch their user again.
#[inline]
pub fn epoch() -> u64 {
    EPOCH.load(Ordering::Relaxed)
}

/// Runs `f` on the table; a change bumps the epoch.
pub fn with<T>(f: impl FnOnce(&mut Acl) -> T) -> T {
    let mut g = match state().lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    f(&mut g)
}

/// Marks the table changed (after ACL SETUSER/DELUSER/LOAD, requirepass).
pub fn changed() {
    EPOCH.fetch_add(1, Ordering::Relaxed);
}

pub fn user(name: &str) -> Option<Arc<User>> {
    with(|a| a.users.get(name).cloned())
}

/// The default user needs a password: new connections start unauthenticated.
pub fn auth_required() -> bool {
    user("default").is_none_or(|u| !u.nopass || !u.enabled)
}

/// `requirepass`: the default user's only password (empty: `nopass`).
pub fn set_requirepass(pass: &str) {
    with(|a| {
        let mut u = a
            .users
            .get("default")
            .map(|u| (**u).clone())
            .unwrap_or_else(User::default_user);
        let _ = u.apply("resetpass");
        let _ = u.apply(&if pass.is_empty() {
            "nopass".to_string()
        } else {
            format!(">{pass}")
        });
        a.users.insert("default".into(), Arc::new(u));
    });
    changed();
}

/// ACL SETUSER: applies every rule to a copy of the user (or a new one) and stores it only
/// if all succeed. Selectors split over several arguments are joined first
/// (`merge_selectors`). `Err` with the whole error text after `ERR `.
pub fn setuser(name: &str, rules: &[String]) -> Result<(), String> {
    let rules = merge_selectors(rules)?;
    with(|a| {
        let mut u = a.users.get(name).map(|u| (**u).clone()).unwrap_or_else(|| {
            let mut u = User::new(name);
            let _ = u.apply("resetchannels");
            u
        });
        for r in &rules {
            u.apply(r)
                .map_err(|e| format!("Error in ACL SETUSER modifier '{r}': {e}"))?;
        }
        a.users.insert(name.to_string(), Arc::new(u));
        Ok::<(), String>(())
    })?;
    changed();
    Ok(())
}

/// `acllog-max-len`: entries the ACL LOG keeps (Redis's default 128).
static LOG_MAX: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(128);

pub fn set_log_max(n: usize) {
    LOG_MAX.store(n, std::sync::atomic::Ordering::Relaxed);
}

pub fn log_max() -> usize {
    LOG_MAX.load(std::sync::atomic::Ordering::Relaxed)
}

/// Records a denial in the ACL LOG (merged with a like entry of the last minute, at most
/// `acllog-max-len` entries).
/// Restricted clients that sent a script, by client id: their user and CLIENT LIST line,
/// for the checks of each `redis.call` on whichever shard runs the script (Redis checks a
/// script's calls against its caller's user). Set by the dispatcher's ACL gate when such a
/// client sends EVAL, FCALL or EXEC; dropped when the client closes or stops being
/// restricted. Never touched for unrestricted clients: a script run reads one relaxed
/// counter while the map is empty.
static SCRIPT_CALLERS: Mutex<BTreeMap<u64, (Arc<User>, String)>> = Mutex::new(BTreeMap::new());
static SCRIPT_CALLER_COUNT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn script_callers<T>(f: impl FnOnce(&mut BTreeMap<u64, (Arc<User>, String)>) -> T) -> T {
    let mut m = SCRIPT_CALLERS.lock().unwrap_or_else(|p| p.into_inner());
    let r = f(&mut m);
    SCRIPT_CALLER_COUNT.store(m.len(), Ordering::Relaxed);
    r
}

/// Client `id` (restricted, as `user`) is about to run a script.
pub fn set_script_caller(id: u64, user: Arc<User>, client_info: String) {
    script_callers(|m| m.insert(id, (user, client_info)));
}

/// Client `id` closed or is no longer restricted.
pub fn forget_script_caller(id: u64) {
    script_callers(|m| m.remove(&id));
}

/// The restricted user (and CLIENT LIST line) a script of client `id` runs as; `None`:
/// its calls are not checked.
pub fn script_caller(id: u64) -> Option<(Arc<User>, String)> {
    if SCRIPT_CALLER_COUNT.load(Ordering::Relaxed) == 0 {
        return None;
    }
    script_callers(|m| m.get(&id).cloned())
}

/// Why `user` may not run `argv` from a script (`None`: allowed): Redis's text for a
/// script's call, and an ACL LOG entry with context `lua`.
pub fn script_denial(
    user: &User,
    client_info: &str,
    id: usize,
    spec: &CommandSpec,
    argv: &[Bytes],
) -> Option<String> {
    let (_, reason, object) = denied(user, id, spec, argv)?;
    let text = match reason {
        "command" => "ERR The user executing the script can't run this command or subcommand",
        "key" => {
            "ERR The user executing the script can't access at least one of the keys \
             mentioned in the command arguments"
        }
        _ => {
            "ERR The user executing the script can't publish to the channel mentioned in \
              the command"
        }
    };
    log_denial(
        reason,
        "lua",
        object,
        user.name.clone(),
        client_info.to_string(),
    );
    Some(text.to_string())
}

pub fn log_denial(
    reason: &'static str,
    context: &'static str,
    object: String,
    username: String,
    client_info: String,
) {
    with(|a| {
        let now = std::time::Instant::now();
        if let Some(e) = a.log.iter_mut().find(|e| {
            e.reason == reason
                && e.context == context
                && e.object == object
                && e.username == username
                && now.duration_since(e.created).as_secs() < 60
        }) {
            e.count += 1;
            e.client_info = client_info;
            return;
        }
        a.log.push_front(LogEntry {
            count: 1,
            reason,
            context,
            object,
            username,
            created: now,
            client_info,
        });
        a.log.truncate(log_max());
    });
}

/// Why `user` may not run `argv` (`None`: allowed): the NOPERM text and the ACL LOG reason
/// and object. Allowed when any selector (the root one first) allows all of it; otherwise
/// the most relevant refusal is reported, as Redis's ACLCheckAllUserCommandPerm does
/// (channel over key over command, a later key over an earlier one).
pub fn denied(
    user: &User,
    id: usize,
    spec: &CommandSpec,
    argv: &[Bytes],
) -> Option<(String, &'static str, String)> {
    let mut worst = match user.root.check(id, spec, argv) {
        Ok(()) => return None,
        Err(d) => d,
    };
    for s in &user.selectors {
        match s.check(id, spec, argv) {
            Ok(()) => return None,
            Err(d) => worst = worst.max(d),
        }
    }
    let arg = |i: usize| {
        argv.get(i)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .unwrap_or_default()
    };
    // The key and channel texts are fixed; `dryrun_text` names the object instead.
    Some(match worst {
        Denial::Command => {
            let name = match argv.get(1).filter(|_| !spec.subcommands.is_empty()) {
                Some(sub) => format!(
                    "{}|{}",
                    spec.name,
                    String::from_utf8_lossy(sub).to_ascii_lowercase()
                ),
                None => spec.name.to_string(),
            };
            (
                format!("NOPERM this user has no permissions to run the '{name}' command"),
                "command",
                name,
            )
        }
        Denial::Key(i) => (
            "NOPERM this user has no permissions to access one of the keys used as arguments"
                .into(),
            "key",
            arg(i),
        ),
        Denial::Channel(i) => (
            "NOPERM this user has no permissions to access one of the channels used as \
             arguments"
                .into(),
            "channel",
            arg(i),
        ),
    })
}

/// ACL LOAD / `aclfile` at startup: the file's users replace the table as a whole (the
/// default user as Redis starts it unless the file defines it); a bad line changes nothing.
pub fn load_file(path: &str) -> Result<(), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("Error loading ACLs, opening file '{path}': {e}"))?;
    let mut users: BTreeMap<String, Arc<User>> = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        let bad = |e: String| format!("{path}:{}: {e}", n + 1);
        let words = crate::config::split_line(t).ok_or_else(|| bad("unbalanced quotes".into()))?;
        let [kw, name, rules @ ..] = words.as_slice() else {
            return Err(bad("line should start with user keyword".into()));
        };
        if !kw.eq_ignore_ascii_case("user") {
            return Err(bad("line should start with user keyword".into()));
        }
        let mut u = User::new(name);
        u.apply("resetchannels").map_err(&bad)?;
        for r in &merge_selectors(rules).map_err(&bad)? {
            u.apply(r)
                .map_err(|e| bad(format!("Error in user declaration '{r}': {e}")))?;
        }
        users.insert(name.clone(), Arc::new(u));
    }
    users
        .entry("default".into())
        .or_insert_with(|| Arc::new(User::default_user()));
    with(|a| a.users = users);
    changed();
    Ok(())
}

/// ACL DRYRUN's wording of a denial (it names the key or channel, unlike -NOPERM).
pub fn dryrun_text(reason: &str, object: &str) -> String {
    match reason {
        "key" => format!("This user has no permissions to access the '{object}' key"),
        "channel" => format!("This user has no permissions to access the '{object}' channel"),
        _ => format!("This user has no permissions to run the '{object}' command"),
    }
}

/// Parses an aclfile / `user` directive line (`user <name> <rules...>`) into the table.
pub fn load_line(line: &str) -> Result<(), String> {
    let words = crate::config::split_line(line).ok_or("unbalanced quotes")?;
    match words.as_slice() {
        [kw, name, rules @ ..] if kw.eq_ignore_ascii_case("user") => {
            // A file's user starts from scratch (Redis applies `reset` first).
            let mut all = vec!["reset".to_string()];
            all.extend(rules.iter().cloned());
            setuser(name, &all).map_err(|e| {
                e.replace("Error in ACL SETUSER modifier", "Error in user declaration")
            })
        }
        _ => Err(format!("line should start with user keyword: '{line}'")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_and_descriptions() {
        let mut u = User::new("bob");
        u.apply("resetchannels").unwrap();
        for r in ["on", ">pw", "~k*", "%R~r*", "+get", "&ch"] {
            u.apply(r).unwrap();
        }
        assert_eq!(
            u.describe(),
            "user bob on #30c952fab122c3f9759f02a6d95c3758b246b4fee239957b2d4fee46e26170c4 ~k* %R~r* resetchannels &ch -@all +get"
        );
        let (get_id, get) = table().lookup(b"get").unwrap();
        let (_, set) = table().lookup(b"set").unwrap();
        assert!(u.may_run(get_id, &[]));
        let argv = |a: &[&str]| {
            a.iter()
                .map(|s| Bytes::from(s.to_string()))
                .collect::<Vec<_>>()
        };
        let read = get.key_perm(&argv(&["get", "k"]), 0);
        let write = set.key_perm(&argv(&["set", "k", "v"]), 0);
        assert_eq!((read, write), (KEY_R, KEY_W));
        assert_eq!(
            set.key_perm(&argv(&["set", "k", "v", "get"]), 0),
            KEY_R | KEY_W
        );
        assert!(u.may_access_key(read, b"k1"));
        assert!(u.may_access_key(read, b"r1"));
        assert!(!u.may_access_key(write, b"r1"));
        assert!(u.may_access_key(0, b"r1"));
        assert!(!u.may_access_key(read, b"x"));
        assert!(u.may_use_channel(b"ch", false));
        assert!(!u.may_use_channel(b"c*", true));
        assert!(u.check(b"pw") && !u.check(b"nope"));
        assert!(User::default_user().unrestricted());
        assert_eq!(
            User::default_user().describe(),
            "user default on nopass ~* &* +@all"
        );
        assert!(u.apply("+nosuch").is_err());
        assert!(u.apply("bogus").is_err());
    }
}
