//! Micro-benchmarks for the per-command costs on the hot path: RESP parsing of a pipelined
//! buffer, reply encoding, hash-table get/set, slot hashing and command lookup.
//! Run with `cargo bench --bench micro`. These find costs; the headline figures come from
//! `tools/bench.sh` against stock Redis.

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use shardis::commands::table::table;
use shardis::protocol::parser::{parse, Arg};
use shardis::protocol::reply::Reply;
use shardis::shard::db::Db;
use shardis::shard::route::shard_of;

fn pipelined(n: usize) -> Vec<u8> {
    let mut buf = Vec::new();
    for i in 0..n {
        let key = format!("key:{i:012}");
        buf.extend_from_slice(
            format!(
                "*3\r\n$3\r\nSET\r\n${}\r\n{}\r\n$32\r\n{}\r\n",
                key.len(),
                key,
                "x".repeat(32)
            )
            .as_bytes(),
        );
    }
    buf
}

fn resp_parse(c: &mut Criterion) {
    let buf = pipelined(16);
    let mut g = c.benchmark_group("resp_parse");
    g.throughput(Throughput::Elements(16));
    g.bench_function("set_x16", |b| {
        let mut args: Vec<Arg> = Vec::new();
        b.iter(|| {
            let mut pos = 0;
            while let Ok(Some(n)) = parse(black_box(&buf[pos..]), 512 << 20, &mut args) {
                pos += n;
                if pos >= buf.len() {
                    break;
                }
            }
            pos
        })
    });
    g.finish();
}

fn reply_encode(c: &mut Criterion) {
    let bulk = Reply::Bulk(Bytes::from(vec![b'x'; 32]));
    let arr = Reply::Array((0..10).map(|i| Reply::Int(i * 1000)).collect());
    let mut g = c.benchmark_group("reply_encode");
    g.bench_function("bulk32", |b| {
        let mut out = Vec::with_capacity(1024);
        b.iter(|| {
            out.clear();
            black_box(&bulk).encode(2, &mut out);
            out.len()
        })
    });
    g.bench_function("array10_int", |b| {
        let mut out = Vec::with_capacity(1024);
        b.iter(|| {
            out.clear();
            black_box(&arr).encode(3, &mut out);
            out.len()
        })
    });
    g.finish();
}

fn db_ops(c: &mut Criterion) {
    let mut db = Db::default();
    let keys: Vec<Bytes> = (0..100_000)
        .map(|i| Bytes::from(format!("key:{i:012}")))
        .collect();
    let val = Bytes::from(vec![b'v'; 32]);
    for k in &keys {
        db.set(k, &val, 0, 0);
    }
    let mut g = c.benchmark_group("db_ops");
    let mut i = 0usize;
    g.bench_function("get_hit_100k", |b| {
        b.iter(|| {
            i = (i + 7919) % keys.len();
            db.get_str(black_box(&keys[i]), 0)
                .ok()
                .flatten()
                .map(|v| v.len())
        })
    });
    g.bench_function("set_overwrite_100k", |b| {
        b.iter(|| {
            i = (i + 7919) % keys.len();
            db.set(&keys[i], &val, 0, 0)
        })
    });
    g.finish();
}

fn route(c: &mut Criterion) {
    let key = b"key:000000012345";
    c.bench_function("route/shard_of", |b| b.iter(|| shard_of(black_box(key), 4)));
}

fn command_lookup(c: &mut Criterion) {
    let t = table();
    c.bench_function("command_lookup/GET", |b| {
        b.iter(|| t.lookup(black_box(b"GET")).map(|(i, _)| i))
    });
}

criterion_group!(
    benches,
    resp_parse,
    reply_encode,
    db_ops,
    route,
    command_lookup
);
criterion_main!(benches);
