//! What a connection-side command sees of its client: the attributes CLIENT LIST, INFO and
//! HELLO show and the dispatcher checks (database, protocol, user). Owned by the
//! connection (`server::connection::Conn`), on the connection's shard thread.

use std::time::Instant;

use bytes::Bytes;

/// Client attributes (CLIENT LIST / INFO / HELLO).
#[derive(Debug, Clone)]
pub struct ClientInfo {
    pub id: u64,
    pub name: Option<Bytes>,
    pub db: usize,
    pub resp: u8,
    pub addr: String,
    pub laddr: String,
    pub created: Instant,
    pub last_active: Instant,
    pub last_cmd: &'static str,
    /// Subcommand of a container command (`client|list`), empty otherwise.
    pub last_sub: &'static str,
    pub lib_name: Option<Bytes>,
    pub lib_ver: Option<Bytes>,
    pub no_evict: bool,
    pub no_touch: bool,
    /// The client may run commands: no password is set, or it authenticated.
    pub authed: bool,
    /// The ACL user the client runs as (the default user until AUTH).
    pub user: std::sync::Arc<crate::acl::User>,
    /// `acl::epoch()` when `user` was fetched: an older one is fetched again.
    pub acl_epoch: u64,
    /// The user may not run everything: commands are checked against it.
    pub restricted: bool,
    /// Listed with `acl::set_script_caller` (dropped at close and when unrestricted).
    pub script_caller: bool,
    /// Connected through the Unix socket (CLIENT LIST flag `U`; always local).
    pub unix: bool,
}

impl ClientInfo {
    pub fn new(id: u64, addr: String, laddr: String) -> ClientInfo {
        let now = Instant::now();
        ClientInfo {
            id,
            name: None,
            db: 0,
            resp: 2,
            addr,
            laddr,
            created: now,
            last_active: now,
            last_cmd: "NULL",
            authed: true,
            user: std::sync::Arc::new(crate::acl::User::default_user()),
            acl_epoch: 0,
            restricted: false,
            script_caller: false,
            last_sub: "",
            lib_name: None,
            lib_ver: None,
            no_evict: false,
            no_touch: false,
            unix: false,
        }
    }
}
