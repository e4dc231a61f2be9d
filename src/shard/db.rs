//! One logical database (SELECT index) of one shard: the main table, the set of keys with a
//! TTL (sampled by active expiry), lazy expiry on access, and hit/miss counters.
//! Owned by one shard thread; knows nothing of RESP.

use bytes::Bytes;

use super::dict::Dict;
use super::value::{Entry, StrEnc, Value};
use crate::error::CmdError;

#[derive(Default)]
pub struct Db {
    pub main: Dict<Entry>,
    /// Keys that carry a TTL (the key bytes are shared with `main`, not copied).
    pub expires: Dict<()>,
    pub stats: DbStats,
    /// Where the active expiry cycle resumes its walk of `expires`.
    expire_cursor: u64,
}

#[derive(Default, Clone, Copy)]
pub struct DbStats {
    pub expired_keys: u64,
    pub hits: u64,
    pub misses: u64,
}

impl Db {
    pub fn len(&self) -> usize {
        self.main.len()
    }

    pub fn is_empty(&self) -> bool {
        self.main.is_empty()
    }

    fn is_expired(e: &Entry, now: u64) -> bool {
        e.expire_at != 0 && e.expire_at <= now
    }

    /// Deletes `key` if its TTL has passed. Returns true if it did.
    pub fn expire_if_needed(&mut self, key: &[u8], now: u64) -> bool {
        match self.main.get(key) {
            Some(e) if Self::is_expired(e, now) => {
                self.remove(key);
                self.stats.expired_keys += 1;
                true
            }
            _ => false,
        }
    }

    /// Looks a key up for reading: lazy expiry, hit/miss stats, access time.
    pub fn lookup_read(&mut self, key: &[u8], now: u64) -> Option<&mut Entry> {
        self.lookup(key, now, true)
    }

    /// Looks a key up for writing (lazy expiry, no stats).
    pub fn lookup_write(&mut self, key: &[u8], now: u64) -> Option<&mut Entry> {
        self.lookup(key, now, false)
    }

    fn lookup(&mut self, key: &[u8], now: u64, count: bool) -> Option<&mut Entry> {
        let expired = match self.main.get(key) {
            None => {
                self.stats.misses += count as u64;
                return None;
            }
            Some(e) => Self::is_expired(e, now),
        };
        if expired {
            self.remove(key);
            self.stats.expired_keys += 1;
            self.stats.misses += count as u64;
            return None;
        }
        self.stats.hits += count as u64;
        // The chain was just walked, so this second probe hits cache.
        let e = self.main.get_mut(key)?;
        e.atime = (now / 1000) as u32;
        Some(e)
    }

    /// Looks a key up without touching stats or access time (TYPE, EXISTS-like checks).
    pub fn peek(&mut self, key: &[u8], now: u64) -> Option<&Entry> {
        self.expire_if_needed(key, now);
        self.main.get(key)
    }

    /// The string at `key`, WRONGTYPE for other types.
    pub fn get_str(&mut self, key: &[u8], now: u64) -> Result<Option<Bytes>, CmdError> {
        match self.lookup_read(key, now) {
            None => Ok(None),
            Some(e) => match &e.val {
                Value::Str(b) => Ok(Some(b.clone())),
            },
        }
    }

    /// Stores `val` at `key`, replacing any value and setting the TTL to `expire_at` (0: none).
    pub fn set(&mut self, key: Bytes, val: Value, expire_at: u64, now: u64) {
        let had_ttl = match self.main.get_mut(&key) {
            Some(e) => {
                let had = e.expire_at != 0;
                *e = Entry::new(val, expire_at, now);
                had
            }
            None => {
                self.main
                    .insert(key.clone(), Entry::new(val, expire_at, now));
                false
            }
        };
        self.sync_expires(key, had_ttl, expire_at != 0);
    }

    /// Replaces the value but keeps the TTL (SET KEEPTTL, INCR, APPEND...).
    pub fn set_keep_ttl(&mut self, key: Bytes, val: Value, now: u64) {
        match self.main.get_mut(&key) {
            Some(e) => {
                e.val = val;
                e.enc = StrEnc::Auto;
                e.atime = (now / 1000) as u32;
            }
            None => {
                self.main.insert(key, Entry::new(val, 0, now));
            }
        }
    }

    fn sync_expires(&mut self, key: Bytes, had: bool, has: bool) {
        match (had, has) {
            (false, true) => {
                let shared = self.main.get_key_value(&key).map(|(k, _)| k.clone());
                self.expires.insert(shared.unwrap_or(key), ());
            }
            (true, false) => {
                self.expires.remove(&key);
            }
            _ => {}
        }
    }

    /// Sets or clears (0) the TTL of an existing key. Returns false if the key is missing.
    pub fn set_expire(&mut self, key: &[u8], expire_at: u64) -> bool {
        let Some((k, e)) = self.main.get_key_value(key) else {
            return false;
        };
        let (k, had) = (k.clone(), e.expire_at != 0);
        if let Some(e) = self.main.get_mut(key) {
            e.expire_at = expire_at;
        }
        self.sync_expires(k, had, expire_at != 0);
        true
    }

    pub fn remove(&mut self, key: &[u8]) -> Option<Entry> {
        let (_, e) = self.main.remove(key)?;
        if e.expire_at != 0 {
            self.expires.remove(key);
        }
        Some(e)
    }

    /// Inserts an entry as it is (RENAME/COPY/MOVE keep the TTL).
    pub fn insert_entry(&mut self, key: Bytes, entry: Entry) {
        let has = entry.expire_at != 0;
        let had = match self.main.insert(key.clone(), entry) {
            Some(old) => old.expire_at != 0,
            None => false,
        };
        self.sync_expires(key, had, has);
    }

    pub fn clear(&mut self) {
        self.main.clear();
        self.expires.clear();
    }

    /// One step of active expiry: walks up to `budget` buckets of the TTL set and deletes
    /// keys whose time has passed. Returns the number deleted.
    pub fn active_expire(&mut self, now: u64, budget: usize) -> usize {
        if self.expires.is_empty() {
            return 0;
        }
        let mut dead: Vec<Bytes> = Vec::new();
        let mut cursor = self.expire_cursor;
        for _ in 0..budget {
            let main = &self.main;
            cursor = self.expires.scan(cursor, |k, _| {
                if main.get(k).is_some_and(|e| Self::is_expired(e, now)) {
                    dead.push(k.clone());
                }
            });
            if cursor == 0 {
                break;
            }
        }
        self.expire_cursor = cursor;
        for k in &dead {
            self.remove(k);
        }
        self.stats.expired_keys += dead.len() as u64;
        dead.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn lazy_and_active_expiry() {
        let mut db = Db::default();
        db.set(b("a"), Value::Str(b("1")), 100, 0);
        db.set(b("b"), Value::Str(b("2")), 0, 0);
        db.set(b("c"), Value::Str(b("3")), 50, 0);
        assert_eq!(db.expires.len(), 2);
        assert_eq!(db.get_str(b"a", 99).unwrap(), Some(b("1")));
        assert_eq!(db.get_str(b"a", 100).unwrap(), None);
        assert_eq!(db.stats.expired_keys, 1);
        assert_eq!(db.active_expire(60, 100), 1);
        assert_eq!(db.len(), 1);
        assert!(db.expires.is_empty());
    }

    #[test]
    fn set_clears_ttl_and_keep_ttl_keeps_it() {
        let mut db = Db::default();
        db.set(b("a"), Value::Str(b("1")), 100, 0);
        db.set_keep_ttl(b("a"), Value::Str(b("2")), 0);
        assert_eq!(db.peek(b"a", 0).unwrap().expire_at, 100);
        db.set(b("a"), Value::Str(b("3")), 0, 0);
        assert_eq!(db.peek(b"a", 0).unwrap().expire_at, 0);
        assert!(db.expires.is_empty());
        assert!(db.set_expire(b"a", 500));
        assert_eq!(db.expires.len(), 1);
        assert!(db.set_expire(b"a", 0));
        assert!(db.expires.is_empty());
        assert!(!db.set_expire(b"zz", 5));
    }
}
