//! Functions (FUNCTION / FCALL) against the real binary, under `shard_counts()`: a
//! byte-for-byte differential run against redis-server 7.0.15 (RESP2 and RESP3), DUMP
//! payloads restored in both directions, and a library loaded on one connection called
//! from 16 connections whose keys cover every shard.

mod common;

use common::resp::{encode_command, escape, Client, Redis};
use common::{shard_counts, Server};

fn args(a: &[&str]) -> Vec<Vec<u8>> {
    a.iter().map(|s| s.as_bytes().to_vec()).collect()
}

fn exchange(c: &mut Client, cmd: &[Vec<u8>]) -> Vec<u8> {
    c.send(&encode_command(cmd)).expect("send");
    c.read_reply().expect("reply")
}

const LIB1: &str = "#!lua name=lib1
local function helper(x) return x end
redis.register_function('f', function(keys, args) return {keys[1], args[1], #keys, #args} end)
redis.register_function('err', function(keys, args) error('boom') end)
redis.register_function('err2', function(keys, args) return redis.call('nosuch') end)
redis.register_function('glob', function(keys, args) return KEYS end)
redis.register_function('set', function(keys, args) return redis.call('set', keys[1], args[1]) end)
redis.register_function{function_name='ro', callback=function(keys, args) return redis.call('set', keys[1], 'x') end, flags={'no-writes'}, description='read only'}
redis.register_function{function_name='allflags', callback=function() return 1 end, flags={'no-writes','allow-oom','allow-stale','no-cluster','allow-cross-slot-keys'}}
redis.register_function('rf', function() return redis.register_function('zz', function() end) end)
redis.register_function('errt', function() return redis.error_reply('MY err') end)
redis.register_function('errt2', function() error({err='X bad'}) end)
redis.register_function('get', function(keys) return redis.call('get', keys[1]) end)
redis.register_function('h', function() return helper('x') end)
";

/// Library bodies whose FUNCTION LOAD replies are compared (each after a FLUSH).
const LOADS: &[&str] = &[
    "return 1",
    "#!lua",
    "#!lua name=c foo=bar\nreturn 1",
    "#!lua name=c\nreturn 1",
    "#!js name=c\nreturn 1",
    "#!lua name=\nreturn 1",
    "#!lua name=a-b\nreturn 1",
    "#!lua name=c name=d\nreturn 1",
    "#!lua name=c\nlocal x = string.len('a')",
    "#!lua name=c\nredis.call('ping')",
    "#!lua name=c\nredis.register_function('f-x', function() end)",
    "#!lua name=c\nredis.register_function('g', 1)",
    "#!lua name=c\nredis.register_function(1, function() end)",
    "#!lua name=c\nredis.register_function('', function() end)",
    "#!lua name=c\nredis.register_function{function_name='g', callback=function() end, flags={'bogus'}}",
    "#!lua name=c\nredis.register_function{function_name='g', callback=function() end, flags={'NO-WRITES'}}",
    "#!lua name=c\nredis.register_function{function_name='g', callback=function() end, x=1}",
    "#!lua name=c\nredis.register_function{function_name='g', callback=function() end, flags='no-writes'}",
    "#!lua name=c\nredis.register_function{function_name=1, callback=function() end}",
    "#!lua name=c\nredis.register_function{callback=function() end}",
    "#!lua name=c\nredis.register_function{function_name='x'}",
    "#!lua name=c\nredis.register_function{function_name='x', callback=1}",
    "#!lua name=c\nredis.register_function{function_name={}, callback=function() end}",
    "#!lua name=c\nredis.register_function{'x', function() end}",
    "#!lua name=c\nredis.register_function{function_name='x', callback=function() end, description=1}",
    "#!lua name=c\nredis.register_function{function_name='x', callback=function() end, description={}}",
    "#!lua name=c\nredis.register_function('x', function() end, 1)",
    "#!lua name=c\nredis.register_function()",
    "#!lua name=c\nredis.register_function('x')",
    "#!lua name=c\nredis.register_function(1)",
    "#!lua name=c\nerror('boom')",
    "#!lua name=c\nx = 1",
    "#!lua name=c\nreturn x",
    "#!lua name=c\nredis.foo = 1",
    "#!lua name=c\nredis.setresp(3)",
    "#!lua name=c\nlocal x = math.random()",
    "#!lua name=c\nlocal f = nil f()",
    "#!lua name=c\nredis.log(1)",
    "#!lua name=c\nredis.log(redis.LOG_DEBUG, 'x') local v = redis.REDIS_VERSION .. redis.REDIS_VERSION_NUM redis.register_function('v', function() return v end)",
    "#!lua name=c\nredis.register_function('g', function() end) redis.register_function('g', function() end)",
    "#!lua name=c\nlocal",
    "#!lua name=c\nwhile true do end",
    "#!LUA NAME=c\nredis.register_function('g', function() return 1 end)",
];

fn cases() -> Vec<Vec<Vec<u8>>> {
    let mut v = Vec::new();
    for body in LOADS {
        v.push(args(&["FUNCTION", "FLUSH"]));
        v.push(args(&["FUNCTION", "LOAD", body]));
        v.push(args(&["FUNCTION", "LIST", "WITHCODE"]));
    }
    let f = |a: &[&str]| {
        let mut x = vec!["FCALL"];
        x.extend_from_slice(a);
        args(&x)
    };
    v.extend([
        args(&["FUNCTION", "FLUSH"]),
        args(&["FUNCTION", "LOAD", LIB1]),
        args(&["FUNCTION", "LOAD", LIB1]),
        args(&["FUNCTION", "LOAD", "REPLACE", LIB1]),
        args(&["FUNCTION", "LOAD", "bogus", LIB1]),
        args(&["FUNCTION", "LOAD", "REPLACE"]),
        args(&[
            "FUNCTION",
            "LOAD",
            "#!lua name=other\nredis.register_function('f', function() end)",
        ]),
        f(&["f", "1", "{t}k", "a"]),
        f(&["f", "0"]),
        f(&["nosuch", "0"]),
        f(&["nosuch", "-1"]),
        f(&["f", "-1"]),
        f(&["f", "2", "{t}a"]),
        f(&["f", "x"]),
        f(&["err", "0"]),
        f(&["err2", "0"]),
        f(&["glob", "0"]),
        f(&["set", "1", "{t}k", "v"]),
        f(&["get", "1", "{t}k"]),
        f(&["ro", "1", "{t}k"]),
        f(&["allflags", "0"]),
        f(&["rf", "0"]),
        f(&["errt", "0"]),
        f(&["errt2", "0"]),
        f(&["h", "0"]),
        args(&["FCALL_RO", "set", "1", "{t}k", "v"]),
        args(&["FCALL_RO", "get", "1", "{t}k"]),
        args(&["FCALL_RO", "allflags", "0"]),
        args(&["FCALL_RO", "nosuch", "0"]),
        args(&["FUNCTION", "STATS"]),
        args(&["FUNCTION", "LIST", "LIBRARYNAME", "lib"]),
        args(&["FUNCTION", "LIST", "LIBRARYNAME", "nomatch*"]),
        args(&["FUNCTION", "LIST", "WITHCODE", "LIBRARYNAME"]),
        args(&["FUNCTION", "LIST", "bogus"]),
        args(&["FUNCTION", "LIST", "WITHCODE", "WITHCODE"]),
        args(&["FUNCTION", "DELETE", "nosuch"]),
        args(&["FUNCTION", "DELETE", "lib1"]),
        f(&["f", "0"]),
        args(&["FUNCTION", "DELETE"]),
        args(&["FUNCTION", "FLUSH", "bogus"]),
        args(&["FUNCTION", "FLUSH", "SYNC", "x"]),
        args(&["FUNCTION", "FLUSH", "ASYNC"]),
        args(&["FUNCTION", "HELP"]),
        args(&["FUNCTION", "KILL"]),
        args(&["FUNCTION", "STATS", "x"]),
        args(&["FUNCTION", "RESTORE", "bogus"]),
        args(&["FUNCTION", "RESTORE", "bogus", "bogus"]),
        args(&["FUNCTION", "RESTORE", "a", "FLUSH", "x"]),
        args(&["FUNCTION", "RESTORE"]),
        args(&["FUNCTION", "DUMP", "x"]),
        args(&["FUNCTION", "LOAD"]),
        args(&["FUNCTION", "nosuch"]),
        args(&["FCALL"]),
        args(&[
            "FUNCTION",
            "LOAD",
            "#!lua name=aa\nredis.register_function{function_name='fa', callback=function() return 1 end, flags={'no-writes','allow-oom'}, description='d'}",
        ]),
        args(&["FUNCTION", "DUMP"]),
        args(&["FUNCTION", "LIST"]),
        args(&["FUNCTION", "STATS"]),
    ]);
    v
}

/// The DUMP payload in a bulk reply.
fn payload(reply: &[u8]) -> Vec<u8> {
    let start = reply.iter().position(|&c| c == b'\n').map_or(0, |i| i + 1);
    reply
        .get(start..reply.len().saturating_sub(2))
        .unwrap_or_default()
        .to_vec()
}

/// RESTORE cases run after the cases above left library `aa` loaded; `dump` is its payload.
fn restores(dump: &[u8]) -> Vec<Vec<Vec<u8>>> {
    let r = |policy: Option<&str>| {
        let mut v = vec![b"FUNCTION".to_vec(), b"RESTORE".to_vec(), dump.to_vec()];
        v.extend(policy.map(|p| p.as_bytes().to_vec()));
        v
    };
    let mut corrupt = dump.to_vec();
    if let Some(b) = corrupt.first_mut() {
        *b ^= 1;
    }
    vec![
        r(None),
        r(Some("APPEND")),
        r(Some("REPLACE")),
        r(Some("FLUSH")),
        r(Some("bogus")),
        vec![b"FUNCTION".to_vec(), b"RESTORE".to_vec(), corrupt],
        args(&["FUNCTION", "FLUSH"]),
        args(&[
            "FUNCTION",
            "LOAD",
            "#!lua name=bb\nredis.register_function('fa', function() return 2 end)",
        ]),
        r(None),
        r(Some("REPLACE")),
        r(Some("FLUSH")),
        args(&["FCALL", "fa", "0"]),
        args(&["FUNCTION", "LIST"]),
    ]
}

fn compare(
    port: u16,
    cmds: &[Vec<Vec<u8>>],
    theirs: &[Vec<u8>],
    resp3: bool,
    bad: &mut Vec<String>,
) {
    let mut c = Client::connect(port);
    if resp3 {
        exchange(&mut c, &args(&["HELLO", "3"]));
    }
    for (cmd, t) in cmds.iter().zip(theirs) {
        let ours = exchange(&mut c, cmd);
        if &ours != t {
            bad.push(format!(
                "{}{:?}\n  shardis: {}\n  redis:   {}",
                if resp3 { "RESP3 " } else { "" },
                cmd.iter()
                    .map(|a| String::from_utf8_lossy(a))
                    .collect::<Vec<_>>(),
                escape(&ours),
                escape(t)
            ));
        }
    }
}

fn run_all(port: u16, cmds: &[Vec<Vec<u8>>], resp3: bool) -> Vec<Vec<u8>> {
    let mut c = Client::connect(port);
    if resp3 {
        exchange(&mut c, &args(&["HELLO", "3"]));
    }
    cmds.iter().map(|cmd| exchange(&mut c, cmd)).collect()
}

#[test]
fn function_replies_match_redis_byte_for_byte() {
    if common::redis_server().is_none() {
        println!("note: redis-server missing, differential test skipped");
        return;
    }
    let cases = cases();
    let redis = Redis::start();
    let theirs = run_all(redis.port, &cases, false);
    let dump = payload(theirs.get(theirs.len() - 3).expect("dump reply"));
    let rest = restores(&dump);
    let theirs_rest = run_all(redis.port, &rest, false);
    let theirs3 = run_all(redis.port, &cases, true);
    for n in shard_counts() {
        let s = Server::start(n);
        let mut bad = Vec::new();
        compare(s.port, &cases, &theirs, false, &mut bad);
        // Redis's payload restored here (and ours matched Redis's byte for byte above).
        compare(s.port, &rest, &theirs_rest, false, &mut bad);
        compare(s.port, &cases, &theirs3, true, &mut bad);
        assert!(bad.is_empty(), "--shards {n}:\n{}", bad.join("\n"));
    }
}

#[test]
fn a_library_loaded_once_serves_16_connections_on_every_shard() {
    for n in shard_counts() {
        let s = Server::start(n);
        let mut c = Client::connect(s.port);
        let lib = "#!lua name=counter
redis.register_function('bump', function(keys, args)
  return redis.call('incrby', keys[1], args[1])
end)
redis.register_function{function_name='peek', callback=function(keys)
  return redis.call('get', keys[1])
end, flags={'no-writes'}}";
        assert_eq!(
            exchange(&mut c, &args(&["FUNCTION", "LOAD", lib])),
            b"$7\r\ncounter\r\n"
        );
        let port = s.port;
        let threads: Vec<_> = (0..16)
            .map(|t| {
                std::thread::spawn(move || {
                    let mut c = Client::connect(port);
                    for i in 0..20 {
                        let key = format!("k{t}-{i}");
                        let r = exchange(&mut c, &args(&["FCALL", "bump", "1", &key, "5"]));
                        assert_eq!(r, b":5\r\n", "FCALL bump {key}");
                        let r = exchange(&mut c, &args(&["FCALL_RO", "peek", "1", &key]));
                        assert_eq!(r, b"$1\r\n5\r\n", "FCALL_RO peek {key}");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("client thread");
        }
        // A replaced library reaches every shard too.
        let lib2 = lib.replace("args[1])", "args[1] * 2)");
        exchange(&mut c, &args(&["FUNCTION", "LOAD", "REPLACE", &lib2]));
        for i in 0..20 {
            let key = format!("k0-{i}");
            let r = exchange(&mut c, &args(&["FCALL", "bump", "1", &key, "1"]));
            assert_eq!(r, b":7\r\n", "replaced library on {key}");
        }
        exchange(&mut c, &args(&["FUNCTION", "DELETE", "counter"]));
        for i in 0..8 {
            let key = format!("k1-{i}");
            let r = exchange(&mut c, &args(&["FCALL", "bump", "1", &key, "1"]));
            assert_eq!(r, b"-ERR Function not found\r\n");
        }
        if n > 1 {
            // Declared keys on several shards: the function runs with both shards locked
            // (the undeclared second key of `bump` is not touched).
            exchange(&mut c, &args(&["FUNCTION", "LOAD", lib]));
            let other = (b'b'..=b'z')
                .map(|k| String::from_utf8_lossy(&[k]).into_owned())
                .find(|k| {
                    shardis::shard::route::shard_of(k.as_bytes(), n)
                        != shardis::shard::route::shard_of(b"a", n)
                })
                .expect("a key on another shard");
            let r = exchange(&mut c, &args(&["FCALL", "bump", "2", "a", &other, "3"]));
            assert_eq!(r, b":3\r\n", "keys on several shards");
        }
    }
}
