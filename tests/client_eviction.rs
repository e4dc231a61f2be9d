//! `maxmemory-clients`: when the memory held by clients passes the limit, the biggest
//! clients are closed (across shards), `CLIENT NO-EVICT on` ones are kept, and INFO counts
//! the evictions, as in Redis 7.

mod common;

use std::io::Write;
use std::time::Duration;

use common::{closed_by_peer, info, roundtrip, shard_counts, wait_for, Server};

/// Starts a SET whose value is announced as 8 MB and sends only `have` bytes of it: the
/// client's query buffer holds them.
fn partial_set(s: &mut std::net::TcpStream, key: &str, have: usize) {
    let head = format!("*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n$8000000\r\n", key.len());
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&vec![b'x'; have]).unwrap();
}

#[test]
fn the_biggest_clients_are_evicted() {
    for shards in shard_counts() {
        let srv = Server::start_with(shards, &["--maxmemory-clients", "2mb"]);
        let mut c = srv.client();
        let v: Vec<String> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("maxmemory-clients")
            .query(&mut c)
            .unwrap();
        assert_eq!(v, ["maxmemory-clients", "2097152"]);
        // A client that may not be evicted holds 1 MB, a hog 3 MB: the total is over 2 MB.
        let mut keep = srv.raw();
        assert_eq!(
            roundtrip(&mut keep, b"CLIENT NO-EVICT on\r\n", 5),
            b"+OK\r\n"
        );
        partial_set(&mut keep, "keep", 1_000_000);
        let mut hog = srv.raw();
        partial_set(&mut hog, "hog", 3_000_000);
        assert!(
            closed_by_peer(&mut hog),
            "the biggest client was not evicted"
        );
        let evicted = || {
            let mut c = srv.client();
            info(&mut c, "stats")["evicted_clients"]
                .parse::<u64>()
                .unwrap()
        };
        assert!(wait_for(Duration::from_secs(2), || evicted() >= 1));
        // Under the limit again: the small clients and the protected one are still served.
        let mut pong: String = redis::cmd("PING").query(&mut c).unwrap();
        assert_eq!(pong, "PONG");
        keep.write_all(&vec![b'x'; 7_000_000]).unwrap();
        assert_eq!(roundtrip(&mut keep, b"\r\n", 5), b"+OK\r\n");
        pong = redis::cmd("PING").query(&mut c).unwrap();
        assert_eq!(pong, "PONG");
        assert_eq!(evicted(), 1, "more clients than the hog were evicted");
        // CONFIG SET turns it off, and takes percentages of maxmemory.
        for v in ["0", "10%"] {
            let r: String = redis::cmd("CONFIG")
                .arg("SET")
                .arg("maxmemory-clients")
                .arg(v)
                .query(&mut c)
                .unwrap();
            assert_eq!(r, "OK");
        }
        let e = redis::cmd("CONFIG")
            .arg("SET")
            .arg("maxmemory-clients")
            .arg("lots")
            .query::<String>(&mut c)
            .unwrap_err();
        assert!(e.to_string().contains("memory or percent value"), "{e}");
    }
}
