#!/usr/bin/env python3
"""EVALSHA cost, shardis vs redis-server in the same run (issue 11's measurement).

Servers on core 0, redis-benchmark on core 1 (DESIGN.md's method). For each case it runs
`redis-benchmark -n N -c 50 -P p evalsha SHA numkeys keys...` and reports the server's CPU
time per request (utime+stime from /proc/<pid>/stat before and after, divided by N) and
ops/s. Cases: a one-key script (`return redis.call('incr',KEYS[1])`) on shardis --shards 1
and redis-server; on shardis --shards 2 (both shards on core 0) the same one-key script and
a two-key script whose keys live on different shards (which locks both), against
redis-server running the two-key script. Prints a markdown table.

    tools/bench_scripting.py [--requests 200000] [--bin target/release/shardis]
"""

import argparse
import os
import socket
import subprocess
import sys
import time

TICK = os.sysconf("SC_CLK_TCK")
ONE = "return redis.call('incr',KEYS[1])"
TWO = "return redis.call('incr',KEYS[1]) + redis.call('incr',KEYS[2])"


def crc16(data):
    crc = 0
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def shard_of(key, n):
    return (crc16(key.encode()) % 16384) % n


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / TICK


def wait_up(port):
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"server on {port} did not start")


def cli(port, *args):
    return subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True,
                          text=True, check=True).stdout.strip()


def bench(port, pid, requests, pipeline, args):
    before = cpu(pid)
    t = time.time()
    subprocess.run(["taskset", "-c", "1", "redis-benchmark", "-p", str(port), "-n",
                    str(requests), "-c", "50", "-P", str(pipeline), "-q", *args],
                   capture_output=True, check=True)
    wall = time.time() - t
    used = cpu(pid) - before
    return used / requests * 1e6, requests / wall


def start(cmd, port):
    p = subprocess.Popen(["taskset", "-c", "0", *cmd], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    wait_up(port)
    return p


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=200000)
    ap.add_argument("--bin", default="target/release/shardis")
    a = ap.parse_args()
    # Two keys on different shards of 2 (and a key alone for the one-key case).
    k1 = "a0"
    k2 = next(f"b{i}" for i in range(100) if shard_of(f"b{i}", 2) != shard_of(k1, 2))
    rows = []
    servers = [
        ("redis-server", lambda p: ["redis-server", "--port", str(p), "--save", "",
                                    "--appendonly", "no"]),
        ("shardis --shards 1", lambda p: [a.bin, "--port", str(p), "--shards", "1",
                                          "--save", ""]),
        ("shardis --shards 2", lambda p: [a.bin, "--port", str(p), "--shards", "2",
                                          "--save", ""]),
    ]
    for name, mk in servers:
        port = free_port()
        proc = start(mk(port), port)
        try:
            one = cli(port, "script", "load", ONE)
            two = cli(port, "script", "load", TWO)
            cases = [("1-key", ["evalsha", one, "1", k1])]
            if name != "shardis --shards 1":
                cases.append(("2-key" + (" (2 shards)" if "shardis" in name else ""),
                              ["evalsha", two, "2", k1, k2]))
            for case, args in cases:
                for p in (1, 16):
                    us, ops = bench(port, proc.pid, a.requests, p, args)
                    rows.append((name, case, p, us, ops))
                    print(f"{name:20} {case:18} P{p:<3} {us:7.2f} us/req {ops:10.0f} ops/s",
                          file=sys.stderr)
        finally:
            proc.terminate()
            proc.wait()
    print("| server | script | pipeline | server CPU µs/request | ops/s |")
    print("|---|---|---|---|---|")
    for name, case, p, us, ops in rows:
        print(f"| {name} | {case} | {p} | {us:.2f} | {ops:.0f} |")


if __name__ == "__main__":
    main()
