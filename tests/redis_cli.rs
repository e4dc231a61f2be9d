//! Compatibility with the real Redis tools: `redis-cli` one-shot commands (formatted,
//! `--raw`, `-n`, `-x`), `redis-cli --pipe` mass insertion, and `redis-benchmark` running to
//! completion. Expected outputs were recorded from redis-cli 7.0.15 against redis-server
//! 7.0.15. Skipped, with a note, when the tools are not installed.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::Server;
use redis::Commands;

fn have_cli() -> bool {
    if common::redis_cli().is_none() {
        eprintln!("note: redis-cli not installed; skipping (apt install redis-tools)");
        return false;
    }
    true
}

/// Runs redis-cli with `stdin` fed in; returns (stdout, stderr).
fn cli_stdin(port: u16, args: &[&str], stdin: &[u8]) -> (String, String) {
    let mut child = Command::new(common::redis_cli().unwrap())
        .args(["-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run redis-cli");
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().expect("redis-cli output");
    feeder.join().unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn one_shot_commands() {
    if !have_cli() {
        return;
    }
    let cases: &[(&[&str], &str)] = &[
        (&["SET", "foo", "bar"], "OK\n"),
        (&["GET", "foo"], "bar\n"),
        (&["--no-raw", "GET", "foo"], "\"bar\"\n"),
        (&["--no-raw", "GET", "nokey"], "(nil)\n"),
        (
            &["--no-raw", "MGET", "foo", "nokey", "foo"],
            "1) \"bar\"\n2) (nil)\n3) \"bar\"\n",
        ),
        (&["--raw", "MGET", "foo", "nokey"], "bar\n\n"),
        (
            &["--no-raw", "MSET", "a", "1", "b", "2", "c", "3", "d", "4"],
            "OK\n",
        ),
        (
            &["--no-raw", "MGET", "a", "b", "c", "d"],
            "1) \"1\"\n2) \"2\"\n3) \"3\"\n4) \"4\"\n",
        ),
        (&["--no-raw", "INCR", "a"], "(integer) 2\n"),
        (&["--raw", "INCR", "a"], "3\n"),
        (
            &["--no-raw", "INCR", "foo"],
            "(error) ERR value is not an integer or out of range\n",
        ),
        (
            &["--no-raw", "foo", "bar"],
            "(error) ERR unknown command 'foo', with args beginning with: 'bar' \n",
        ),
        (
            &["--no-raw", "GET"],
            "(error) ERR wrong number of arguments for 'get' command\n",
        ),
        (
            &["--no-raw", "DEL", "a", "b", "c", "d", "e"],
            "(integer) 4\n",
        ),
        (&["--no-raw", "KEYS", "nothing*"], "(empty array)\n"),
        (&["SET", "k", "a b c"], "OK\n"),
        (&["--raw", "GET", "k"], "a b c\n"),
        (&["--no-raw", "SET", "t", "v", "EX", "100"], "OK\n"),
        (&["TTL", "t"], "100\n"),
        (
            &["--no-raw", "EXISTS", "foo", "nokey", "k", "t"],
            "(integer) 3\n",
        ),
        (&["--no-raw", "DBSIZE"], "(integer) 3\n"),
        (&["--no-raw", "PING"], "PONG\n"),
        (&["--no-raw", "ECHO", "x\"y"], "\"x\\\"y\"\n"),
        // -n selects the database first.
        (&["-n", "2", "--no-raw", "SET", "x", "1"], "OK\n"),
        (&["-n", "2", "GET", "x"], "1\n"),
        (&["--no-raw", "GET", "x"], "(nil)\n"),
        (&["-n", "2", "--no-raw", "DBSIZE"], "(integer) 1\n"),
    ];
    for n in common::shard_counts() {
        let s = Server::start(n);
        for (args, want) in cases {
            let got = common::cli(s.port, args);
            assert_eq!(&got, want, "shards={n}: redis-cli {args:?}");
        }
        // A bad -n: redis-cli reports the SELECT error on stderr and runs in db 0.
        let (out, err) = cli_stdin(s.port, &["-n", "99", "--no-raw", "GET", "x"], b"");
        assert_eq!(out, "(nil)\n");
        assert_eq!(err, "SELECT 99 failed: ERR DB index is out of range\n");
    }
}

#[test]
fn stdin_argument_with_x() {
    if !have_cli() {
        return;
    }
    for n in common::shard_counts() {
        let s = Server::start(n);
        let (out, _) = cli_stdin(s.port, &["-x", "SET", "stdin"], b"hello\nworld\n");
        assert_eq!(out, "OK\n", "shards={n}");
        let got = common::cli(s.port, &["--no-raw", "GET", "stdin"]);
        assert_eq!(got, "\"hello\\nworld\\n\"\n");
        let (out, _) = cli_stdin(s.port, &["-x", "SET", "bin"], b"v\r\n\x00\xff");
        assert_eq!(out, "OK\n");
        let got = common::cli(s.port, &["--no-raw", "GET", "bin"]);
        assert_eq!(got, "\"v\\r\\n\\x00\\xff\"\n");
        let mut c = s.client();
        let v: Vec<u8> = c.get("bin").unwrap();
        assert_eq!(v, b"v\r\n\x00\xff");
    }
}

#[test]
fn pipe_mass_insertion() {
    if !have_cli() {
        return;
    }
    for n in common::shard_counts() {
        let s = Server::start(n);
        // Mixed forms, as people generate them: RESP arrays and inline lines.
        let mut input = Vec::new();
        for i in 0..10_000 {
            if i % 2 == 0 {
                let (k, v) = (format!("pipe:{i}"), format!("val{i}"));
                input.extend(
                    format!(
                        "*3\r\n$3\r\nSET\r\n${}\r\n{k}\r\n${}\r\n{v}\r\n",
                        k.len(),
                        v.len()
                    )
                    .as_bytes(),
                );
            } else {
                input.extend(format!("SET pipe:{i} val{i}\r\n").as_bytes());
            }
        }
        let (out, err) = cli_stdin(s.port, &["--pipe"], &input);
        assert!(
            out.contains("errors: 0, replies: 10000"),
            "shards={n}: --pipe said {out:?} / {err:?}"
        );
        assert!(out.contains("All data transferred. Waiting for the last reply..."));
        assert!(out.contains("Last reply received from server."));
        let mut c = s.client();
        let size: i64 = redis::cmd("DBSIZE").query(&mut c).unwrap();
        assert_eq!(size, 10_000);
        for i in [0, 1, 4999, 9998, 9999] {
            let v: String = c.get(format!("pipe:{i}")).unwrap();
            assert_eq!(v, format!("val{i}"));
        }
        // Error replies are counted (and printed on stderr).
        let mut input = Vec::new();
        for i in 0..10 {
            input.extend(format!("SET e:{i} x\r\nINCR e:{i}\r\n").as_bytes());
        }
        let (out, err) = cli_stdin(s.port, &["--pipe"], &input);
        assert!(out.contains("errors: 10, replies: 20"), "{out:?}");
        assert_eq!(
            err.matches("ERR value is not an integer or out of range")
                .count(),
            10
        );
    }
}

#[test]
fn redis_benchmark_runs_to_completion() {
    let Some(bench) = ["/usr/bin/redis-benchmark", "/usr/local/bin/redis-benchmark"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
    else {
        eprintln!("note: redis-benchmark not installed; skipping");
        return;
    };
    for n in common::shard_counts() {
        let s = Server::start(n);
        let out = Command::new(bench)
            .args(["-p", &s.port.to_string()])
            .args([
                "-q",
                "-n",
                "2000",
                "-t",
                "ping,set,get,incr,mset",
                "-P",
                "16",
            ])
            .stdin(Stdio::null())
            .output()
            .expect("run redis-benchmark");
        assert!(out.status.success(), "shards={n}: {:?}", out.status);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.trim().is_empty(), "shards={n}: stderr {stderr:?}");
        // Progress lines end in \r; the final ones look like "SET: 123.45 requests per second, ...".
        let mut seen = Vec::new();
        for line in stdout.split(['\r', '\n']) {
            let Some((name, rest)) = line.split_once(": ") else {
                continue;
            };
            let Some(rps) = rest.split_once(" requests per second") else {
                continue;
            };
            let rps: f64 = rps.0.trim().parse().unwrap_or(0.0);
            assert!(rps > 0.0, "shards={n}: {line:?}");
            seen.push(name.trim().to_string());
        }
        for t in [
            "PING_INLINE",
            "PING_MBULK",
            "SET",
            "GET",
            "INCR",
            "MSET (10 keys)",
        ] {
            assert!(
                seen.iter().any(|s| s == t),
                "shards={n}: no result line for {t}: {stdout:?}"
            );
        }
        // INCR ran 2000 (rounded up to the pipeline) times on one counter, every one applied.
        let mut c = s.client();
        let v: i64 = c.get("counter:__rand_int__").unwrap();
        assert!((2000..2000 + 16 * 50).contains(&v), "counter {v}");
    }
}
