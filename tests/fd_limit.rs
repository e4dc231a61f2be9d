//! Running out of file descriptors (issue 9, item 5): under `ulimit -n 256` the server lowers
//! maxclients to fit at startup (Redis's warnings), answers every one of 400 clients with a
//! PONG or `-ERR max number of clients reached`, does not spin on EMFILE, and serves again
//! once they leave. For every shard count in `common::shard_counts()`.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::Server;

const CLIENTS: usize = 400;
const MAXCLIENTS_ERR: &[u8] = b"-ERR max number of clients reached\r\n";

/// What one client got for its PING.
#[derive(Debug, PartialEq)]
enum Outcome {
    Pong,
    Refused,
    Other(Vec<u8>),
}

/// Sends PING and reads until a whole answer, EOF or `deadline`.
fn ping_outcome(s: &mut TcpStream, deadline: Instant) -> Outcome {
    // A refused client may have been closed before the PING arrives: the write can fail
    // while the error text still waits to be read.
    let _ = s.write_all(b"PING\r\n");
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        if got == b"+PONG\r\n" {
            return Outcome::Pong;
        }
        if got == MAXCLIENTS_ERR {
            return Outcome::Refused;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || got.len() > MAXCLIENTS_ERR.len() {
            return Outcome::Other(got);
        }
        s.set_read_timeout(Some(left)).ok();
        match s.read(&mut buf) {
            Ok(0) => return Outcome::Other(got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                got.extend_from_slice(format!(" <{e}>").as_bytes());
                return Outcome::Other(got);
            }
        }
    }
}

fn config_maxclients(srv: &Server) -> usize {
    let mut c = srv.client();
    let v: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxclients")
        .query(&mut c)
        .unwrap();
    v.get(1).and_then(|x| x.parse().ok()).unwrap()
}

#[test]
fn low_ulimit_reduces_maxclients_and_refuses_the_rest_without_spinning() {
    for n in common::shard_counts() {
        let srv = Server::start_logged(n, "ulimit -n 256", &["--loglevel", "verbose"]);
        let log = srv.log();
        assert!(
            log.contains("You requested maxclients of 10000 requiring at least"),
            "shards={n}: {log}"
        );
        let reduced = log
            .split("maxclients has been reduced to ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|x| x.parse::<usize>().ok())
            .unwrap_or_else(|| panic!("shards={n}: no reduced maxclients in the log: {log}"));
        assert!(reduced > 100 && reduced < 256, "shards={n}: {reduced}");
        assert_eq!(config_maxclients(&srv), reduced, "shards={n}");
        // CONFIG SET cannot go past what the limit holds (Redis's updateMaxclients).
        let mut c = srv.client();
        let r: redis::RedisResult<()> = redis::cmd("CONFIG")
            .arg("SET")
            .arg("maxclients")
            .arg("10000")
            .query(&mut c);
        let e = r.unwrap_err().to_string();
        assert!(
            e.contains(&format!(
                "The operating system is not able to handle the specified number of clients, try with {reduced}"
            )),
            "shards={n}: {e}"
        );
        drop(c);

        let cpu0 = srv.cpu_time();
        let mut conns: Vec<TcpStream> = (0..CLIENTS)
            .map(|_| TcpStream::connect(("127.0.0.1", srv.port)).expect("connect"))
            .collect();
        let deadline = Instant::now() + Duration::from_secs(10);
        let outcomes: Vec<Outcome> = conns
            .iter_mut()
            .map(|s| ping_outcome(s, deadline))
            .collect();
        let pongs = outcomes.iter().filter(|o| **o == Outcome::Pong).count();
        let refused = outcomes.iter().filter(|o| **o == Outcome::Refused).count();
        let other: Vec<&Outcome> = outcomes
            .iter()
            .filter(|o| matches!(o, Outcome::Other(_)))
            .collect();
        assert!(
            other.is_empty(),
            "shards={n}: {} clients got neither PONG nor the maxclients error (pongs {pongs}, \
             refused {refused}), e.g. {:?}",
            other.len(),
            other.first()
        );
        // Every slot is used (the readiness probe and the CONFIG connection may not have
        // been seen closing yet), and no more.
        assert!(
            pongs <= reduced && pongs + 2 >= reduced,
            "shards={n}: pongs {pongs}, maxclients {reduced}"
        );

        // With the clients still connected and more waiting for nothing, the server idles:
        // no accept loop spinning on EMFILE.
        let cpu1 = srv.cpu_time();
        std::thread::sleep(Duration::from_millis(1500));
        let idle = srv.cpu_time().saturating_sub(cpu1);
        assert!(
            idle < Duration::from_millis(200),
            "shards={n}: {idle:?} CPU in 1.5 s while idle at the limit"
        );
        let busy = cpu1.saturating_sub(cpu0);
        assert!(
            busy < Duration::from_secs(2),
            "shards={n}: {busy:?} CPU to answer {CLIENTS} clients"
        );
        // The log stays small: accept errors are rate-limited.
        let log = srv.log();
        let accept_lines = log.matches("Accepting client connection").count();
        assert!(
            accept_lines <= 2 * n * 3,
            "shards={n}: {accept_lines} accept error lines"
        );

        // Everyone leaves; the server serves again, up to its full maxclients.
        drop(conns);
        let mut again: Vec<TcpStream> = Vec::new();
        let ok = common::wait_for(Duration::from_secs(5), || {
            while again.len() < reduced {
                let Ok(mut s) = TcpStream::connect(("127.0.0.1", srv.port)) else {
                    return false;
                };
                if ping_outcome(&mut s, Instant::now() + Duration::from_secs(2)) != Outcome::Pong {
                    // Closes of the first wave not yet seen: try again shortly.
                    return false;
                }
                again.push(s);
            }
            true
        });
        assert!(ok, "shards={n}: only {} clients served again", again.len());
    }
}
