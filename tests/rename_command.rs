//! `rename-command` as Redis 7.0 has it: a production redis.conf hides FLUSHALL, KEYS or
//! CONFIG (`rename-command FLUSHALL ""`) or moves them to a secret name. shardis used to
//! refuse to start with such a file. The same flags go to a real redis-server and to
//! shardis (1 and 3 shards), the same commands to both, and the replies must be equal.

mod common;

use std::process::Command;

use common::resp::Redis;
use redis::Value;

const RENAMES: &[&str] = &[
    "--rename-command",
    "FLUSHALL",
    "",
    "--rename-command",
    "flushdb",
    "",
    "--rename-command",
    "KEYS",
    "",
    "--rename-command",
    "CONFIG",
    "myconfig",
    "--rename-command",
    "client",
    "c2",
    "--rename-command",
    "OBJECT",
    "o2",
    // A name taken by an earlier rename is free again, as in Redis's dictionary.
    "--rename-command",
    "myconfig",
    "cfg2",
    "--rename-command",
    "SCRIPT",
    "myconfig",
];

fn reply(c: &mut redis::Connection, argv: &[&str]) -> String {
    let r: redis::RedisResult<Value> = redis::cmd(argv[0]).arg(&argv[1..]).query(c);
    match r {
        Ok(Value::Int(_)) if argv[0] == "c2" => "id".into(),
        Ok(v) => format!("{v:?}"),
        Err(e) => format!("{:?} {}", e.kind(), e.detail().unwrap_or_default()),
    }
}

fn count(c: &mut redis::Connection) -> i64 {
    redis::cmd("COMMAND").arg("COUNT").query(c).unwrap()
}

fn run(port: u16) -> Vec<String> {
    let mut c = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
        .unwrap()
        .get_connection()
        .unwrap();
    let cmds: &[&[&str]] = &[
        &["SET", "k", "v"],
        &["FLUSHALL"],
        &["flushdb"],
        &["KEYS", "*"],
        &["CONFIG", "GET", "maxmemory"],
        &["myconfig", "GET", "maxmemory"],
        &["cfg2", "GET", "maxmemory"],
        &["cfg2", "SET", "maxmemory-policy", "allkeys-lru"],
        &["cfg2", "GET", "maxmemory-policy"],
        &["cfg2", "NOSUCH"],
        &["myconfig", "EXISTS", "abc"],
        &["c2", "SETNAME", "renamed"],
        &["c2", "GETNAME"],
        &["c2", "ID"],
        &["CLIENT", "ID"],
        &["o2", "ENCODING", "k"],
        &["OBJECT", "ENCODING", "k"],
        &["COMMAND", "INFO", "config", "flushall", "keys"],
        &["EVAL", "return redis.call('flushall')", "0"],
        &[
            "EVAL",
            "return redis.call('o2', 'encoding', KEYS[1])",
            "1",
            "k",
        ],
        &["DBSIZE"],
    ];
    let mut out: Vec<String> = cmds.iter().map(|a| reply(&mut c, a)).collect();
    // COMMAND INFO under the new name shows the command's own name, as Redis does.
    let info: Value = redis::cmd("COMMAND")
        .arg("INFO")
        .arg("cfg2")
        .query(&mut c)
        .unwrap();
    out.push(format!("{:?}", info).chars().take(60).collect());
    // A hidden command inside MULTI aborts the transaction.
    let r: redis::RedisResult<Vec<Value>> = redis::pipe()
        .atomic()
        .cmd("SET")
        .arg("k2")
        .arg("v")
        .cmd("FLUSHALL")
        .query(&mut c);
    out.push(format!(
        "{:?}",
        r.map_err(|e| e.detail().unwrap_or_default().to_string())
    ));
    out
}

#[test]
fn renamed_and_hidden_commands_answer_as_in_redis() {
    let plain = Redis::start();
    let reference = Redis::start_with(RENAMES);
    let want = run(reference.port);
    let mut c = redis::Client::open(format!("redis://127.0.0.1:{}/", plain.port))
        .unwrap()
        .get_connection()
        .unwrap();
    let mut r = redis::Client::open(format!("redis://127.0.0.1:{}/", reference.port))
        .unwrap()
        .get_connection()
        .unwrap();
    // Three rows hidden.
    assert_eq!(count(&mut c) - count(&mut r), 3);
    for shards in [1, 3] {
        let ours = common::Server::start_with(shards, RENAMES);
        let unrenamed = common::Server::start(shards);
        assert_eq!(
            run(ours.port),
            want,
            "{shards} shard(s) against redis-server"
        );
        assert_eq!(
            count(&mut unrenamed.client()) - count(&mut ours.client()),
            3
        );
    }
}

#[test]
fn bad_renames_stop_the_start_with_redis_reasons() {
    for (args, why) in [
        (&["NOSUCH", "x"][..], "No such command in rename-command"),
        (&["GET", "set"][..], "Target command name already exists"),
        (&["GET"][..], "wrong number of arguments"),
    ] {
        let port = common::free_port();
        let out = Command::new(common::bin())
            .args(["--port", &port.to_string(), "--rename-command"])
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} started");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(why), "{args:?}: {err}");
    }
    // From a config file the message names the line.
    let dir = common::fresh_dir("shardis-rename", 0);
    let conf = dir.join("redis.conf");
    std::fs::write(
        &conf,
        "port 0\nrename-command FLUSHALL \"\"\nrename-command FLUSHALL x\n",
    )
    .unwrap();
    let out = Command::new(common::bin()).arg(&conf).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 3") && err.contains("No such command in rename-command"),
        "{err}"
    );
}
