#!/usr/bin/env python3
"""Streams side by side: server CPU per request (utime+stime from /proc) under
redis-benchmark's XADD / XRANGE / XREVRANGE / XREAD / XLEN, shardis (1 shard) and stock
redis-server each pinned to core 0, the client to core 1, fresh servers per round, medians
of the rounds; then MEMORY USAGE per entry of the stream the runs built.

usage: tools/streams_bench.py SHARDIS_BINARY [ROUNDS]   (writes bench-results/<date>_<commit>_streams.md)
"""
import os, subprocess, sys, time, socket, statistics

def cpu(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")

def wait_port(p):
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", p)).close(); return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"port {p} never answered")

def start(kind, port):
    if kind == "redis":
        cmd = ["taskset", "-c", "0", "redis-server", "--port", str(port), "--save", "", "--appendonly", "no"]
    else:
        cmd = ["taskset", "-c", "0", sys.argv[1], "--port", str(port), "--shards", "1", "--save", ""]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return p

def cli(port, *a):
    return subprocess.run(["redis-cli", "-p", str(port), *a], capture_output=True, text=True).stdout

def bench(port, pid, n, pipe, args):
    c0 = cpu(pid)
    t0 = time.time()
    subprocess.run(["taskset", "-c", "1", "redis-benchmark", "-p", str(port), "-n", str(n), "-c", "50",
                    "-P", str(pipe), "-q", *args], capture_output=True)
    return (cpu(pid) - c0) / n * 1e6, n / (time.time() - t0)

WORK = [
    ("XADD * (2 fields)", ["XADD", "s", "*", "field", "value", "jobId", "__rand_int__"], 300000),
    ("XRANGE COUNT 10", ["XRANGE", "s", "-", "+", "COUNT", "10"], 200000),
    ("XREVRANGE COUNT 1", ["XREVRANGE", "s", "+", "-", "COUNT", "1"], 300000),
    ("XREAD COUNT 10", ["XREAD", "COUNT", "10", "STREAMS", "s", "0"], 200000),
    ("XLEN", ["XLEN", "s"], 300000),
]
rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
res = {}
for r in range(rounds):
    for kind, port in (("redis", 7601), ("shardis", 7602)):
        p = start(kind, port)
        try:
            for pipe in (1, 16):
                for name, args, n in WORK:
                    us, ops = bench(port, p.pid, n, pipe, args)
                    res.setdefault((name, pipe, kind), []).append(us)
            mem = cli(port, "MEMORY", "USAGE", "s").strip(); xl = cli(port, "XLEN", "s").strip()
            res.setdefault(("MEMORY USAGE / entry", 0, kind), []).append(int(mem) / int(xl))
        finally:
            p.kill(); p.wait()
lines = ["| workload | pipeline | redis us/req | shardis us/req | shardis / redis |", "|---|---|---|---|---|"]
for name, args, n in WORK:
    for pipe in (1, 16):
        a = statistics.median(res[(name, pipe, "redis")]); b = statistics.median(res[(name, pipe, "shardis")])
        lines.append(f"| {name} | {pipe} | {a:.3f} | {b:.3f} | {b/a:.2f} |")
a = statistics.median(res[("MEMORY USAGE / entry", 0, "redis")]); b = statistics.median(res[("MEMORY USAGE / entry", 0, "shardis")])
lines.append(f"| MEMORY USAGE per entry after the runs | - | {a:.1f} B | {b:.1f} B | {b/a:.2f} |")
table = "\n".join(lines)
print(table)
commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
cpu_model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
kernel = os.uname().release
out = f"bench-results/{time.strftime('%Y-%m-%d')}_{commit}_streams.md"
with open(out, "w") as fh:
    fh.write(f"""# streams: shardis against redis-server, CPU per request

- commit: `{commit}`
- machine: {cpu_model}, {os.cpu_count()} cores, kernel {kernel}
- tool: `tools/streams_bench.py {sys.argv[1]} {rounds}` ({rounds} rounds, medians)
- servers: `taskset -c 0 redis-server --port 7601 --save '' --appendonly no`,
  `taskset -c 0 {sys.argv[1]} --port 7602 --shards 1 --save ''`, fresh each round
- load: `taskset -c 1 redis-benchmark -p PORT -n N -c 50 -P P -q CMD...` for each row, in
  order on one stream `s` (XADD first builds it: 300k entries per pipeline depth,
  `XADD s * field value jobId __rand_int__`)

{table}
""")
print("results:", out)
