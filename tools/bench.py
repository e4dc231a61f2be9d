#!/usr/bin/env python3
"""Side-by-side benchmark: shardis against stock Redis on this machine.

Starts shardis (release build) and Debian's redis-server with persistence off, each pinned to
the server cores, runs the same workloads against both with the load generator pinned to the
client cores, reads each server's CPU time from /proc before and after every run, and writes
bench-results/<date>_<commit>_<scenario>.{md,json,svg}.

Modes:
  compare  (default) redis-benchmark SET/GET and a SET:GET 1:10 mix (examples/loadgen.rs,
           one SET then ten GETs per connection) at each pipeline depth, memtier_benchmark's
           1:10, GET-only and SET-only at each depth (built by ../shared/tools/build-memtier.sh
           when not on PATH), and a memory load of N keys; both servers.
  persistence
           for each dataset (--datasets, default strings and all) and server (Redis, shardis
           at 1 and N shards): load, BGSAVE (time, RDB size), SHUTDOWN NOSAVE, restart and time
           the load; then a BGSAVE during a redis-benchmark SET load (client p99, peak RSS,
           Redis's fork child included) against the same load without it; then CPU per SET
           with appendonly yes under appendfsync everysec and always. Use --server-cores 0,1
           so both get the machine (Redis's fork child, shardis's second shard).
  memtier  the ab mode (below) with memtier_benchmark's workloads: 100k keys preloaded, then
           SET:GET 1:10, GET only and SET only at each pipeline depth, 50 connections on one
           memtier thread; Redis in the same run unless --no-redis.
  scaling  shardis at 1..N shards (on the given server cores), uniform random keys, CPU per
           request per shard count (the cost of cross-shard hops), with Redis as the baseline.
  memory-types
           memory per key by data type: for each dataset (1M strings, 100k hashes of 10
           fields, 100k sets of 10 members, 100k sorted sets of 10 members, then all four
           together) a fresh server of each kind is started, the data is streamed in with
           `redis-cli --pipe` (RESP generated here), DBSIZE and a few values are checked, and
           the VmRSS and INFO used_memory deltas are reported per key, with shardis/Redis ratios.
  ab       paired A/B of shardis builds or flags: every `--shardis NAME=CMD` (and Redis unless
           --no-redis) is started once, then each repeat runs every workload on each server
           back to back (the order rotates per repeat), so slow drifts in machine load hit all
           servers alike. Reports the median CPU/req per server and the median of the per-repeat
           ratios against the first `--shardis` (the paired figure to quote). Writes no
           results file unless --scenario is given.

  replication
           full-sync time of the strings dataset (`--string-keys`) from a Redis master and
           from shardis masters (`--shards`, default 1,2) to a stock Redis replica and to a
           shardis replica of the master's shard count; master CPU per SET alone and with a
           stock Redis replica attached; the replica's lag (bytes and ms) under that load;
           read scaling (a master and two replicas, GETs spread over both replicas).
           Masters on `--server-cores`, replicas on `--client-cores`.

`--tls`: both servers also listen on a TLS port with the same certificates (made here with
the openssl CLI: a CA and a server certificate for 127.0.0.1, `tls-auth-clients no`), and
redis-benchmark runs with `--tls --cacert` against that port. The mixed workload, memtier
and the memory load are skipped (they speak plain TCP only).

`--shardis NAME=CMD` (repeatable) names a shardis binary plus extra flags, e.g.
`--shardis old=target/ab/shardis-a00eb0a --shardis 'new=target/release/shardis --recv-mode single'`;
the port, shard and core flags are added. Default: this tree's release build.

Only the Python standard library is used.
"""

import argparse
import datetime as dt
import json
import os
import platform
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def ensure_tools():
    need = []
    if not shutil.which("redis-server"):
        need.append("redis-server")
    if not shutil.which("redis-benchmark") or not shutil.which("redis-cli"):
        need.append("redis-tools")
    if need:
        log(f"installing {' '.join(need)} (apt-get)")
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        subprocess.run(sudo + ["apt-get", "update", "-qq"], check=True)
        subprocess.run(sudo + ["apt-get", "install", "-y", "-qq"] + need, check=True,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))


def cpu_seconds(pid):
    """CPU time of the whole process (all threads, user + system), in seconds.

    Sums the nanosecond run times in /proc/<pid>/task/*/schedstat (exact), and falls back to
    utime + stime from /proc/<pid>/stat (10 ms ticks) where schedstat is missing. Threads
    that exited are not counted by schedstat, so servers must keep their threads alive
    (both do).
    """
    total = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        return total / 1e9
    except (OSError, ValueError, IndexError):
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK


def ctx_switches(pid):
    """Voluntary + involuntary context switches of all the process's threads."""
    total = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        total += int(line.split()[1])
    except (OSError, ValueError):
        pass
    return total


def rss_bytes(pid):
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE


def wait_ping(port, proc, timeout=15):
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"server on port {port} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"server on port {port} did not answer PING")


# With --tls: the certificate directory (see make_certs) and the flags both servers get.
TLS = {"dir": None}


def make_certs():
    """A CA and a server certificate for 127.0.0.1 in a temporary directory (openssl CLI)."""
    import tempfile
    d = tempfile.mkdtemp(prefix="bench-tls-")
    def run(*a):
        subprocess.run(["openssl", *a], cwd=d, check=True, capture_output=True)
    with open(os.path.join(d, "server.ext"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
        "-days", "2", "-subj", "/CN=bench CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
        "-subj", "/CN=localhost")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "server.ext")
    TLS["dir"] = d
    return d


def tls_flags(port):
    d = TLS["dir"]
    return ["--tls-port", str(port), "--tls-cert-file", os.path.join(d, "server.crt"),
            "--tls-key-file", os.path.join(d, "server.key"),
            "--tls-ca-cert-file", os.path.join(d, "ca.crt"), "--tls-auth-clients", "no"]


class Server:
    nice = 0

    def __init__(self, name, cmd, port, tls_port=None):
        self.name, self.cmd, self.port, self.tls_port = name, cmd, port, tls_port
        if Server.nice:
            cmd = ["nice", "-n", str(Server.nice)] + cmd
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_ping(port, self.proc)
        self.pid = self.proc.pid

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def takes_save_flag(binary):
    """Whether this shardis binary accepts `--save` (older builds exit with an error)."""
    try:
        r = subprocess.run([binary, "--save", "", "--version"], capture_output=True, timeout=10)
        return r.returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def start_shardis(binary, shards, cores, name=None, extra=()):
    port = free_port()
    extra = list(extra)
    # A variant may name its own shard count (`--shardis 'two=PATH --shards 2'`).
    own = ["--shards", str(shards)] if "--shards" not in extra else []
    # No snapshots while measuring, as redis-server below (`--save ""`); shardis would
    # otherwise apply Redis 7's default save rules and write dump.rdb into the checkout.
    # Binaries from before save rules existed refuse the flag (and never snapshot).
    nosave = ["--save", ""] if "--save" not in extra and takes_save_flag(binary) else []
    cmd = [binary] + extra + ["--port", str(port)] + own + ["--cores", cores, "--loglevel", "warning"] + nosave
    tls_port = free_port() if TLS["dir"] else None
    if tls_port:
        cmd += tls_flags(tls_port)
    return Server(name or f"shardis-{shards}sh", cmd, port, tls_port)


def start_redis(cores):
    port = free_port()
    cmd = ["taskset", "-c", cores, "redis-server", "--port", str(port), "--save", "",
           "--appendonly", "no", "--bind", "127.0.0.1", "--loglevel", "warning"]
    tls_port = free_port() if TLS["dir"] else None
    if tls_port:
        cmd += tls_flags(tls_port)
    return Server("redis", cmd, port, tls_port)


def parse_benchmark(out):
    """rps and latency percentiles (ms) from redis-benchmark's non-quiet output."""
    rps = None
    m = re.search(r"throughput summary:\s*([\d.]+) requests per second", out)
    if m:
        rps = float(m.group(1))
    pct = {}
    for p, ms in re.findall(r"^\s*([\d.]+)% <= ([\d.]+) milliseconds", out, re.M):
        pct[float(p)] = float(ms)

    def at(q):
        for p in sorted(pct):
            if p >= q:
                return pct[p]
        return pct[max(pct)] if pct else None

    return rps, at(50.0), at(99.0), at(99.9)


LOADGEN = os.path.join(ROOT, "target", "release", "examples", "loadgen")


def ensure_loadgen():
    if not os.path.exists(LOADGEN):
        log("building the mixed-workload load generator (cargo build --release --example loadgen)")
        subprocess.run(["cargo", "build", "--release", "--quiet", "--example", "loadgen"],
                       cwd=ROOT, check=True)


def user_sys_ticks(pid):
    """(utime, stime) of the whole process in clock ticks, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]), int(fields[12])


# The kernel's share of the server's CPU time in the last `measured` run (stime over
# utime + stime, 10 ms ticks: rough on short runs, good on the pipelined ones).
LAST = {"sys_frac": None}


def measured(server, cmd):
    """Runs a load generator; returns its output and the server's CPU seconds, context
    switches and the wall time spent meanwhile (the kernel's share goes to LAST)."""
    before = cpu_seconds(server.pid)
    cs0 = ctx_switches(server.pid)
    u0, s0 = user_sys_ticks(server.pid)
    t0 = time.time()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    wall = time.time() - t0
    u1, s1 = user_sys_ticks(server.pid)
    ticks = (u1 - u0) + (s1 - s0)
    LAST["sys_frac"] = round((s1 - s0) / ticks, 3) if ticks > 0 else None
    return out, cpu_seconds(server.pid) - before, ctx_switches(server.pid) - cs0, wall


def run_mixed(server, pipeline, args):
    """SET:GET 1:10 as memtier_benchmark's --ratio runs it: every connection sends one SET,
    then ten GETs, and again (examples/loadgen.rs, one thread on the client cores), over the
    same random keys as redis-benchmark -r. Server CPU per request over both."""
    ensure_loadgen()
    n = args.requests * (4 if pipeline >= 8 else 1)
    cmd = ["taskset", "-c", args.client_cores, LOADGEN, "--port", str(server.port),
           "--clients", str(args.clients), "--requests", str(n), "--pipeline", str(pipeline),
           "--ratio", "1:10", "--data-size", str(args.value_size), "--key-max", str(args.keyspace)]
    out, cpu, cs, wall = measured(server, cmd)
    tot = {}
    for line in out.splitlines():
        if line.startswith("totals "):
            tot = dict(kv.split("=", 1) for kv in line.split()[1:])
    reqs = int(tot.get("requests", n))
    return {
        "tool": "loadgen", "test": "MIXED", "clients": args.clients,
        "pipeline": pipeline, "value": args.value_size, "requests": reqs,
        "ops": float(tot["ops"]) if "ops" in tot else None,
        "p50_ms": float(tot["p50"]) if "p50" in tot else None,
        "p99_ms": float(tot["p99"]) if "p99" in tot else None,
        "p999_ms": float(tot["p999"]) if "p999" in tot else None,
        "server_cpu_s": round(cpu, 3), "wall_s": round(wall, 3),
        "cpu_us_per_req": round(cpu * 1e6 / max(1, reqs), 3),
        "ctx_switches_per_req": round(cs / max(1, reqs), 4), "sys_frac": LAST["sys_frac"],
        "command": shlex.join(cmd),
    }


def run_redis_benchmark(server, test, pipeline, args):
    if test.lower() == "mixed":
        return run_mixed(server, pipeline, args)
    if test.lower() in MEMTIER_TESTS:
        return run_memtier(server, test, pipeline, args)
    # Pipelined runs are 4x longer so the CPU reading stays well above timer noise.
    n = args.requests * (4 if pipeline >= 8 else 1)
    target = ["-p", str(server.port)]
    if server.tls_port:
        target = ["--tls", "--cacert", os.path.join(TLS["dir"], "ca.crt"), "-p", str(server.tls_port)]
    cmd = ["taskset", "-c", args.client_cores, "redis-benchmark"] + target + [
           "-c", str(args.clients), "-n", str(n), "-P", str(pipeline),
           "-t", test, "-d", str(args.value_size), "-r", str(args.keyspace), "--precision", "3"]
    if getattr(args, "nice", 0):
        cmd = ["nice", "-n", str(args.nice)] + cmd
    out, cpu, cs, wall = measured(server, cmd)
    rps, p50, p99, p999 = parse_benchmark(out)
    return {
        "tool": "redis-benchmark", "test": test.upper(), "clients": args.clients,
        "pipeline": pipeline, "value": args.value_size, "requests": n,
        "ops": rps, "p50_ms": p50, "p99_ms": p99, "p999_ms": p999,
        "server_cpu_s": round(cpu, 3), "wall_s": round(wall, 3),
        "cpu_us_per_req": round(cpu * 1e6 / n, 3),
        "ctx_switches_per_req": round(cs / n, 4), "sys_frac": LAST["sys_frac"],
        "command": " ".join(cmd),
    }


MEMTIER_TESTS = {"memtier-mixed": "1:10", "memtier-get": "0:1", "memtier-set": "1:0"}
MEMTIER = {"bin": None}


def memtier_bin():
    """memtier_benchmark: on PATH, or built once by ../shared/tools/build-memtier.sh (Debian
    does not package it). None when neither works."""
    if MEMTIER["bin"]:
        return MEMTIER["bin"]
    found = shutil.which("memtier_benchmark")
    script = os.path.join(os.path.dirname(ROOT), "shared", "tools", "build-memtier.sh")
    if not found and os.path.exists(script):
        log("building memtier_benchmark once (../shared/tools/build-memtier.sh)")
        r = subprocess.run([script], capture_output=True, text=True)
        path = r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""
        found = path if r.returncode == 0 and os.path.exists(path) else None
    MEMTIER["bin"] = found
    return found


def memtier_preload(server, args):
    """Writes memtier's keys memtier-1..memtier-K once (sequential pattern, pipelined), so
    GETs hit as in the issue's setup (100k keys preloaded)."""
    cmd = ["taskset", "-c", args.client_cores, memtier_bin(), "-s", "127.0.0.1",
           "-p", str(server.port), "--protocol=redis", "--ratio=1:0", "--key-pattern=P:P",
           "--key-minimum=1", f"--key-maximum={args.keyspace}", "-d", str(args.value_size),
           "-c", "1", "-t", "1", "--pipeline=64", "--requests=allkeys", "--hide-histogram"]
    subprocess.run(cmd, capture_output=True, text=True, check=True)
    return shlex.join(cmd)


def run_memtier(server, test, pipeline, args):
    """memtier_benchmark, one thread on the client cores, args.clients connections, random
    keys over the preloaded range; `test` names the ratio (MEMTIER_TESTS). Server CPU per
    request from /proc."""
    ratio = MEMTIER_TESTS[test.lower()]
    n = args.requests * (4 if pipeline >= 8 else 1)
    per_client = max(1, n // args.clients)
    cmd = ["taskset", "-c", args.client_cores, memtier_bin(), "-s", "127.0.0.1",
           "-p", str(server.port), "--protocol=redis", f"--ratio={ratio}", "--key-pattern=R:R",
           "--key-minimum=1", f"--key-maximum={args.keyspace}", "-d", str(args.value_size),
           "-c", str(args.clients), "-t", "1", f"--pipeline={pipeline}", "-n", str(per_client),
           "--hide-histogram"]
    if getattr(args, "nice", 0):
        cmd = ["nice", "-n", str(args.nice)] + cmd
    out, cpu, cs, wall = measured(server, cmd)
    total = None
    for line in out.splitlines():
        if line.startswith("Totals"):
            total = line.split()
    num = lambda i: float(total[i]) if total and len(total) > i and total[i] != "---" else None
    reqs = per_client * args.clients
    return {"tool": "memtier_benchmark", "test": test.upper(), "clients": args.clients,
            "pipeline": pipeline, "value": args.value_size, "requests": reqs, "ops": num(1),
            "p50_ms": num(5), "p99_ms": num(6), "p999_ms": num(7),
            "server_cpu_s": round(cpu, 3), "wall_s": round(wall, 3),
            "cpu_us_per_req": round(cpu * 1e6 / reqs, 3),
            "ctx_switches_per_req": round(cs / reqs, 4), "sys_frac": LAST["sys_frac"],
            "command": shlex.join(cmd)}


def info_used_memory(port):
    out = subprocess.run(["redis-cli", "-p", str(port), "info", "memory"], capture_output=True,
                         text=True).stdout
    m = re.search(r"^used_memory:(\d+)", out, re.M)
    return int(m.group(1)) if m else None


def memory_load(server, args):
    n = args.mem_keys
    rss0 = rss_bytes(server.pid)
    used0 = info_used_memory(server.port)
    value = "v" * args.value_size
    payload = "".join(
        f"*3\r\n$3\r\nSET\r\n$14\r\nk{i:013d}\r\n${len(value)}\r\n{value}\r\n" for i in range(n)
    ).encode()
    cmd = ["taskset", "-c", args.client_cores, "redis-cli", "-p", str(server.port), "--pipe"]
    t0 = time.time()
    subprocess.run(cmd, input=payload, capture_output=True, check=True)
    wall = time.time() - t0
    time.sleep(0.5)
    rss1 = rss_bytes(server.pid)
    used1 = info_used_memory(server.port)
    dbsize = subprocess.run(["redis-cli", "-p", str(server.port), "dbsize"], capture_output=True,
                            text=True).stdout.strip()
    return {
        "keys": n, "dbsize": int(dbsize) if dbsize.isdigit() else None,
        "rss_before": rss0, "rss_after": rss1,
        "rss_per_key": round((rss1 - rss0) / n, 1),
        "used_memory_per_key": round((used1 - used0) / n, 1) if used0 is not None and used1 is not None else None,
        "load_s": round(wall, 2),
        "command": f"redis-cli --pipe < {n} x SET k%013d <{args.value_size} bytes>",
    }


def git(*a):
    try:
        return subprocess.run(["git", "-C", ROOT] + list(a), capture_output=True, text=True,
                              check=True).stdout.strip()
    except Exception:
        return "unknown"


def machine():
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
    redis_v = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.strip()
    return {"cpu": cpu, "cores": os.cpu_count(), "kernel": platform.release(), "rustc": rustc,
            "redis": redis_v, "commit": git("rev-parse", "--short=7", "HEAD"),
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def svg_chart(rows, path):
    """Two grouped bar charts: ops/s and CPU µs per request, per workload, per server."""
    work = []
    for r in rows:
        key = f"{r['test']} P{r['pipeline']}"
        if key not in work:
            work.append(key)
    servers = []
    for r in rows:
        if r["server"] not in servers:
            servers.append(r["server"])
    colors = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
    W, H, pad = 760, 300, 50
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{2 * H + 40}" '
           f'font-family="sans-serif" font-size="11">']
    for panel, (metric, title) in enumerate([("ops", "ops/s (higher is better)"),
                                             ("cpu_us_per_req", "server CPU µs per request (lower is better)")]):
        y0 = panel * (H + 20) + 20
        vals = [r[metric] or 0 for r in rows]
        top = max(vals) if vals and max(vals) > 0 else 1
        out.append(f'<text x="{pad}" y="{y0}" font-size="13" font-weight="bold">{title}</text>')
        gw = (W - 2 * pad) / max(1, len(work))
        bw = gw * 0.8 / max(1, len(servers))
        for wi, w in enumerate(work):
            gx = pad + wi * gw
            out.append(f'<text x="{gx + gw * 0.4:.0f}" y="{y0 + H - 5}" text-anchor="middle">{w}</text>')
            for si, s in enumerate(servers):
                r = next((r for r in rows if r["server"] == s and f"{r['test']} P{r['pipeline']}" == w), None)
                if not r or not r[metric]:
                    continue
                h = (H - 50) * r[metric] / top
                x = gx + si * bw
                y = y0 + H - 20 - h
                out.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bw * 0.9:.1f}" height="{h:.1f}" fill="{colors[si % len(colors)]}"/>')
                label = f"{r[metric]:.0f}" if metric == "ops" else f"{r[metric]:.2f}"
                out.append(f'<text x="{x + bw * 0.45:.1f}" y="{y - 3:.1f}" text-anchor="middle" font-size="9">{label}</text>')
        for si, s in enumerate(servers):
            out.append(f'<rect x="{W - 150}" y="{y0 + 10 + si * 14}" width="10" height="10" fill="{colors[si % len(colors)]}"/>')
            out.append(f'<text x="{W - 135}" y="{y0 + 19 + si * 14}">{s}</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out))


def fmt(v, nd=2):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.{nd}f}"
    return f"{v:,}"


def write_results(args, meta, rows, mem, notes, commands):
    os.makedirs(os.path.join(ROOT, "bench-results"), exist_ok=True)
    stem = f"{dt.date.today().isoformat()}_{meta['commit']}_{args.scenario}"
    base = os.path.join(ROOT, "bench-results", stem)
    data = {"meta": meta, "args": vars(args), "rows": rows, "memory": mem, "notes": notes,
            "server_commands": commands}
    with open(base + ".json", "w") as f:
        json.dump(data, f, indent=2)
    svg_chart(rows, base + ".svg")
    ref = {(r["test"], r["pipeline"]): r for r in rows if r["server"] == "redis"}
    lines = [f"# {args.scenario}: shardis vs Redis", "",
             f"- commit: `{meta['commit']}`{' (uncommitted changes)' if meta['dirty'] else ''}",
             f"- machine: {meta['cpu']}, {meta['cores']} cores, kernel {meta['kernel']}",
             f"- {meta['rustc']}; {meta['redis']}",
             f"- server cores: `{args.server_cores}`, client cores: `{args.client_cores}`",
             f"- tool: `tools/bench.sh {' '.join(sys.argv[1:])}`", "",
             "Server commands:", ""]
    lines += [f"- `{c}`" for c in commands]
    lines += ["", "| server | workload | clients | pipeline | value | ops/s | p50 ms | p99 ms | p99.9 ms | CPU µs/req | CPU ratio vs Redis | ops ratio vs Redis |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        b = ref.get((r["test"], r["pipeline"]))
        cr = r["cpu_us_per_req"] / b["cpu_us_per_req"] if b and b["cpu_us_per_req"] else None
        orr = r["ops"] / b["ops"] if b and b["ops"] and r["ops"] else None
        lines.append(f"| {r['server']} | {r['test']} | {r['clients']} | {r['pipeline']} | {r['value']} | "
                     f"{fmt(r['ops'], 0)} | {fmt(r['p50_ms'], 3)} | {fmt(r['p99_ms'], 3)} | {fmt(r['p999_ms'], 3)} | "
                     f"{fmt(r['cpu_us_per_req'], 3)} | {fmt(cr, 2) if cr else '-'} | {fmt(orr, 2) if orr else '-'} |")
    if mem:
        lines += ["", "Memory after loading the same keys:", "",
                  "| server | keys | RSS bytes/key | used_memory bytes/key | ratio (RSS) vs Redis |", "|---|---|---|---|---|"]
        rm = next((m for m in mem if m["server"] == "redis"), None)
        for m in mem:
            ratio = m["rss_per_key"] / rm["rss_per_key"] if rm and rm["rss_per_key"] else None
            lines.append(f"| {m['server']} | {m['keys']:,} | {m['rss_per_key']} | {m['used_memory_per_key']} | {fmt(ratio, 2) if ratio else '-'} |")
    lines += ["", "Load generator command lines:", ""]
    for r in rows:
        lines.append(f"- {r['server']}: `{r['command']}`")
    if notes:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in notes]
    lines += ["", f"Chart: `{stem}.svg`; raw data: `{stem}.json`.", ""]
    with open(base + ".md", "w") as f:
        f.write("\n".join(lines))
    return base


def summary(rows, mem):
    ref = {(r["test"], r["pipeline"]): r for r in rows if r["server"] == "redis"}
    print()
    print(f"{'server':<14} {'workload':<14} {'P':>3} {'ops/s':>12} {'p99 ms':>8} {'CPU us/req':>11} {'CPU x Redis':>12}")
    for r in rows:
        b = ref.get((r["test"], r["pipeline"]))
        cr = r["cpu_us_per_req"] / b["cpu_us_per_req"] if b and b["cpu_us_per_req"] else None
        print(f"{r['server']:<14} {r['test']:<14} {r['pipeline']:>3} {fmt(r['ops'], 0):>12} "
              f"{fmt(r['p99_ms'], 3):>8} {r['cpu_us_per_req']:>11.3f} {fmt(cr, 2) if cr else '-':>12}")
    for m in mem:
        print(f"{m['server']:<14} memory: {m['rss_per_key']} RSS bytes/key, {m['used_memory_per_key']} used_memory bytes/key")

# ---------------------------------------------------------------------------------------------
# memory-types mode: bytes per key by data type (issue 3).


def vm_rss(pid):
    """Resident set size in bytes, from /proc/<pid>/status VmRSS (kB)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def resp_cmd(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class Resp:
    """A minimal blocking RESP2 client for the checks (stdlib only)."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.buf = b""

    def close(self):
        self.sock.close()

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise RuntimeError("connection closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n + 2:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise RuntimeError("connection closed")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def _reply(self):
        line = self._line()
        t, rest = line[:1], line[1:]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            raise RuntimeError(rest.decode())
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n)
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self._reply() for _ in range(n)]
        raise RuntimeError(f"unexpected reply {line!r}")

    def __call__(self, *args):
        self.sock.sendall(resp_cmd(*args))
        return self._reply()


def info_field(conn, section, name):
    text = conn("INFO", section).decode()
    m = re.search(rf"^{name}:(\S+)", text, re.M)
    return m.group(1) if m else None


# Each dataset: key count, a RESP generator over chunks of commands, a check per sampled index.
# Keys are 14 bytes in every dataset (as the compare mode's 1M-key load), in disjoint
# namespaces so the combined run loads all four side by side.


def _str_key(i):
    return b"key:%010d" % i


def _str_val(i, size):
    v = b"v%d:" % i
    return (v + b"x" * size)[:size]


def _hash_key(i):
    return b"hash:%09d" % i


def _hash_val(i, j):
    return b"value-%d-%07d" % (j, i)  # 15 bytes


def _set_key(i):
    return b"set:%010d" % i


def _set_member(i, j):
    return b"member-%d-%07d" % (j, i)  # 16 bytes, not an integer (no intset)


def _zset_key(i):
    return b"zset:%09d" % i


def _zset_member(i, j):
    return b"member-%d-%07d" % (j, i)


def _zset_score(i, j):
    return b"%d.5" % ((i * 7 + j * 13) % 100000)


def memtypes_datasets(args):
    """name -> (keys, elements per key, chunk generator, checker)."""
    n_str, n_coll, m = args.string_keys, args.coll_keys, args.coll_members
    vs = args.value_size

    def gen_strings(step=20000):
        for lo in range(0, n_str, step):
            yield b"".join(resp_cmd(b"SET", _str_key(i), _str_val(i, vs))
                           for i in range(lo, min(n_str, lo + step)))

    def gen_hashes(step=5000):
        for lo in range(0, n_coll, step):
            parts = []
            for i in range(lo, min(n_coll, lo + step)):
                a = [b"HSET", _hash_key(i)]
                for j in range(m):
                    a += [b"f%d" % j, _hash_val(i, j)]
                parts.append(resp_cmd(*a))
            yield b"".join(parts)

    def gen_sets(step=5000):
        for lo in range(0, n_coll, step):
            yield b"".join(resp_cmd(b"SADD", _set_key(i), *[_set_member(i, j) for j in range(m)])
                           for i in range(lo, min(n_coll, lo + step)))

    def gen_zsets(step=5000):
        for lo in range(0, n_coll, step):
            parts = []
            for i in range(lo, min(n_coll, lo + step)):
                a = [b"ZADD", _zset_key(i)]
                for j in range(m):
                    a += [_zset_score(i, j), _zset_member(i, j)]
                parts.append(resp_cmd(*a))
            yield b"".join(parts)

    def check_strings(c, i):
        got = c("GET", _str_key(i))
        assert got == _str_val(i, vs), f"GET {_str_key(i)!r} = {got!r}"

    def check_hashes(c, i):
        k = _hash_key(i)
        assert c("HLEN", k) == m, f"HLEN {k!r}"
        j = i % m
        got = c("HGET", k, b"f%d" % j)
        assert got == _hash_val(i, j), f"HGET {k!r} f{j} = {got!r}"

    def check_sets(c, i):
        k = _set_key(i)
        assert c("SCARD", k) == m, f"SCARD {k!r}"
        assert c("SISMEMBER", k, _set_member(i, i % m)) == 1, f"SISMEMBER {k!r}"

    def check_zsets(c, i):
        k = _zset_key(i)
        assert c("ZCARD", k) == m, f"ZCARD {k!r}"
        j = i % m
        got = c("ZSCORE", k, _zset_member(i, j))
        assert float(got) == float(_zset_score(i, j)), f"ZSCORE {k!r} = {got!r}"

    return {
        "strings": (n_str, 1, gen_strings, check_strings, _str_key,
                    f"SET key:%010d <{vs}-byte value>"),
        "hashes": (n_coll, m, gen_hashes, check_hashes, _hash_key,
                   f"HSET hash:%09d f0 <15 bytes> .. f{m - 1} <15 bytes>"),
        "sets": (n_coll, m, gen_sets, check_sets, _set_key,
                 f"SADD set:%010d <{m} members of 16 bytes>"),
        "zsets": (n_coll, m, gen_zsets, check_zsets, _zset_key,
                  f"ZADD zset:%09d <{m} score/member pairs, 16-byte members>"),
    }


def pipe_load(port, chunks, client_cores):
    """Streams RESP chunks into `redis-cli --pipe`; returns (replies, errors, seconds)."""
    cmd = ["taskset", "-c", client_cores, "redis-cli", "-p", str(port), "--pipe"]
    t0 = time.time()
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    for chunk in chunks:
        proc.stdin.write(chunk)
    proc.stdin.close()
    out = proc.stdout.read().decode(errors="replace")
    proc.wait()
    wall = time.time() - t0
    m = re.search(r"errors:\s*(\d+),\s*replies:\s*(\d+)", out)
    if proc.returncode != 0 or not m:
        raise RuntimeError(f"redis-cli --pipe failed ({proc.returncode}): {out[-500:]}")
    return int(m.group(2)), int(m.group(1)), wall


def settle(pid, conn):
    """Waits until RSS stops moving (at most ~3 s) so both servers are read at rest."""
    last = vm_rss(pid)
    for _ in range(12):
        time.sleep(0.25)
        conn("PING")
        now = vm_rss(pid)
        if abs(now - last) < 64 * 1024:
            return now
        last = now
    return last


def memtypes_run(srv, name, dsets, args):
    """Loads the named datasets into a fresh server; one result row (all datasets summed)."""
    conn = Resp(srv.port)
    try:
        rss0 = settle(srv.pid, conn)
        used0 = int(info_field(conn, "memory", "used_memory"))
        keys = elems = replies = errors = 0
        wall = 0.0
        for d in dsets:
            n, per, gen, _, _, _ = args.datasets[d]
            r, e, w = pipe_load(srv.port, gen(), args.client_cores)
            replies += r
            errors += e
            wall += w
            keys += n
            elems += n * per
        rss1 = settle(srv.pid, conn)
        used1 = int(info_field(conn, "memory", "used_memory"))
        dbsize = conn("DBSIZE")
        if errors or replies != keys:
            raise RuntimeError(f"{name}: redis-cli --pipe gave {errors} errors, {replies} replies for {keys} commands")
        if dbsize != keys:
            raise RuntimeError(f"{name}: DBSIZE {dbsize}, expected {keys}")
        checked, encodings = 0, {}
        for d in dsets:
            n, _, _, check, keyf, _ = args.datasets[d]
            for i in sorted({0, 1, n // 3, n // 2, n - 1, (n * 7) // 11}):
                check(conn, i)
                checked += 1
            enc = conn("OBJECT", "ENCODING", keyf(n // 2))
            encodings[d] = enc.decode() if isinstance(enc, bytes) else str(enc)
    finally:
        conn.close()
    return {
        "server": name, "dataset": "+".join(dsets) if len(dsets) > 1 else dsets[0],
        "keys": keys, "elements": elems, "dbsize": dbsize, "spot_checks": checked,
        "encodings": encodings,
        "rss_before": rss0, "rss_after": rss1, "used_before": used0, "used_after": used1,
        "rss_per_key": round((rss1 - rss0) / keys, 1),
        "used_per_key": round((used1 - used0) / keys, 1),
        "load_s": round(wall, 2),
    }


def memtypes_svg(rows, servers, path):
    """Grouped bars: RSS bytes per key per dataset, one bar per server."""
    dsets = []
    for r in rows:
        if r["dataset"] not in dsets:
            dsets.append(r["dataset"])
    colors = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
    W, H, pad = 760, 320, 50
    top = max([r["rss_per_key"] for r in rows] + [1])
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H + 40}" '
           f'font-family="sans-serif" font-size="11">',
           f'<text x="{pad}" y="20" font-size="13" font-weight="bold">RSS bytes per key '
           f'(lower is better)</text>']
    gw = (W - 2 * pad) / max(1, len(dsets))
    bw = gw * 0.8 / max(1, len(servers))
    for di, d in enumerate(dsets):
        gx = pad + di * gw
        label = "all four" if "+" in d else d
        out.append(f'<text x="{gx + gw * 0.4:.0f}" y="{H + 15}" text-anchor="middle">{label}</text>')
        for si, s in enumerate(servers):
            r = next((r for r in rows if r["server"] == s and r["dataset"] == d), None)
            if not r:
                continue
            h = max(0.0, (H - 60) * r["rss_per_key"] / top)
            x = gx + si * bw
            y = H - h
            out.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bw * 0.9:.1f}" height="{h:.1f}" '
                       f'fill="{colors[si % len(colors)]}"/>')
            out.append(f'<text x="{x + bw * 0.45:.1f}" y="{y - 3:.1f}" text-anchor="middle" '
                       f'font-size="9">{r["rss_per_key"]:.0f}</text>')
    for si, s in enumerate(servers):
        out.append(f'<rect x="{W - 150}" y="{30 + si * 14}" width="10" height="10" '
                   f'fill="{colors[si % len(colors)]}"/>')
        out.append(f'<text x="{W - 135}" y="{39 + si * 14}">{s}</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out))


def memtypes_write(args, meta, rows, servers, commands, notes):
    os.makedirs(os.path.join(ROOT, "bench-results"), exist_ok=True)
    stem = f"{dt.date.today().isoformat()}_{meta['commit']}_{args.scenario}"
    base = os.path.join(ROOT, "bench-results", stem)
    plain_args = {k: v for k, v in vars(args).items() if k != "datasets"}
    with open(base + ".json", "w") as f:
        json.dump({"meta": meta, "args": plain_args, "memory_types": rows, "notes": notes,
                   "server_commands": commands}, f, indent=2)
    memtypes_svg(rows, servers, base + ".svg")
    ref = {r["dataset"]: r for r in rows if r["server"] == "redis"}
    lines = [f"# {args.scenario}: memory per key by data type, shardis vs Redis", "",
             f"- commit: `{meta['commit']}`{' (uncommitted changes)' if meta['dirty'] else ''}",
             f"- machine: {meta['cpu']}, {meta['cores']} cores, kernel {meta['kernel']}",
             f"- {meta['rustc']}; {meta['redis']}",
             f"- server cores: `{args.server_cores}`, client cores: `{args.client_cores}`",
             f"- tool: `tools/bench.sh {' '.join(sys.argv[1:])}`", "",
             "Every row is a fresh server: VmRSS (`/proc/<pid>/status`) and INFO `used_memory` "
             "are read before and after loading (after RSS settles), DBSIZE must equal the key "
             "count and a few values are read back (GET / HLEN+HGET / SCARD+SISMEMBER / "
             "ZCARD+ZSCORE). Bytes per key = delta / keys; ratios are shardis / Redis for the "
             "same dataset.", "",
             "Server commands (ports differ per run):", ""]
    lines += [f"- `{c}`" for c in commands]
    lines += ["", "Datasets (RESP generated by tools/bench.py, streamed into "
              f"`taskset -c {args.client_cores} redis-cli -p PORT --pipe`):", ""]
    for d in DATASET_ORDER:
        n, per, _, _, _, desc = args.datasets[d]
        lines.append(f"- {d}: {n:,} x `{desc}`")
    lines += ["", "| dataset | server | keys | encoding | RSS delta MB | RSS B/key | used_memory B/key | "
              "RSS ratio vs Redis | used_memory ratio vs Redis |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        b = ref.get(r["dataset"])
        rr = r["rss_per_key"] / b["rss_per_key"] if b and b["rss_per_key"] > 0 else None
        ur = r["used_per_key"] / b["used_per_key"] if b and b["used_per_key"] > 0 else None
        enc = ", ".join(f"{v}" for v in r["encodings"].values()) if len(r["encodings"]) == 1 \
            else "mixed"
        label = "all four" if "+" in r["dataset"] else r["dataset"]
        lines.append(f"| {label} | {r['server']} | {r['keys']:,} | {enc} | "
                     f"{(r['rss_after'] - r['rss_before']) / 1e6:.1f} | {r['rss_per_key']:.1f} | "
                     f"{r['used_per_key']:.1f} | {fmt(rr, 2) if rr else '-'} | {fmt(ur, 2) if ur else '-'} |")
    if notes:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in notes]
    lines += ["", f"Chart: `{stem}.svg`; raw data: `{stem}.json`.", ""]
    with open(base + ".md", "w") as f:
        f.write("\n".join(lines))
    return base


DATASET_ORDER = ["strings", "hashes", "sets", "zsets"]


def memtypes_main(args, binary, meta):
    args.datasets = memtypes_datasets(args)
    wanted = [d.strip() for d in args.datasets_sel.split(",") if d.strip()]
    plan = []
    for d in wanted:
        if d == "all":
            plan.append(list(DATASET_ORDER))
        elif d in DATASET_ORDER:
            plan.append([d])
        else:
            raise SystemExit(f"unknown dataset {d!r} (strings, hashes, sets, zsets, all)")
    if args.shards:
        shard_counts = [int(x) for x in args.shards.split(",")]
    else:
        shard_counts = sorted({1, os.cpu_count() or 1})
    servers = ([] if args.no_redis else ["redis"]) + [f"shardis-{n}sh" for n in shard_counts]
    rows, commands, notes = [], [], []
    total, done = len(plan) * len(servers), 0
    for dsets in plan:
        for name in servers:
            done += 1
            log(f"[{done}/{total}] {name}: fresh server, load {'+'.join(dsets)}")
            if name == "redis":
                srv = start_redis(args.server_cores)
            else:
                srv = start_shardis(binary, int(name.split("-")[1][:-2]), args.server_cores)
            shown = ["PORT" if a == str(srv.port) else a for a in srv.cmd]
            cmd = shlex.join(shown)
            if cmd not in commands:
                commands.append(cmd)
            try:
                r = memtypes_run(srv, name, dsets, args)
            finally:
                srv.stop()
            log(f"    {r['keys']:,} keys in {r['load_s']} s: {r['rss_per_key']} RSS B/key, "
                f"{r['used_per_key']} used_memory B/key, encodings {r['encodings']}")
            rows.append(r)
    notes.append("used_memory is what each server reports: jemalloc's allocated bytes for Redis, "
                 "the counting allocator's requested bytes for shardis (glibc malloc's per-block "
                 "overhead shows in RSS only).")
    notes.append("Redis 7.0 has no listpack sets: a set of non-integer members is a hashtable "
                 "there whatever its size; shardis reports the same name (OBJECT ENCODING "
                 "follows 7.0) but stores small sets in its compact form.")
    base = memtypes_write(args, meta, rows, servers, commands, notes)
    print()
    print(f"{'dataset':<10} {'server':<13} {'keys':>9} {'RSS B/key':>10} {'used B/key':>11} "
          f"{'RSS x Redis':>12} {'used x Redis':>13}")
    ref = {r["dataset"]: r for r in rows if r["server"] == "redis"}
    for r in rows:
        b = ref.get(r["dataset"])
        rr = r["rss_per_key"] / b["rss_per_key"] if b and b["rss_per_key"] > 0 else None
        ur = r["used_per_key"] / b["used_per_key"] if b and b["used_per_key"] > 0 else None
        label = "all four" if "+" in r["dataset"] else r["dataset"]
        print(f"{label:<10} {r['server']:<13} {r['keys']:>9,} {r['rss_per_key']:>10.1f} "
              f"{r['used_per_key']:>11.1f} {fmt(rr, 2) if rr else '-':>12} {fmt(ur, 2) if ur else '-':>13}")
    print(f"\nresults: {os.path.relpath(base, ROOT)}.md (.json, .svg)")



def persist_start(name, binary, cores, d, extra=()):
    """A server for the persistence mode, working in directory `d` (dump.rdb there)."""
    if name == "redis":
        port = free_port()
        cmd = ["taskset", "-c", cores, "redis-server", "--port", str(port), "--save", "",
               "--bind", "127.0.0.1", "--loglevel", "warning", "--dir", d] + list(extra)
        if "--appendonly" not in extra:
            cmd += ["--appendonly", "no"]
        return Server("redis", cmd, port)
    shards = int(name.split("-")[1][:-2])
    return start_shardis(binary, shards, cores, name, ["--dir", d] + list(extra))


def wait_bgsave(conn, before, timeout=600):
    """Polls (every 2 ms) until the BGSAVE begun after LASTSAVE `before` finished; returns
    its status (`ok` or `err`)."""
    end = time.time() + timeout
    while time.time() < end:
        text = conn("INFO", "persistence").decode()
        f = dict(l.split(":", 1) for l in text.split("\r\n") if ":" in l)
        if f.get("rdb_bgsave_in_progress") == "0":
            if conn("LASTSAVE") != before:
                return f.get("rdb_last_bgsave_status")
            if f.get("rdb_last_bgsave_status") == "err":
                return "err"
        time.sleep(0.002)
    raise RuntimeError("BGSAVE did not finish")


def persist_main(args, binary, meta):
    """Save and load times and file sizes, RSS and client p99 during a BGSAVE under writes,
    and CPU per SET under appendonly, for Redis and shardis in the same run."""
    import tempfile
    args.datasets = memtypes_datasets(args)
    if args.datasets_sel == "strings,hashes,sets,zsets,all":
        args.datasets_sel = "strings,all"
    wanted = [d.strip() for d in args.datasets_sel.split(",") if d.strip()]
    plan = [list(DATASET_ORDER) if d == "all" else [d] for d in wanted]
    cores = args.server_cores
    shard_counts = ([int(x) for x in args.shards.split(",")] if args.shards
                    else sorted({1, len(cores.replace("-", ",").split(","))}))
    names = ([] if args.no_redis else ["redis"]) + [f"shardis-{n}sh" for n in shard_counts]
    rows, commands = [], []
    if "save" not in args.persist_parts.split(","):
        plan = []
    for dsets in plan:
        for name in names:
            d = tempfile.mkdtemp(prefix="bench-persist-")
            srv = persist_start(name, binary, cores, d)
            commands.append(shlex.join(["PORT" if a == str(srv.port) else a for a in srv.cmd]))
            conn = Resp(srv.port)
            keys = 0
            for ds in dsets:
                n, _, gen, _, _, _ = args.datasets[ds]
                pipe_load(srv.port, gen(), args.client_cores)
                keys += n
            assert conn("DBSIZE") == keys, f"{name}: DBSIZE"
            rss = vm_rss(srv.pid)
            before = conn("LASTSAVE")
            time.sleep(1.05)  # LASTSAVE has a one-second resolution
            t0 = time.time()
            conn("BGSAVE")
            status = wait_bgsave(conn, before)
            save_s = time.time() - t0
            size = os.path.getsize(os.path.join(d, "dump.rdb"))
            try:
                conn("SHUTDOWN", "NOSAVE")
            except (RuntimeError, OSError):
                pass
            conn.close()
            srv.proc.wait(30)
            t0 = time.time()
            srv2 = persist_start(name, binary, cores, d)
            load_s = time.time() - t0
            c2 = Resp(srv2.port)
            got = c2("DBSIZE")
            c2.close()
            srv2.stop()
            shutil.rmtree(d, ignore_errors=True)
            row = {"server": name, "dataset": "+".join(dsets), "keys": keys, "dbsize_after_load": got,
                   "bgsave_status": status, "rss_mb": round(rss / 2**20, 1),
                   "save_s": round(save_s, 3), "load_s": round(load_s, 3), "rdb_bytes": size,
                   "save_mb_s": round(size / 2**20 / save_s, 1), "load_mb_s": round(size / 2**20 / load_s, 1)}
            log(f"{name} {row['dataset']}: BGSAVE {row['save_s']} s ({row['save_mb_s']} MB/s), "
                f"{size / 2**20:.1f} MB, load {row['load_s']} s ({row['load_mb_s']} MB/s), DBSIZE {got}/{keys}")
            rows.append(row)
    # A BGSAVE while redis-benchmark overwrites the keys: client p99 and peak RSS, against
    # the same run without the BGSAVE.
    under = []
    n_str = args.string_keys
    parts = set(args.persist_parts.split(","))
    for name in names if "under" in parts else []:
        d = tempfile.mkdtemp(prefix="bench-persist-")
        srv = persist_start(name, binary, cores, d)
        pipe_load(srv.port, args.datasets["strings"][2](), args.client_cores)
        conn = Resp(srv.port)
        res = {}
        for with_save in (False, True):
            cmd = ["taskset", "-c", args.client_cores, "redis-benchmark", "-p", str(srv.port),
                   "-c", str(args.clients), "-n", str(args.requests * 2), "-t", "set",
                   "-d", str(args.value_size), "-r", str(n_str), "--precision", "3"]
            rss0 = vm_rss(srv.pid)
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            time.sleep(0.5)
            before = conn("LASTSAVE")
            if with_save:
                conn("BGSAVE")
            peak = rss0
            children = 0
            while proc.poll() is None:
                r = vm_rss(srv.pid)
                # Redis's fork child: its RSS counts (copy-on-write pages are its own).
                kids = subprocess.run(["pgrep", "-P", str(srv.pid)], capture_output=True, text=True).stdout.split()
                children = 0
                for k in kids:
                    try:
                        children += vm_rss(int(k))
                    except (RuntimeError, ValueError, OSError):
                        pass  # the child exited meanwhile
                peak = max(peak, r + children)
                time.sleep(0.02)
            out = proc.stdout.read()
            rps, p50, p99, p999 = parse_benchmark(out)
            if with_save:
                wait_bgsave(conn, before)
            res[with_save] = {"p50_ms": p50, "p99_ms": p99, "p999_ms": p999, "ops": rps,
                              "rss_base_mb": round(rss0 / 2**20, 1),
                              "rss_peak_mb": round(peak / 2**20, 1)}
            log(f"{name} SET load {'with' if with_save else 'without'} BGSAVE: p99 {p99} ms, "
                f"p99.9 {p999} ms, RSS {rss0 / 2**20:.0f} -> peak {peak / 2**20:.0f} MB")
        conn.close()
        srv.stop()
        shutil.rmtree(d, ignore_errors=True)
        under.append({"server": name, "without": res[False], "with": res[True]})
    # CPU per SET with the append-only file, per fsync policy.
    aof = []
    for policy in ("everysec", "always") if "aof" in parts else ():
        for name in names:
            d = tempfile.mkdtemp(prefix="bench-persist-")
            srv = persist_start(name, binary, cores, d, ["--appendonly", "yes", "--appendfsync", policy])
            for p in [int(x) for x in args.pipelines.split(",")]:
                r = run_redis_benchmark(srv, "set", p, args)
                aof.append({"server": name, "appendfsync": policy, "pipeline": p,
                            "cpu_us_per_req": r["cpu_us_per_req"], "ops": r["ops"], "p99_ms": r["p99_ms"]})
                log(f"{name} appendfsync {policy} SET P{p}: {r['cpu_us_per_req']} us/req, {fmt(r['ops'], 0)} ops/s")
            srv.stop()
            shutil.rmtree(d, ignore_errors=True)
    # The report.
    stem = f"{dt.date.today().isoformat()}_{meta['commit']}_{args.scenario}"
    base = os.path.join(ROOT, "bench-results", stem)
    os.makedirs(os.path.dirname(base), exist_ok=True)
    with open(base + ".json", "w") as f:
        json.dump({"meta": meta, "args": vars(args), "save_load": rows, "bgsave_under_load": under,
                   "aof": aof, "server_commands": commands}, f, indent=2, default=str)
    red = {r["dataset"]: r for r in rows if r["server"] == "redis"}
    md = [f"# {args.scenario}: persistence, shardis vs Redis", "",
          f"- commit: `{meta['commit']}`", f"- machine: {meta['cpu']}, {meta['cores']} cores, kernel {meta['kernel']}",
          f"- tool: `tools/bench.sh {shlex.join(sys.argv[1:])}`",
          f"- servers on cores {cores} (Redis's BGSAVE child too), loads with `redis-cli --pipe` on core {args.client_cores}",
          "", "Servers:", ""] + [f"- `{c}`" for c in dict.fromkeys(commands)] + [
          "", "## BGSAVE and startup load", "",
          "| dataset | server | keys | RDB MB | BGSAVE s | MB/s | load s | MB/s | save x Redis | load x Redis |",
          "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        rr = red.get(r["dataset"])
        sx = f"{rr['save_s'] / r['save_s']:.2f}x faster" if rr and r["server"] != "redis" else ""
        lx = f"{rr['load_s'] / r['load_s']:.2f}x faster" if rr and r["server"] != "redis" else ""
        md.append(f"| {r['dataset']} | {r['server']} | {r['keys']} | {r['rdb_bytes'] / 2**20:.1f} | {r['save_s']} | "
                  f"{r['save_mb_s']} | {r['load_s']} | {r['load_mb_s']} | {sx} | {lx} |")
    md += ["", "Load time is from spawning the process to its first PONG (Redis answers -LOADING "
           "until loaded), with DBSIZE checked after.", "",
           "## A BGSAVE during writes", "",
           f"`redis-benchmark -c {args.clients} -n {args.requests * 2} -t set -d {args.value_size} "
           f"-r {n_str}` over the {n_str} loaded keys, BGSAVE 0.5 s in; RSS sampled every 20 ms "
           "(Redis: parent plus fork child).", "",
           "| server | p99 ms without / with | p99.9 ms without / with | ops/s without / with | RSS MB base | peak without / with |",
           "|---|---|---|---|---|---|"]
    for u in under:
        a, b = u["without"], u["with"]
        md.append(f"| {u['server']} | {a['p99_ms']} / {b['p99_ms']} | {a['p999_ms']} / {b['p999_ms']} | "
                  f"{fmt(a['ops'], 0)} / {fmt(b['ops'], 0)} | {a['rss_base_mb']} | {a['rss_peak_mb']} / {b['rss_peak_mb']} |")
    md += ["", "## CPU per SET with appendonly yes", "",
           f"`redis-benchmark -c {args.clients} -n N -P P -t set -d {args.value_size} -r {args.keyspace}` "
           "(N x4 at P16), server CPU from /proc.", "",
           "| appendfsync | pipeline | server | us/req | x Redis | ops/s | p99 ms |", "|---|---|---|---|---|---|---|"]
    for a in aof:
        rr = next((x for x in aof if x["server"] == "redis" and x["appendfsync"] == a["appendfsync"]
                   and x["pipeline"] == a["pipeline"]), None)
        x = f"{a['cpu_us_per_req'] / rr['cpu_us_per_req']:.2f}" if rr else "-"
        md.append(f"| {a['appendfsync']} | {a['pipeline']} | {a['server']} | {a['cpu_us_per_req']} | {x} | "
                  f"{fmt(a['ops'], 0)} | {a['p99_ms']} |")
    with open(base + ".md", "w") as f:
        f.write("\n".join(md) + "\n")
    print("\n".join(md))
    print(f"\nresults: {os.path.relpath(base, ROOT)}.md (.json)")


def repl_start(name, binary, cores, d, extra=()):
    """A master or replica for the replication mode (`redis`, `shardis-Nsh`)."""
    if name == "redis":
        port = free_port()
        # Diskless sync starts at once (Redis 7 waits 5 s for more replicas by default).
        cmd = ["taskset", "-c", cores, "redis-server", "--port", str(port), "--save", "",
               "--bind", "127.0.0.1", "--loglevel", "warning", "--dir", d, "--appendonly", "no",
               "--repl-diskless-sync-delay", "0"] + list(extra)
        return Server("redis", cmd, port)
    shards = int(name.split("-")[1][:-2])
    return start_shardis(binary, shards, cores, name, ["--dir", d] + list(extra))


def repl_synced(conn, keys):
    text = conn("INFO", "replication").decode()
    f = dict(l.split(":", 1) for l in text.split("\r\n") if ":" in l)
    return (f.get("master_link_status") == "up" and f.get("master_sync_in_progress") == "0"
            and conn("DBSIZE") == keys)


def repl_offsets(mconn, rconn):
    """(master's offset, the replica's processed offset)."""
    m = info_field(mconn, "replication", "master_repl_offset")
    r = info_field(rconn, "replication", "master_repl_offset")
    return int(m or 0), int(r or 0)


def repl_main(args, binary, meta):
    """Replication, shardis and Redis side by side: full-sync time of the strings dataset,
    master CPU per SET with a stock Redis replica against none, and the replica's lag under
    a write load."""
    import tempfile
    args.datasets = memtypes_datasets(args)
    n_keys, _, gen, _, _, _ = args.datasets["strings"]
    mcores, rcores = args.server_cores, args.client_cores
    shard_counts = [int(x) for x in args.shards.split(",")] if args.shards else [1, 2]
    masters = ([] if args.no_redis else ["redis"]) + [f"shardis-{n}sh" for n in shard_counts]
    syncs, cpu, lag, commands = [], [], [], []
    dirs = []

    def tmp():
        d = tempfile.mkdtemp(prefix="bench-repl-")
        dirs.append(d)
        return d

    # Full sync: the master holds the dataset; the replica starts and is timed until its
    # link is up, its sync over and DBSIZE complete.
    for mname in masters:
        replicas = ["redis"] + ([mname] if mname != "redis" else [])
        for rname in replicas:
            m = repl_start(mname, binary, mcores, tmp())
            commands.append(shlex.join(["PORT" if a == str(m.port) else a for a in m.cmd]))
            pipe_load(m.port, gen(), args.client_cores)
            mconn = Resp(m.port)
            assert mconn("DBSIZE") == n_keys, f"{mname}: DBSIZE"
            t0 = time.time()
            r = repl_start(rname, binary, rcores, tmp(), ["--replicaof", "127.0.0.1", str(m.port)])
            rconn = Resp(r.port)
            while not repl_synced(rconn, n_keys):
                if time.time() - t0 > 300:
                    raise RuntimeError(f"{mname} -> {rname}: no sync")
                time.sleep(0.005)
            secs = time.time() - t0
            syncs.append({"master": mname, "replica": rname, "keys": n_keys, "seconds": round(secs, 3)})
            log(f"full sync {mname} -> {rname} replica: {secs:.3f} s")
            rconn.close()
            mconn.close()
            r.stop()
            m.stop()
    # CPU per SET on the master without and with a stock Redis replica, and the replica's
    # lag (sampled every 2 ms, in a run of its own) under the same load.
    for mname in masters:
        m = repl_start(mname, binary, mcores, tmp())
        commands.append(shlex.join(["PORT" if a == str(m.port) else a for a in m.cmd]))
        base = {}
        for p in [int(x) for x in args.pipelines.split(",")]:
            rs = [run_redis_benchmark(m, "set", p, args)["cpu_us_per_req"] for _ in range(args.repeat)]
            base[p] = sorted(rs)[len(rs) // 2]
        r = repl_start("redis", binary, rcores, tmp(), ["--replicaof", "127.0.0.1", str(m.port)])
        rconn, mconn = Resp(r.port), Resp(m.port)
        t0 = time.time()
        while info_field(rconn, "replication", "master_link_status") != "up":
            if time.time() - t0 > 60:
                raise RuntimeError("replica did not attach")
            time.sleep(0.01)
        for p in [int(x) for x in args.pipelines.split(",")]:
            samples = []
            stop = [False]

            def sample():
                while not stop[0]:
                    samples.append((time.time(),) + repl_offsets(mconn, rconn))
                    time.sleep(0.002)
            import threading
            # CPU first, without the sampler (its INFO calls cost the master CPU too).
            rs = [run_redis_benchmark(m, "set", p, args)["cpu_us_per_req"] for _ in range(args.repeat)]
            with_r = sorted(rs)[len(rs) // 2]
            th = threading.Thread(target=sample)
            th.start()
            run_redis_benchmark(m, "set", p, args)
            stop[0] = True
            th.join()
            cpu.append({"master": mname, "pipeline": p, "none_us": base[p], "replica_us": with_r,
                        "ratio": round(with_r / base[p], 3)})
            log(f"{mname} SET P{p}: {base[p]} us/req alone, {with_r} with a Redis replica")
            # Lag: bytes behind per sample; time until the replica reached each sample's
            # master offset.
            lag_b = sorted(max(0, mo - ro) for _, mo, ro in samples if mo > 0)
            lag_ms = []
            j = 0
            for i, (t, mo, _) in enumerate(samples):
                j = max(j, i)
                while j < len(samples) and samples[j][2] < mo:
                    j += 1
                if j < len(samples):
                    lag_ms.append((samples[j][0] - t) * 1000)
            lag_ms.sort()
            pct = lambda v, q: v[min(len(v) - 1, int(q * len(v)))] if v else 0
            lag.append({"master": mname, "pipeline": p, "samples": len(samples),
                        "bytes_p50": pct(lag_b, 0.5), "bytes_p99": pct(lag_b, 0.99),
                        "ms_p50": round(pct(lag_ms, 0.5), 1), "ms_p99": round(pct(lag_ms, 0.99), 1)})
        rconn.close()
        mconn.close()
        r.stop()
        m.stop()
    # Read scaling: a master and two replicas of one kind (replicas on the master's core
    # and on the load's core: this machine has two), GETs spread over both replicas by two
    # redis-benchmark processes at once; aggregate ops/s and the replicas' CPU per GET.
    scale = []
    for kind in masters[:2]:
        m = repl_start(kind, binary, mcores, tmp())
        rs = [repl_start(kind, binary, c, tmp(), ["--replicaof", "127.0.0.1", str(m.port)])
              for c in (mcores, rcores)]
        run_redis_benchmark(m, "set", 16, args)
        mconn, rconns = Resp(m.port), [Resp(r.port) for r in rs]
        t0 = time.time()
        while True:
            target = info_field(mconn, "replication", "master_repl_offset")
            if all(info_field(c, "replication", "master_repl_offset") == target for c in rconns):
                break
            if time.time() - t0 > 60:
                raise RuntimeError(f"{kind}: replicas did not catch up")
            time.sleep(0.05)
        for p in [int(x) for x in args.pipelines.split(",")]:
            n = args.requests * (4 if p >= 8 else 1)
            cmds = [["taskset", "-c", args.client_cores, "redis-benchmark", "-p", str(r.port),
                     "-c", str(max(1, args.clients // 2)), "-n", str(n), "-P", str(p), "-t", "get",
                     "-d", str(args.value_size), "-r", str(args.keyspace), "--precision", "3"]
                    for r in rs]
            c0 = [cpu_seconds(r.pid) for r in rs]
            w0 = time.time()
            procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for c in cmds]
            outs = [pr.communicate()[0].decode(errors="replace") for pr in procs]
            wall = time.time() - w0
            used = sum(cpu_seconds(r.pid) - a for r, a in zip(rs, c0))
            ops = sum(parse_benchmark(o)[0] for o in outs)
            scale.append({"kind": kind, "pipeline": p, "requests": 2 * n, "ops": round(ops),
                          "wall_s": round(wall, 3), "replica_cpu_us_per_get": round(used * 1e6 / (2 * n), 3)})
            log(f"read scaling {kind} P{p}: {fmt(ops, 0)} GET/s over two replicas, "
                f"{used * 1e6 / (2 * n):.3f} us/GET")
        for c in rconns + [mconn]:
            c.close()
        for r in rs:
            r.stop()
        m.stop()
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)
    stem = f"{dt.date.today().isoformat()}_{meta['commit']}_{args.scenario}"
    base = os.path.join(ROOT, "bench-results", stem)
    with open(base + ".json", "w") as f:
        json.dump({"meta": meta, "args": vars(args), "full_sync": syncs, "cpu": cpu, "lag": lag,
                   "read_scaling": scale, "server_commands": commands}, f, indent=2, default=str)
    red = {x["replica"]: x["seconds"] for x in syncs if x["master"] == "redis"}
    md = [f"# {args.scenario}: replication, shardis vs Redis", "",
          f"- commit: `{meta['commit']}`", f"- machine: {meta['cpu']}, {meta['cores']} cores, kernel {meta['kernel']}",
          f"- tool: `tools/bench.sh {shlex.join(sys.argv[1:])}`",
          f"- masters on cores {mcores}, replicas on core(s) {rcores}, loads on {args.client_cores}",
          "", "Masters:", ""] + [f"- `{c}`" for c in dict.fromkeys(commands)] + [
          "", f"## Full sync of {n_keys} string keys", "",
          "From starting the replica to its link up, sync over and DBSIZE complete (Redis master "
          "with `repl-diskless-sync-delay 0`).", "",
          "| master | replica | seconds | x Redis->Redis |", "|---|---|---|---|"]
    for x in syncs:
        rr = red.get("redis")
        md.append(f"| {x['master']} | {x['replica']} | {x['seconds']} | "
                  f"{x['seconds'] / rr:.2f} |" if rr else f"| {x['master']} | {x['replica']} | {x['seconds']} | - |")
    md += ["", "## Master CPU per SET, alone and with a stock Redis replica", "",
           f"`redis-benchmark -c {args.clients} -n N -P P -t set -d {args.value_size} -r {args.keyspace}`, "
           f"median of {args.repeat}, server CPU from /proc.", "",
           "| master | pipeline | alone us/req | with replica us/req | ratio |", "|---|---|---|---|---|"]
    for x in cpu:
        md.append(f"| {x['master']} | {x['pipeline']} | {x['none_us']} | {x['replica_us']} | {x['ratio']} |")
    md += ["", "## Replica lag during that load", "",
           "A run of its own (not the CPU runs above), sampled every 2 ms: bytes the replica is "
           "behind, and the time until it reached each sample's master offset (INFO replication "
           "on both; a 2 ms resolution).", "",
           "| master | pipeline | samples | bytes p50 | bytes p99 | ms p50 | ms p99 |", "|---|---|---|---|---|---|---|"]
    for x in lag:
        md.append(f"| {x['master']} | {x['pipeline']} | {x['samples']} | {x['bytes_p50']} | {x['bytes_p99']} | "
                  f"{x['ms_p50']} | {x['ms_p99']} |")
    md += ["", "## Read scaling: a master and two replicas", "",
           f"GETs (`redis-benchmark -c {max(1, args.clients // 2)} -t get -r {args.keyspace}` per replica, "
           f"two at once on core {args.client_cores}) over keys preloaded by a SET run on the master; "
           f"one replica on core(s) {mcores} with the master, the other on {rcores}.", "",
           "| kind | pipeline | GET/s, both replicas | replicas' CPU us per GET |", "|---|---|---|---|"]
    for x in scale:
        md.append(f"| {x['kind']} | {x['pipeline']} | {fmt(x['ops'], 0)} | {x['replica_cpu_us_per_get']} |")
    with open(base + ".md", "w") as f:
        f.write("\n".join(md) + "\n")
    print("\n".join(md))
    print(f"\nresults: {os.path.relpath(base, ROOT)}.md (.json)")


def uptime_load():
    try:
        with open("/proc/loadavg") as f:
            return f.read().split()[0]
    except OSError:
        return "?"


def run_ab(args, meta, variants, shards, pipelines, tests, write_file):
    """Paired, interleaved runs: all servers up at once, each workload run on each server in
    turn, order rotated per repeat; ratios are computed per repeat against the first variant."""
    servers = []
    try:
        if not args.no_redis:
            servers.append(start_redis(args.server_cores))
        for name, binary, extra in variants:
            servers.append(start_shardis(binary, shards, args.server_cores, name or "shardis", extra))
        if any(t.lower() in MEMTIER_TESTS for t in tests):
            for srv in servers:
                log(f"{srv.name}: preloading memtier's {args.keyspace} keys")
                preload = memtier_preload(srv, args)
        runs = {}  # (server, test, pipeline) -> [row per repeat]
        total = args.repeat * len(pipelines) * len(tests) * len(servers)
        done = 0
        for rep in range(args.repeat):
            for p in pipelines:
                for t in tests:
                    k = rep % len(servers)
                    order = servers[k:] + servers[:k]
                    for srv in order:
                        done += 1
                        r = run_redis_benchmark(srv, t, p, args)
                        r["server"] = srv.name
                        r["repeat"] = rep
                        r["load"] = uptime_load()
                        runs.setdefault((srv.name, t.upper(), p), []).append(r)
                        log(f"[{done}/{total}] rep {rep} {srv.name:<10} {t.upper()} P{p}: "
                            f"{r['cpu_us_per_req']:.3f} us/req, {fmt(r['ops'], 0)} ops/s, load {r['load']}")
    finally:
        for srv in servers:
            srv.stop()
    base_name = servers[1 if not args.no_redis else 0].name
    names = [s.name for s in servers]
    med = lambda v: sorted(v)[len(v) // 2] if v else None
    header = (f"{'workload':<18} {'server':<12} {'median us/req':>13} {'all runs (us/req)':<40} "
              f"{'x ' + base_name + ' (median of paired)':>28} {'x redis':>8} {'ops/s':>9} "
              f"{'p50 ms':>7} {'p99 ms':>7} {'cs/req':>7} {'sys %':>6}")
    print()
    print(header)
    rows, lines = [], [header]
    for p in pipelines:
        for t in tests:
            T = t.upper()
            for n in names:
                rs = runs[(n, T, p)]
                cpu = [r["cpu_us_per_req"] for r in rs]
                base = runs[(base_name, T, p)]
                paired = [a["cpu_us_per_req"] / b["cpu_us_per_req"] for a, b in zip(rs, base)]
                vs_redis = None
                if not args.no_redis:
                    red = runs[("redis", T, p)]
                    vs_redis = med([a["cpu_us_per_req"] / b["cpu_us_per_req"] for a, b in zip(rs, red)])
                line = (f"{T + ' P' + str(p):<18} {n:<12} {med(cpu):>13.3f} "
                        f"{' '.join(f'{c:.3f}' for c in cpu):<40} {med(paired):>28.3f} "
                        f"{fmt(vs_redis, 3) if vs_redis else '-':>8} "
                        f"{med([r['ops'] or 0 for r in rs]):>9.0f} {med([r['p50_ms'] or 0 for r in rs]):>7.3f} "
                        f"{med([r['p99_ms'] or 0 for r in rs]):>7.3f} "
                        f"{med([r['ctx_switches_per_req'] for r in rs]):>7.3f} "
                        f"{fmt(med([r['sys_frac'] * 100 for r in rs if r.get('sys_frac') is not None]), 0):>6}")
                print(line)
                lines.append(line)
                rows.append({"server": n, "test": T, "pipeline": p, "cpu_us_per_req": med(cpu),
                             "runs": rs, "paired_vs_first": med(paired), "vs_redis": vs_redis})
    if write_file:
        os.makedirs(os.path.join(ROOT, "bench-results"), exist_ok=True)
        stem = f"{dt.date.today().isoformat()}_{meta['commit']}_{args.scenario}"
        base = os.path.join(ROOT, "bench-results", stem)
        with open(base + ".json", "w") as f:
            json.dump({"meta": meta, "args": vars(args), "rows": rows,
                       "server_commands": [" ".join(s.cmd) for s in servers]}, f, indent=2)
        md = [f"# {args.scenario}: paired A/B", "", f"- commit: `{meta['commit']}`",
              f"- machine: {meta['cpu']}, {meta['cores']} cores, kernel {meta['kernel']}",
              f"- tool: `tools/bench.sh {shlex.join(sys.argv[1:])}`", "", "Servers:", ""]
        md += [f"- `{shlex.join(s.cmd)}`" for s in servers]
        md += ["", "Load generator, per workload and round (N = requests, x4 at pipeline >= 8):", "",
               f"- `taskset -c {args.client_cores} redis-benchmark "
               + ("--tls --cacert CA -p TLSPORT " if TLS["dir"] else "-p PORT ")
               + f"-c {args.clients} -n N -P P "
               f"-t TEST -d {args.value_size} -r {args.keyspace} --precision 3` for TEST in "
               + ", ".join(t.lower() for t in tests if t.lower() != "mixed")]
        if any(t.lower() == "mixed" for t in tests):
            md += [f"- MIXED: `taskset -c {args.client_cores} target/release/examples/loadgen --port PORT "
                   f"--clients {args.clients} --requests N --pipeline P --ratio 1:10 "
                   f"--data-size {args.value_size} --key-max {args.keyspace}`"]
        mt = [t for t in tests if t.lower() in MEMTIER_TESTS]
        if mt:
            md += [f"- memtier keys preloaded once per server: `{preload}`",
                   f"- {', '.join(t.upper() for t in mt)}: `taskset -c {args.client_cores} "
                   f"memtier_benchmark -s 127.0.0.1 -p PORT --protocol=redis --ratio=R "
                   f"--key-pattern=R:R --key-minimum=1 --key-maximum={args.keyspace} "
                   f"-d {args.value_size} -c {args.clients} -t 1 --pipeline=P -n N/{args.clients} "
                   f"--hide-histogram` with R = "
                   + ", ".join(f"{MEMTIER_TESTS[t.lower()]} ({t.lower()})" for t in mt)]
        md += ["", "```"] + lines + ["```", ""]
        with open(base + ".md", "w") as f:
            f.write("\n".join(md))
        print(f"\nresults: {os.path.relpath(base, ROOT)}.md (.json)")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=["compare", "scaling", "memory-types", "ab", "memtier",
                             "persistence", "replication"],
                    default="compare")
    ap.add_argument("--scenario", default=None, help="name used in the results file (default: the mode)")
    ap.add_argument("--server-cores", default="0", help="cores for the servers (shardis --cores, taskset for Redis)")
    ap.add_argument("--client-cores", default="1", help="cores for the load generator (taskset)")
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--requests", type=int, default=200000)
    ap.add_argument("--pipelines", default="1,16")
    ap.add_argument("--tests", default=None,
                    help="redis-benchmark tests (-t names such as set, get, incr), 'mixed': "
                         "SET:GET 1:10 interleaved on every connection (examples/loadgen.rs), "
                         "and memtier_benchmark's memtier-mixed (1:10), memtier-get, memtier-set "
                         "(default: set,get,mixed plus the three memtier ones when memtier "
                         "builds; --mode memtier: the memtier ones)")
    ap.add_argument("--value-size", type=int, default=32)
    ap.add_argument("--keyspace", type=int, default=100000, help="redis-benchmark -r (random keys)")
    ap.add_argument("--mem-keys", type=int, default=1000000, help="keys for the memory load (0 = skip)")
    ap.add_argument("--shards", default=None, help="shardis shard counts: compare uses the first (default: number of server cores); scaling uses each (default 1..number of server cores); memory-types uses each (default 1 and the number of cores, shardis's own default)")
    ap.add_argument("--datasets", dest="datasets_sel", default="strings,hashes,sets,zsets,all",
                    help="memory-types: datasets to load, each into fresh servers (all = the four together)")
    ap.add_argument("--string-keys", type=int, default=1000000, help="memory-types: string keys")
    ap.add_argument("--coll-keys", type=int, default=100000, help="memory-types: hash/set/zset keys")
    ap.add_argument("--coll-members", type=int, default=10, help="memory-types: fields/members per collection")
    ap.add_argument("--persist-parts", default="save,under,aof",
                    help="persistence: which parts run (save = BGSAVE and load times, under = "
                         "a BGSAVE during writes, aof = CPU per SET with appendonly)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per workload; the median CPU/req is kept")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--no-redis", action="store_true", help="skip the stock Redis baseline")
    ap.add_argument("--nice", type=int, default=0,
                    help="run servers and load generator at this nice value (e.g. -10 on a "
                         "machine shared with other jobs; A/B runs only, never for published figures)")
    ap.add_argument("--tls", action="store_true",
                    help="redis-benchmark over TLS (both servers get a tls-port with the same "
                         "certificates); plain-TCP workloads are skipped")
    ap.add_argument("--shardis", action="append", default=[], metavar="NAME=CMD",
                    help="a shardis binary (plus extra flags) to run under NAME; repeatable")
    args = ap.parse_args()
    write_file = args.mode not in ("ab",) or args.scenario is not None
    Server.nice = args.nice
    args.scenario = args.scenario or args.mode
    ensure_tools()
    binary = os.environ.get("SHARDIS_BIN") or os.path.join(ROOT, "target", "release", "shardis")
    if not args.no_build:
        log("building shardis and the load generator (cargo build --release --bin shardis --example loadgen)")
        subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "shardis",
                        "--example", "loadgen"], cwd=ROOT, check=True)
    if args.mode == "memory-types":
        memtypes_main(args, binary, machine())
        return
    if args.mode == "persistence":
        persist_main(args, binary, machine())
        return
    if args.mode == "replication":
        repl_main(args, binary, machine())
        return
    ncores = len(args.server_cores.replace("-", ",").split(","))
    if args.shards:
        shard_counts = [int(x) for x in args.shards.split(",")]
    elif args.mode == "scaling":
        shard_counts = list(range(1, max(2, ncores) + 1))
    else:
        shard_counts = [ncores]
    if args.mode == "compare":
        shard_counts = shard_counts[:1]
    pipelines = [int(p) for p in args.pipelines.split(",")]
    if args.tests is None:
        args.tests = ",".join(MEMTIER_TESTS) if args.mode == "memtier" else "set,get,mixed"
        if args.mode == "compare" and not args.tls and memtier_bin():
            args.tests += "," + ",".join(MEMTIER_TESTS)
    tests = [t.strip() for t in args.tests.split(",") if t.strip()]
    if any(t.lower() in MEMTIER_TESTS for t in tests) and not memtier_bin():
        sys.exit("memtier_benchmark is not on PATH and ../shared/tools/build-memtier.sh "
                 "could not build it")
    if args.tls:
        make_certs()
        # The load generator, memtier runs and the memory load speak plain TCP only.
        tests = [t for t in tests if t.lower() != "mixed" and t.lower() not in MEMTIER_TESTS]
        args.mem_keys = 0
    meta = machine()
    variants = []
    for spec in args.shardis:
        name, _, cmd = spec.partition("=")
        parts = shlex.split(cmd)
        if not name or not parts:
            sys.exit(f"--shardis wants NAME=CMD, got {spec!r}")
        exe = parts[0]
        if not os.path.isabs(exe) and os.path.exists(os.path.join(ROOT, exe)):
            exe = os.path.join(ROOT, exe)
        variants.append((name, exe, parts[1:]))
    if not variants:
        variants = [(None, binary, [])]
    if args.mode in ("ab", "memtier"):
        run_ab(args, meta, variants, shard_counts[0], pipelines, tests, write_file)
        return
    rows, mem, notes, commands = [], [], [], []
    if args.tls:
        notes.append("Over TLS: redis-benchmark --tls --cacert CA -p TLSPORT against both "
                     "servers' tls-port (same CA and server certificate, RSA 2048, "
                     "tls-auth-clients no); the mixed workload, memtier and the memory load "
                     "are skipped.")
    servers = [("redis", None)] if not args.no_redis else []
    servers += [(f"shardis-{n}sh", n) for n in shard_counts]
    total = len(servers) * len(pipelines) * len(tests) * args.repeat
    done = 0
    for name, shards in servers:
        vname, vbin, vextra = variants[0]
        srv = start_redis(args.server_cores) if shards is None else start_shardis(vbin, shards, args.server_cores, vname, vextra)
        commands.append(shlex.join(srv.cmd))
        try:
            if any(t.lower() in MEMTIER_TESTS for t in tests):
                log(f"{name}: preloading memtier's {args.keyspace} keys")
                commands.append("memtier preload: " + memtier_preload(srv, args))
            for p in pipelines:
                for t in tests:
                    runs = []
                    for _ in range(args.repeat):
                        done += 1
                        tool = ("loadgen" if t.lower() == "mixed" else "memtier_benchmark"
                                if t.lower() in MEMTIER_TESTS else "redis-benchmark")
                        log(f"[{done}/{total}] {name}: {tool} {t.upper()} P{p} ({args.requests} requests)")
                        runs.append(run_redis_benchmark(srv, t, p, args))
                    runs.sort(key=lambda r: r["cpu_us_per_req"])
                    r = runs[len(runs) // 2]
                    r["server"] = name
                    rows.append(r)
            if args.mode == "compare":
                if args.mem_keys > 0:
                    log(f"{name}: memory load of {args.mem_keys} keys")
                    m = memory_load(srv, args)
                    m["server"] = name
                    mem.append(m)
        finally:
            srv.stop()
    base = write_results(args, meta, rows, mem, notes, commands)
    summary(rows, mem)
    print(f"\nresults: {os.path.relpath(base, ROOT)}.md (.json, .svg)")


if __name__ == "__main__":
    main()
