//! Command errors and their exact Redis texts (checked against redis-server 7.0.15). Every
//! error literal a client can see lives here. Used on every shard thread.

use std::fmt;

use crate::protocol::reply::Reply;

/// An error a command reports to its client; the connection stays open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CmdError {
    /// `ERR unknown command 'foo', with args beginning with: 'a' 'b' `
    UnknownCommand {
        name: String,
        args: Vec<String>,
    },
    /// `ERR wrong number of arguments for 'get' command`
    WrongArity(String),
    /// `ERR unknown subcommand 'foo'. Try OBJECT HELP.`
    UnknownSubcommand {
        sub: String,
        cmd: String,
    },
    WrongType,
    Syntax,
    NotInteger,
    NotFloat,
    Overflow,
    /// `ERR invalid expire time in 'set' command`
    InvalidExpire(String),
    DbIndex,
    NoSuchKey,
    Index,
    /// Any other text, already carrying its code (`ERR ...`, `NOPROTO ...`).
    Other(String),
}

/// Shorthand for results of command handlers.
pub type CmdResult = Result<Reply, CmdError>;

impl CmdError {
    /// An `ERR <msg>` error.
    pub fn err(msg: impl fmt::Display) -> CmdError {
        CmdError::Other(format!("ERR {msg}"))
    }

    /// An error whose text already starts with its code.
    pub fn coded(msg: impl Into<String>) -> CmdError {
        CmdError::Other(msg.into())
    }

    /// The error code (first word), as counted in INFO errorstats.
    pub fn code(&self) -> String {
        let s = self.to_string();
        s.split(' ').next().unwrap_or("ERR").to_string()
    }

    pub fn into_reply(self) -> Reply {
        Reply::Error(self.to_string())
    }

    /// A RESP2 client in subscribed mode ran something else (`name` is `cmd` or `cmd|sub`).
    pub fn subscribed_context(name: &str) -> CmdError {
        CmdError::err(format!(
            "Can't execute '{name}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context"
        ))
    }

    /// Redis's `addReplySubcommandSyntaxError`: `sub` as the client typed it.
    pub fn subcommand_syntax(sub: &str, cmd: &str) -> CmdError {
        CmdError::err(format!(
            "unknown subcommand or wrong number of arguments for '{sub}'. Try {} HELP.",
            cmd.to_uppercase()
        ))
    }
}

/// A write (or PING) after a failed BGSAVE while stop-writes-on-bgsave-error is on.
pub const MISCONF: &str = "MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist to disk. Commands that may modify the data set are disabled, because this instance is configured to report errors during writes if RDB snapshotting fails (stop-writes-on-bgsave-error option). Please check the Redis logs for details about the RDB error.";

/// A write from a client on a read-only replica (`replica-read-only yes`).
pub const READONLY: &str = "READONLY You can't write against a read only replica.";
/// A command without the `stale` flag while the master link is down and
/// `replica-serve-stale-data` is `no`.
pub const NOREPLICAS: &str = "NOREPLICAS Not enough good replicas to write.";
/// A write held by `min-replicas-ack` that too few replicas acknowledged in time.
pub const NOREPLICAS_ACK: &str = "NOREPLICAS Not enough replicas acknowledged the write in time \
     (min-replicas-ack); it was applied here but may be lost on failover";
/// SYNC/PSYNC to a replica whose own master link is down.
pub const NOMASTERLINK: &str = "NOMASTERLINK Can't SYNC while not connected with my master";
pub const MASTERDOWN: &str =
    "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.";
/// REPLICAOF and friends sent by the master link itself.
pub const NOT_VALID_FOR_REPLICA: &str = "ERR Command is not valid when client is a replica.";
/// REPLICAOF's port is not a number in 0..65535.
pub const INVALID_MASTER_PORT: &str = "ERR Invalid master port";
/// REPLICAOF naming the master the server already follows.
pub const ALREADY_CONNECTED: &str = "OK Already connected to specified master";

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The pieces Redis's processCommand shows of an unknown command: the name as `%.128s`,
/// then arguments while the list is under 128 bytes, each cut to what is left of that
/// budget (the quotes and trailing space count too). Both are C strings there, so a NUL
/// ends them.
fn unknown_command_parts(argv: &[bytes::Bytes]) -> (&[u8], Vec<&[u8]>) {
    let name = argv.first().map_or(&[][..], |n| c_str(n, 128));
    let mut args = Vec::new();
    let mut total = 0;
    for a in argv.iter().skip(1) {
        if total >= 128 {
            break;
        }
        let shown = c_str(a, 128 - total);
        total += shown.len() + 3;
        args.push(shown);
    }
    (name, args)
}

/// The unknown-command error as raw reply bytes: the name and arguments as the client sent
/// them (Redis echoes bytes, not UTF-8), with CR and LF turned into spaces so the reply
/// stays one line, as Redis's addReplyErrorFormat does.
pub fn unknown_command_reply(argv: &[bytes::Bytes]) -> bytes::Bytes {
    let (name, args) = unknown_command_parts(argv);
    let mut out = b"-ERR unknown command '".to_vec();
    out.extend_from_slice(name);
    out.extend_from_slice(b"', with args beginning with: ");
    for a in args {
        out.push(b'\'');
        out.extend_from_slice(a);
        out.extend_from_slice(b"' ");
    }
    for b in out.iter_mut() {
        if *b == b'\r' || *b == b'\n' {
            *b = b' ';
        }
    }
    out.extend_from_slice(b"\r\n");
    bytes::Bytes::from(out)
}

impl CmdError {
    /// The unknown-command error as text (see `unknown_command_parts`; invalid UTF-8 shows
    /// as U+FFFD here: the dispatcher answers with `unknown_command_reply`'s raw bytes).
    pub fn unknown_command(argv: &[bytes::Bytes]) -> CmdError {
        let (name, args) = unknown_command_parts(argv);
        CmdError::UnknownCommand {
            name: lossy(name),
            args: args.into_iter().map(lossy).collect(),
        }
    }
}

/// A command from a client that has not authenticated while a password is set.
pub const NOAUTH: &str = "NOAUTH Authentication required.";
/// HELLO from an unauthenticated client without an AUTH option.
pub const NOAUTH_HELLO: &str = "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time";
pub const WRONGPASS: &str = "WRONGPASS invalid username-password pair or user is disabled.";
/// Sent (then the connection is closed) to a client from outside loopback while
/// protected mode is on and no password is set; Redis 7.0.15's text, typos included.
pub const DENIED: &[u8] = b"-DENIED Redis is running in protected mode because protected mode is enabled and no password is set for the default user. In this mode connections are only accepted from the loopback interface. If you want to connect from external computers to Redis you may adopt one of the following solutions: 1) Just disable protected mode sending the command 'CONFIG SET protected-mode no' from the loopback interface by connecting to Redis from the same host the server is running, however MAKE SURE Redis is not publicly accessible from internet if you do so. Use CONFIG REWRITE to make this change permanent. 2) Alternatively you can just disable the protected mode by editing the Redis configuration file, and setting the protected mode option to 'no', and then restarting the server. 3) If you started the server manually just for testing, restart it with the '--protected-mode no' option. 4) Setup a an authentication password for the default user. NOTE: You only need to do one of the above things in order for the server to start accepting connections from the outside.\r\n";
/// MULTI inside MULTI (the transaction stays open and clean).
pub const MULTI_NESTED: &str = "ERR MULTI calls can not be nested";
/// EXEC outside a transaction.
pub const EXEC_WITHOUT_MULTI: &str = "ERR EXEC without MULTI";
/// DISCARD outside a transaction.
pub const DISCARD_WITHOUT_MULTI: &str = "ERR DISCARD without MULTI";
/// WATCH inside MULTI (the transaction stays clean).
pub const WATCH_INSIDE_MULTI: &str = "ERR WATCH inside MULTI is not allowed";
/// A `no-multi` command queued inside MULTI (the transaction is flagged).
pub const NOT_ALLOWED_IN_MULTI: &str = "ERR Command not allowed inside a transaction";
/// A key command whose keys live on several shards and that cannot be split.
/// SINTERCARD (and the other numkeys commands) with numkeys < 1 or not a number.
pub const NUMKEYS_POSITIVE: &str = "ERR numkeys should be greater than 0";
/// numkeys larger than the arguments that follow it.
pub const NUMKEYS_TOO_MANY: &str = "ERR Number of keys can't be greater than number of args";
/// A SCAN-family cursor that is not an unsigned number.
pub const INVALID_CURSOR: &str = "ERR invalid cursor";
/// LCS on a key that holds another type than a string.
pub const LCS_NOT_STRING: &str = "ERR The specified keys must contain string values";
/// SETBIT/GETBIT/BITFIELD offsets: negative, unreadable or past 512 MB.
pub const BIT_OFFSET: &str = "ERR bit offset is not an integer or out of range";
/// SETBIT's value is neither 0 nor 1.
pub const BIT_VALUE: &str = "ERR bit is not an integer or out of range";
pub const BITPOS_BIT: &str = "ERR The bit argument must be 1 or 0.";
pub const BITOP_NOT: &str = "ERR BITOP NOT must be called with a single source key.";
pub const BITFIELD_TYPE: &str =
    "ERR Invalid bitfield type. Use something like i16 u8. Note that u64 is not supported but i64 is.";
pub const BITFIELD_OVERFLOW: &str = "ERR Invalid OVERFLOW type specified";
pub const BITFIELD_RO: &str = "ERR BITFIELD_RO only supports the GET subcommand";
/// A string that is not a HyperLogLog given to a PF command.
pub const HLL_WRONGTYPE: &str = "WRONGTYPE Key is not a valid HyperLogLog string value.";
/// A HyperLogLog whose registers do not add up.
pub const HLL_CORRUPT: &str = "INVALIDOBJ Corrupted HLL object detected";
/// GEO commands (geo.c).
pub const GEO_UNIT: &str = "ERR unsupported unit provided. please use M, KM, FT, MI";
pub const GEO_RADIUS_NOT_NUMBER: &str = "ERR need numeric radius";
pub const GEO_RADIUS_NEGATIVE: &str = "ERR radius cannot be negative";
pub const GEO_WIDTH_NOT_NUMBER: &str = "ERR need numeric width";
pub const GEO_HEIGHT_NOT_NUMBER: &str = "ERR need numeric height";
pub const GEO_BOX_NEGATIVE: &str = "ERR height or width cannot be negative";
pub const GEO_NO_MEMBER: &str = "ERR could not decode requested zset member";
pub const GEO_COUNT: &str = "ERR COUNT must be > 0";
pub const GEO_ANY: &str = "ERR the ANY argument requires COUNT argument";
/// `%f,%f` of the rejected pair follows.
pub const GEO_BAD_PAIR: &str = "ERR invalid longitude,latitude pair";
pub const GEO_STORE_WITH: &str =
    "ERR STORE option in GEORADIUS is not compatible with WITHDIST, WITHHASH and WITHCOORD options";
pub const GEOSEARCHSTORE_WITH: &str =
    "ERR GEOSEARCHSTORE is not compatible with WITHDIST, WITHHASH and WITHCOORD options";
/// The command name as the client typed it follows.
pub const GEO_FROM: &str = "ERR exactly one of FROMMEMBER or FROMLONLAT can be specified for";
pub const GEO_BY: &str = "ERR exactly one of BYRADIUS and BYBOX can be specified for";
/// SSUBSCRIBE inside MULTI/EXEC (Redis's CLIENT_DENY_BLOCKING check).
pub const SSUBSCRIBE_DENY_BLOCKING: &str =
    "ERR SSUBSCRIBE isn't allowed for a DENY BLOCKING client";
pub const CROSSSLOT: &str = "CROSSSLOT Keys in request don't hash to the same slot";
/// EXEC of a transaction flagged by an error while queuing.
pub const EXECABORT: &str = "EXECABORT Transaction discarded because of previous errors.";

/// EXEC itself rejected inside MULTI (wrong arity): the transaction is discarded and the
/// reason follows, without its `ERR ` code, as in Redis's `execCommandAbort`.
pub fn exec_abort_because(err: &str) -> String {
    format!(
        "EXECABORT Transaction discarded because of: {}",
        err.strip_prefix("ERR ").unwrap_or(err)
    )
}

/// The first `max` bytes of `b`, stopping at a NUL as C's `%.*s` does.
fn c_str(b: &[u8], max: usize) -> &[u8] {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len()).min(max);
    b.get(..end).unwrap_or_default()
}

impl fmt::Display for CmdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CmdError::UnknownCommand { name, args } => {
                write!(
                    f,
                    "ERR unknown command '{name}', with args beginning with: "
                )?;
                for a in args {
                    write!(f, "'{a}' ")?;
                }
                Ok(())
            }
            CmdError::WrongArity(cmd) => {
                write!(f, "ERR wrong number of arguments for '{cmd}' command")
            }
            CmdError::UnknownSubcommand { sub, cmd } => write!(
                f,
                "ERR unknown subcommand '{sub}'. Try {} HELP.",
                cmd.to_uppercase()
            ),
            CmdError::WrongType => {
                f.write_str("WRONGTYPE Operation against a key holding the wrong kind of value")
            }
            CmdError::Syntax => f.write_str("ERR syntax error"),
            CmdError::NotInteger => f.write_str("ERR value is not an integer or out of range"),
            CmdError::NotFloat => f.write_str("ERR value is not a valid float"),
            CmdError::Overflow => f.write_str("ERR increment or decrement would overflow"),
            CmdError::InvalidExpire(cmd) => write!(f, "ERR invalid expire time in '{cmd}' command"),
            CmdError::DbIndex => f.write_str("ERR DB index is out of range"),
            CmdError::NoSuchKey => f.write_str("ERR no such key"),
            CmdError::Index => f.write_str("ERR index out of range"),
            CmdError::Other(s) => f.write_str(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn texts() {
        let e =
            CmdError::unknown_command(&[Bytes::from("foo"), Bytes::from("a"), Bytes::from("b")]);
        assert_eq!(
            e.to_string(),
            "ERR unknown command 'foo', with args beginning with: 'a' 'b' "
        );
        assert_eq!(
            CmdError::unknown_command(&[Bytes::from("x")]).to_string(),
            "ERR unknown command 'x', with args beginning with: "
        );
        assert_eq!(
            CmdError::UnknownSubcommand {
                sub: "foo".into(),
                cmd: "object".into()
            }
            .to_string(),
            "ERR unknown subcommand 'foo'. Try OBJECT HELP."
        );
        // Redis's 128-byte budget counts the quotes and spaces; a NUL ends an argument.
        let long = Bytes::from("a".repeat(121));
        let e = CmdError::unknown_command(&[
            Bytes::from("x"),
            long.clone(),
            Bytes::from("b"),
            Bytes::from("c"),
        ]);
        assert_eq!(
            e.to_string(),
            format!(
                "ERR unknown command 'x', with args beginning with: '{}' 'b' ",
                "a".repeat(121)
            )
        );
        let e = CmdError::unknown_command(&[Bytes::from("x"), Bytes::from_static(b"n\0ul")]);
        assert_eq!(
            e.to_string(),
            "ERR unknown command 'x', with args beginning with: 'n' "
        );
        assert_eq!(CmdError::WrongType.code(), "WRONGTYPE");
        assert_eq!(CmdError::err("boom").to_string(), "ERR boom");
        assert_eq!(
            exec_abort_because(&CmdError::WrongArity("exec".into()).to_string()),
            "EXECABORT Transaction discarded because of: wrong number of arguments for 'exec' command"
        );
    }
}
