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
