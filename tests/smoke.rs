//! Smoke test: the binary starts, answers PING and GET/SET through the `redis` crate, for
//! every shard count.

mod common;

use redis::Commands;

#[test]
fn ping_set_get() {
    for n in common::shard_counts() {
        let s = common::Server::start(n);
        let mut c = s.client();
        let pong: String = redis::cmd("PING").query(&mut c).unwrap();
        assert_eq!(pong, "PONG");
        let _: () = c.set("k", "v").unwrap();
        let v: String = c.get("k").unwrap();
        assert_eq!(v, "v", "shards={n}");
    }
}

/// A second server on a port already served refuses to start, with Redis's message, and the
/// first one keeps every client and key (SO_REUSEPORT would otherwise let both listen and
/// split the clients between two datasets). Restarting on the port once it is free works.
#[test]
fn a_port_in_use_is_refused_like_redis() {
    for n in common::shard_counts() {
        let s = common::Server::start(n);
        let mut c = s.client();
        let _: () = c.set("k", "v").unwrap();
        let mut second = std::process::Command::new(env!("CARGO_BIN_EXE_shardis"))
            .args(["--port", &s.port.to_string(), "--shards", &n.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let exited = common::wait_for(std::time::Duration::from_secs(5), || {
            matches!(second.try_wait(), Ok(Some(_)))
        });
        if !exited {
            let _ = second.kill();
            let _ = second.wait();
            panic!(
                "shards={n}: a second server started on port {} and kept running",
                s.port
            );
        }
        let out = second.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(1), "shards={n}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!(
                "Could not create server TCP listening socket 127.0.0.1:{}: bind: Address already in use",
                s.port
            )) && err.contains(&format!("Failed listening on port {} (TCP), aborting.", s.port)),
            "shards={n}: {err}"
        );
        // Every new connection still reaches the first server and its data.
        for _ in 0..20 {
            let mut c2 = s.client();
            let v: String = c2.get("k").unwrap();
            assert_eq!(v, "v", "shards={n}");
        }
    }
}
