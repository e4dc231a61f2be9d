//! CLIENT REPLY, CLIENT PAUSE / UNPAUSE, CLIENT TRACKING (with CACHING, GETREDIR,
//! TRACKINGINFO) and EXEC under maxmemory, against the real binary for every shard count in
//! `common::shard_counts()`, compared byte for byte with a real redis-server 7.0.15 where
//! the bytes are deterministic. Raw RESP clients: the push frames and the silence of a muted
//! connection are what is checked.

mod common;

use std::io::Read;
use std::time::{Duration, Instant};

use common::resp::{Client, Redis};
use common::Server;

/// Reads whatever arrives on `c` until it has been quiet for `quiet` (redis-server: its
/// pushes are written within the same event loop turn, so this collects a step's output).
fn drain(c: &mut Client, quiet: Duration) -> Vec<u8> {
    let mut out = Vec::new();
    c.r.get_ref().set_read_timeout(Some(quiet)).ok();
    let mut buf = [0u8; 65536];
    loop {
        // Bytes already buffered by the reader first.
        let have = c.r.buffer().to_vec();
        if !have.is_empty() {
            out.extend_from_slice(&have);
            c.r.consume_all();
        }
        match c.r.get_mut().read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    c.r.get_ref()
        .set_read_timeout(Some(Duration::from_secs(5)))
        .ok();
    out
}

/// Reads `n` bytes (what redis-server sent for the same step), or what came within 5 s.
fn read_exact(c: &mut Client, n: usize) -> Vec<u8> {
    let mut out = vec![0u8; n];
    let mut got = 0;
    while got < n {
        match c.r.read(&mut out[got..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => got += k,
        }
    }
    out.truncate(got);
    out
}

trait ConsumeAll {
    fn consume_all(&mut self);
}

impl ConsumeAll for std::io::BufReader<std::net::TcpStream> {
    fn consume_all(&mut self) {
        let n = self.buffer().len();
        std::io::BufRead::consume(self, n);
    }
}

/// One step of a multi-connection script: connection index and the raw bytes it sends.
type Step = (usize, String);

/// Runs `steps` on `port` with `nconns` connections. `ids`: each connection's CLIENT ID is
/// substituted for `{idN}` in the steps. With `want` (redis-server's output per step and
/// connection), reads exactly that much; else drains until quiet. Returns the output with
/// the client ids replaced by `{idN}`, per step and connection.
fn run_steps(
    port: u16,
    nconns: usize,
    steps: &[Step],
    want: Option<&Vec<Vec<Vec<u8>>>>,
) -> Vec<Vec<Vec<u8>>> {
    // Client ids above any small integer a step replies with (they are substituted).
    for _ in 0..60 {
        let mut c = Client::connect(port);
        c.send(b"PING\r\n").expect("send");
        c.read_reply().expect("ping");
    }
    let mut conns: Vec<Client> = (0..nconns).map(|_| Client::connect(port)).collect();
    let mut ids = Vec::new();
    for c in conns.iter_mut() {
        c.send(b"CLIENT ID\r\n").expect("send");
        let r = c.read_reply().expect("id");
        ids.push(String::from_utf8_lossy(&r[1..r.len() - 2]).to_string());
    }
    let mut all = Vec::new();
    for (si, (ci, text)) in steps.iter().enumerate() {
        let mut text = text.clone();
        for (i, id) in ids.iter().enumerate() {
            text = text.replace(&format!("{{id{i}}}"), id);
        }
        conns[*ci].send(text.as_bytes()).expect("send");
        let mut outs = Vec::new();
        for (i, c) in conns.iter_mut().enumerate() {
            let got = match want {
                // redis-server's output with this server's client ids put back (ids may
                // have another number of digits here).
                Some(w) => {
                    let mut exp = String::from_utf8_lossy(&w[si][i]).to_string();
                    for (j, id) in ids.iter().enumerate() {
                        exp = exp.replace(&format!(":{{id{j}}}\r\n"), &format!(":{id}\r\n"));
                    }
                    read_exact(c, exp.len())
                }
                None => drain(c, Duration::from_millis(150)),
            };
            let mut s = String::from_utf8_lossy(&got).to_string();
            for (j, id) in ids.iter().enumerate() {
                s = s.replace(&format!(":{id}\r\n"), &format!(":{{id{j}}}\r\n"));
            }
            outs.push(s.into_bytes());
        }
        all.push(outs);
    }
    // Nothing more than redis-server sent may arrive.
    if want.is_some() {
        for (i, c) in conns.iter_mut().enumerate() {
            let extra = drain(c, Duration::from_millis(150));
            assert!(
                extra.is_empty(),
                "connection {i} got extra bytes: {:?}",
                String::from_utf8_lossy(&extra)
            );
        }
    }
    all
}

fn compare(name: &str, steps: &[Step], nconns: usize, extra: &[&str]) {
    let redis = Redis::start();
    let want = run_steps(redis.port, nconns, steps, None);
    for shards in common::shard_counts() {
        let s = Server::start_with(shards, extra);
        let got = run_steps(s.port, nconns, steps, Some(&want));
        for (si, (w, g)) in want.iter().zip(&got).enumerate() {
            for (ci, (a, b)) in w.iter().zip(g).enumerate() {
                assert_eq!(
                    String::from_utf8_lossy(b),
                    String::from_utf8_lossy(a),
                    "{name}, --shards {shards}: step {si} ({:?}), connection {ci}",
                    steps[si].1
                );
            }
        }
    }
}

fn st(c: usize, s: &str) -> Step {
    (c, s.to_string())
}

#[test]
fn client_reply_matches_redis() {
    let script = "CLIENT REPLY OFF\r\nSET a 1\r\nGETX\r\nMSET x 1 y 2 z 3 w 4\r\nMGET a x y z w\r\n\
                  CLIENT REPLY ON\r\nGET a\r\nCLIENT REPLY SKIP\r\nMGET a x y z w\r\nPING\r\n\
                  CLIENT REPLY SKIP\r\nCLIENT REPLY SKIP\r\nPING x\r\nPING y\r\n\
                  CLIENT REPLY FOO\r\nCLIENT REPLY\r\nclient reply skip\r\nmulti\r\nping\r\nexec\r\n\
                  CLIENT REPLY OFF\r\nCLIENT REPLY SKIP\r\nPING q\r\nSUBSCRIBE ch\r\nUNSUBSCRIBE ch\r\n\
                  CLIENT REPLY ON\r\nPING z\r\n";
    let steps = [
        st(0, script),
        // A muted subscriber still gets its messages (pushes pass CLIENT REPLY OFF).
        st(1, "CLIENT REPLY OFF\r\nSUBSCRIBE news\r\n"),
        st(0, "PUBLISH news hello\r\n"),
        st(1, "CLIENT REPLY ON\r\nPING\r\n"),
    ];
    compare("CLIENT REPLY", &steps, 2, &[]);
}

#[test]
fn tracking_matches_redis() {
    // Keys written together share a hash tag: invalidations of keys on different shards
    // may arrive in another order than on one Redis (the next test covers those).
    // Connection 0 is the RESP2 redirect target; 1 tracks; 2 writes; 3 is a RESP3 BCAST
    // client; 4 tracks with a redirect to a client that goes away.
    let steps = [
        st(0, "SUBSCRIBE __redis__:invalidate\r\n"),
        st(1, "CLIENT TRACKING ON REDIRECT {id0}\r\nGET {k}\r\nMGET {k}1 {k}2 {k}3\r\nCLIENT GETREDIR\r\nCLIENT TRACKINGINFO\r\n"),
        st(2, "SET {k} 1\r\nMSET {k}1 1 {k}2 1 {k}3 1\r\nSET {k} 2\r\n"),
        st(2, "FLUSHDB\r\n"),
        st(1, "CLIENT TRACKING OFF\r\nCLIENT TRACKING ON BCAST PREFIX p: PREFIX q REDIRECT {id0} NOLOOP\r\nCLIENT TRACKINGINFO\r\n"),
        st(2, "SET p:{t}1 a\r\nSET q{t} 1\r\nSET x 1\r\nMSET p:{t}2 1 p:{t}3 1 qq{t} 1\r\n"),
        st(1, "SET p:{t}9 1\r\nSET q{t}9 1\r\n"),
        st(1, "CLIENT TRACKING OFF\r\nHELLO 3\r\nCLIENT TRACKING ON OPTIN\r\nGET {o}1\r\nCLIENT CACHING YES\r\nGET {o}2\r\nGET {o}3\r\n"),
        st(2, "SET {o}1 1\r\nSET {o}2 1\r\nSET {o}3 1\r\n"),
        st(1, "CLIENT TRACKING ON OPTOUT\r\nCLIENT TRACKINGINFO\r\nCLIENT TRACKING OFF\r\nCLIENT TRACKING ON OPTOUT NOLOOP\r\nGET {o}1\r\nCLIENT CACHING NO\r\nGET {o}2\r\nGET {o}3\r\n"),
        st(1, "SET {o}3 x\r\n"),
        st(2, "SET {o}1 2\r\nSET {o}2 2\r\nSET {o}3 2\r\n"),
        // A client changing a key it tracks gets the invalidation after the reply. (With the
        // key on another shard, pipelined reads after the write may answer before it.)
        st(1, "CLIENT TRACKING OFF\r\nCLIENT TRACKING ON\r\nGET self\r\nSET self 1\r\n"),
        st(1, "GET self\r\n"),
        st(2, "DEL self\r\n"),
        st(3, "HELLO 3\r\nCLIENT TRACKING ON BCAST\r\nCLIENT TRACKINGINFO\r\n"),
        st(2, "SET zz 1\r\nDEL zz\r\n"),
        st(4, "HELLO 3\r\nCLIENT TRACKING ON REDIRECT {id0}\r\nGET m\r\n"),
        st(0, "QUIT\r\n"),
        st(2, "SET m 1\r\n"),
        st(4, "CLIENT TRACKINGINFO\r\nCLIENT GETREDIR\r\n"),
        st(2, "FLUSHALL\r\n"),
        // Errors, in Redis's order of checks.
        st(2, "CLIENT TRACKING ON BCAST OPTIN\r\nCLIENT TRACKING ON REDIRECT abc\r\nCLIENT TRACKING ON REDIRECT 999999\r\n\
               CLIENT CACHING YES\r\nCLIENT TRACKING ON PREFIX a\r\nCLIENT TRACKING ON OPTIN OPTOUT\r\n\
               CLIENT TRACKING ON BCAST PREFIX a PREFIX ab\r\nCLIENT TRACKING ON BCAST PREFIX ab\r\n\
               CLIENT TRACKING ON BCAST PREFIX abc\r\nCLIENT TRACKING ON BCAST PREFIX\r\nCLIENT TRACKING maybe\r\n\
               CLIENT TRACKING\r\nCLIENT TRACKING ON OPTIN\r\nCLIENT TRACKING OFF\r\nCLIENT TRACKING ON OPTIN\r\n\
               CLIENT CACHING NO\r\nCLIENT CACHING maybe\r\nCLIENT TRACKINGINFO\r\nCLIENT TRACKING OFF BCAST\r\nCLIENT GETREDIR\r\n"),
    ];
    compare("CLIENT TRACKING", &steps, 5, &[]);
}

/// A key read through one shard by a client connected to another is invalidated when any
/// client writes it, over every write path (single key, MSET across shards, MULTI/EXEC,
/// DEL, RENAME, expiry, eviction).
#[test]
fn tracking_invalidates_every_write_path_across_shards() {
    for shards in common::shard_counts() {
        let s = Server::start_with(shards, &["--maxmemory-policy", "allkeys-random"]);
        let mut t = Client::connect(s.port);
        let mut w = Client::connect(s.port);
        t.send(b"HELLO 3\r\nCLIENT TRACKING ON\r\n").expect("send");
        t.read_reply().expect("hello");
        assert_eq!(t.read_reply().expect("on"), b"+OK\r\n");
        let keys: Vec<String> = (0..16).map(|i| format!("key:{i}")).collect();
        let expect_inval = |t: &mut Client, key: &str, what: &str| {
            let want = format!(
                ">2\r\n$10\r\ninvalidate\r\n*1\r\n${}\r\n{key}\r\n",
                key.len()
            );
            let got = t.read_reply().expect(what);
            assert_eq!(
                String::from_utf8_lossy(&got),
                want,
                "{what}, --shards {shards}"
            );
        };
        let read_all = |t: &mut Client, keys: &[String]| {
            for k in keys {
                t.send(format!("GET {k}\r\n").as_bytes()).expect("send");
                t.read_reply().expect("get");
            }
        };
        read_all(&mut t, &keys);
        for k in &keys {
            w.send(format!("SET {k} v\r\n").as_bytes()).expect("send");
            w.read_reply().expect("set");
            expect_inval(&mut t, k, "SET");
        }
        read_all(&mut t, &keys);
        let mut mset = String::from("MSET");
        for k in &keys {
            mset.push_str(&format!(" {k} 2"));
        }
        w.send(format!("{mset}\r\n").as_bytes()).expect("send");
        w.read_reply().expect("mset");
        let mut got: Vec<Vec<u8>> = (0..keys.len())
            .map(|_| t.read_reply().expect("inval"))
            .collect();
        got.sort();
        let mut want: Vec<Vec<u8>> = keys
            .iter()
            .map(|k| {
                format!(">2\r\n$10\r\ninvalidate\r\n*1\r\n${}\r\n{k}\r\n", k.len()).into_bytes()
            })
            .collect();
        want.sort();
        assert_eq!(got, want, "MSET across shards, --shards {shards}");
        // MULTI/EXEC, DEL, RENAME.
        read_all(&mut t, &keys[..3]);
        w.send(format!("MULTI\r\nINCR {}\r\nEXEC\r\n", keys[0]).as_bytes())
            .expect("send");
        for _ in 0..3 {
            w.read_reply().expect("tx");
        }
        expect_inval(&mut t, &keys[0], "EXEC");
        w.send(format!("DEL {}\r\n", keys[1]).as_bytes())
            .expect("send");
        w.read_reply().expect("del");
        expect_inval(&mut t, &keys[1], "DEL");
        w.send(format!("RENAME {} other\r\n", keys[2]).as_bytes())
            .expect("send");
        w.read_reply().expect("rename");
        expect_inval(&mut t, &keys[2], "RENAME");
        // Expiry (active, no client touches the key).
        read_all(&mut t, &keys[3..4]);
        w.send(format!("SET {} v PX 50\r\n", keys[3]).as_bytes())
            .expect("send");
        w.read_reply().expect("set px");
        expect_inval(&mut t, &keys[3], "SET PX");
        read_all(&mut t, &keys[3..4]);
        expect_inval(&mut t, &keys[3], "expiry");
        // Eviction.
        read_all(&mut t, &keys[4..5]);
        w.send(b"CONFIG SET maxmemory 1\r\n").expect("send");
        w.read_reply().expect("config");
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut seen = false;
        while Instant::now() < deadline && !seen {
            w.send(b"PING\r\n").expect("send");
            w.read_reply().expect("ping");
            t.r.get_ref()
                .set_read_timeout(Some(Duration::from_millis(100)))
                .ok();
            if let Ok(r) = t.read_reply() {
                seen = String::from_utf8_lossy(&r).contains(keys[4].as_str());
            }
        }
        assert!(seen, "eviction invalidates, --shards {shards}");
        // CLIENT LIST shows the tracking flag and the redirect (0: none).
        w.send(b"CONFIG SET maxmemory 0\r\nCLIENT LIST\r\n")
            .expect("send");
        w.read_reply().expect("config");
        let list = String::from_utf8_lossy(&w.read_reply().expect("list")).to_string();
        assert!(
            list.contains("flags=t ") && list.contains("redir=0 "),
            "{list}"
        );
    }
}

/// Reads one reply if it arrives within `d`.
fn reply_within(c: &mut Client, d: Duration) -> Option<Vec<u8>> {
    c.r.get_ref().set_read_timeout(Some(d)).ok();
    let r = c.read_reply().ok();
    c.r.get_ref()
        .set_read_timeout(Some(Duration::from_secs(5)))
        .ok();
    r
}

#[test]
fn pause_holds_what_redis_holds_and_resumes() {
    for shards in common::shard_counts() {
        let s = Server::start(shards);
        let mut ctl = Client::connect(s.port);
        // WRITE: reads and EVAL_RO run; writes, EVAL, PUBLISH, PFCOUNT and a MULTI
        // queuing a write wait; the clients behind them are held, others are served.
        ctl.send(b"SET a 1\r\nSET e v PX 100\r\nCLIENT PAUSE 100000 WRITE\r\n")
            .expect("send");
        for _ in 0..3 {
            ctl.read_reply().expect("setup");
        }
        let held = [
            "SET a 2",
            "EVAL \"return 1\" 0",
            "PUBLISH c m",
            "PFCOUNT h",
            "FLUSHALL",
            "INCR n",
        ];
        let mut waiting: Vec<Client> = Vec::new();
        for cmd in held {
            let mut c = Client::connect(s.port);
            c.send(format!("{cmd}\r\n").as_bytes()).expect("send");
            waiting.push(c);
        }
        let mut m = Client::connect(s.port);
        m.send(b"MULTI\r\nGET a\r\nSET a 3\r\nEXEC\r\n")
            .expect("send");
        assert_eq!(m.read_reply().expect("multi"), b"+OK\r\n");
        assert_eq!(m.read_reply().expect("queued"), b"+QUEUED\r\n");
        let mut r = Client::connect(s.port);
        r.send(b"GET a\r\nEVAL_RO \"return 1\" 0\r\nMGET a b c d\r\nCLIENT PAUSE 100000 WRITE\r\n")
            .expect("send");
        assert_eq!(r.read_reply().expect("get"), b"$1\r\n1\r\n");
        assert_eq!(r.read_reply().expect("eval_ro"), b":1\r\n");
        r.read_reply().expect("mget");
        assert_eq!(r.read_reply().expect("pause"), b"+OK\r\n");
        // The key with a TTL outlives its time while paused, hidden from reads.
        std::thread::sleep(Duration::from_millis(150));
        r.send(b"GET e\r\nDBSIZE\r\n").expect("send");
        assert_eq!(r.read_reply().expect("get e"), b"$-1\r\n");
        assert_eq!(
            r.read_reply().expect("dbsize"),
            b":2\r\n",
            "no expiry while paused"
        );
        for c in waiting.iter_mut() {
            assert!(
                reply_within(c, Duration::from_millis(200)).is_none(),
                "held, --shards {shards}"
            );
        }
        assert!(reply_within(&mut m, Duration::from_millis(50)).is_none());
        r.send(b"CLIENT UNPAUSE\r\n").expect("send");
        assert_eq!(r.read_reply().expect("unpause"), b"+OK\r\n");
        for (c, cmd) in waiting.iter_mut().zip(held) {
            assert!(
                c.read_reply().is_ok(),
                "{cmd} runs after UNPAUSE, --shards {shards}"
            );
        }
        assert_eq!(m.read_reply().expect("queued"), b"+QUEUED\r\n");
        m.read_reply().expect("exec");
        // ALL: everything waits, CLIENT UNPAUSE included, until the time passes.
        ctl.send(b"CLIENT PAUSE 400 ALL\r\n").expect("send");
        assert_eq!(ctl.read_reply().expect("pause"), b"+OK\r\n");
        let start = Instant::now();
        let mut p = Client::connect(s.port);
        p.send(b"PING\r\nCLIENT UNPAUSE\r\nGET a\r\n")
            .expect("send");
        assert_eq!(p.read_reply().expect("ping"), b"+PONG\r\n");
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_millis(300),
            "ALL held PING ({waited:?})"
        );
        assert_eq!(p.read_reply().expect("unpause"), b"+OK\r\n");
        p.read_reply().expect("get");
        // Errors, as Redis words them.
        ctl.send(b"CLIENT PAUSE foo\r\nCLIENT PAUSE -1\r\nCLIENT PAUSE 10 BAR\r\nCLIENT PAUSE 10 WRITE x\r\n")
            .expect("send");
        assert_eq!(
            ctl.read_reply().unwrap(),
            b"-ERR timeout is not an integer or out of range\r\n"
        );
        assert_eq!(ctl.read_reply().unwrap(), b"-ERR timeout is negative\r\n");
        assert_eq!(
            ctl.read_reply().unwrap(),
            b"-ERR CLIENT PAUSE mode must be WRITE or ALL\r\n"
        );
        assert_eq!(
            ctl.read_reply().unwrap(),
            b"-ERR unknown subcommand or wrong number of arguments for 'PAUSE'. Try CLIENT HELP.\r\n"
        );
        // The key's time passed during the pause: it is gone now.
        assert!(common::wait_for(Duration::from_secs(5), || {
            ctl.send(b"EXISTS e\r\n").is_ok() && ctl.read_reply().is_ok_and(|r| r == b":0\r\n")
        }));
    }
}

#[test]
fn exec_under_maxmemory_matches_redis() {
    let steps = [
        st(0, "SET k v\r\nMULTI\r\nGET k\r\nSET k2 v\r\nINCR n\r\n"),
        st(1, "MULTI\r\nGET k\r\nDEL k\r\n"),
        st(2, "MULTI\r\nGET k\r\n"),
        st(3, "CONFIG SET maxmemory 1\r\n"),
        st(0, "EXEC\r\n"),
        st(1, "EXEC\r\n"),
        st(2, "SET q 1\r\nGET k\r\nDISCARD\r\n"),
        st(
            3,
            "MULTI\r\nDISCARD\r\nMULTI\r\nEXEC\r\nMULTI\r\nPING\r\nEXEC\r\nGET k\r\nSET k 1\r\n",
        ),
        st(3, "CONFIG SET maxmemory 0\r\nMULTI\r\nSET k 1\r\nEXEC\r\n"),
    ];
    compare("EXEC under maxmemory", &steps, 4, &[]);
}

/// INFO stats' `tracking_total_keys`, `_items` and `_prefixes` count the tracking table as
/// redis-server's do (they were constant zeros): keys read by tracking clients, one item
/// per client and key, BCAST prefixes once however many shards hold them; a write drops
/// the key's entries.
#[test]
fn info_counts_tracked_keys_items_and_prefixes_as_redis() {
    let figures = |port: u16| -> Vec<(u64, u64, u64)> {
        let mut a = Client::connect(port);
        let mut b = Client::connect(port);
        let mut p = Client::connect(port);
        let mut c = redis::Client::open(format!("redis://127.0.0.1:{port}/"))
            .and_then(|c| c.get_connection())
            .unwrap();
        let read = |c: &mut Client, req: &str, n: usize| {
            c.send(req.as_bytes()).unwrap();
            for _ in 0..n {
                c.read_reply().unwrap();
            }
        };
        read(
            &mut a,
            "HELLO 3\r\nCLIENT TRACKING ON\r\nGET k1\r\nGET k2\r\nGET {k1}x\r\n",
            5,
        );
        read(&mut b, "HELLO 3\r\nCLIENT TRACKING ON\r\nGET k1\r\n", 3);
        read(
            &mut p,
            "HELLO 3\r\nCLIENT TRACKING ON BCAST PREFIX a PREFIX b\r\n",
            2,
        );
        let now = |c: &mut redis::Connection| {
            let m = common::info(c, "stats");
            let n = |k: &str| m[k].parse::<u64>().unwrap();
            (
                n("tracking_total_keys"),
                n("tracking_total_items"),
                n("tracking_total_prefixes"),
            )
        };
        let first = now(&mut c);
        let _: () = redis::cmd("SET").arg("k1").arg("v").query(&mut c).unwrap();
        // The invalidations reach a and b; the table forgets k1 at once.
        let second = now(&mut c);
        vec![first, second]
    };
    let want = vec![(3, 4, 2), (2, 2, 2)];
    if common::redis_server().is_some() {
        let r = Redis::start();
        assert_eq!(figures(r.port), want, "redis-server");
    }
    for n in common::shard_counts() {
        let s = Server::start(n);
        assert_eq!(figures(s.port), want, "shards={n}");
    }
}
