#!/usr/bin/env python3
"""Master CPU per SET with a replica attached, against none (issue 13).

Usage: tools/repl_cpu.py BIN[,BIN...] [ROUNDS] [--redis] [--replica=redis|shardis] [--ack]
                          [--backlog=SIZE] [--replica-core=N]

Each round starts every binary in turn as a 1-shard master pinned to core 0, runs
redis-benchmark (-c 50 -t set -d 32 -r 100000, P1 and P16) on core 1 with no replica and
then with a replica (on core 1): a stock redis-server (the default) or, with
--replica=shardis, a 1-shard shardis of the same binary. It reads the master's CPU time from
/proc/PID/task/*/schedstat. With --redis, stock redis-server is measured the same way as
the last "binary" (its replica is always a stock redis-server). With --ack, the shardis
masters run with `min-replicas-ack 1` while the replica is attached (zero acknowledged-write
loss: each write's reply waits for the replica's acknowledgement), so "replica" is the cost
of the setting plus the replica. With --backlog=SIZE every master (stock Redis too) runs with `repl-backlog-size SIZE`
(default: 1mb, Redis's). With --replica-core=N the replica runs on core N instead of core 1
(core 0 keeps it off the load generator's core: on a 2-core machine a replica sharing core 1
with redis-benchmark slows the client, so every master wakes for fewer requests and costs
more per request, Redis included). Prints medians per binary: us/req without and with the
replica, ratio.
"""
import subprocess, time, socket, os, sys
args=[a for a in sys.argv[1:] if not a.startswith("--")]
BINS=args[0].split(",")
ROUNDS=int(args[1]) if len(args)>1 else 3
REPLICA="redis"
for a in sys.argv[1:]:
    if a.startswith("--replica="):
        REPLICA=a.split("=",1)[1]
ACK="--ack" in sys.argv
RCORE="1"
for a in sys.argv[1:]:
    if a.startswith("--replica-core="):
        RCORE=a.split("=",1)[1]
BACKLOG=[]
for a in sys.argv[1:]:
    if a.startswith("--backlog="):
        BACKLOG=["--repl-backlog-size",a.split("=",1)[1]]
if "--redis" in sys.argv:
    BINS.append("redis-server")
def cpu(pid):
    t=0
    for tid in os.listdir(f"/proc/{pid}/task"):
        t+=int(open(f"/proc/{pid}/task/{tid}/schedstat").read().split()[0])
    return t/1e9
def bindable(p):
    s=socket.socket(); s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)
    try:
        s.bind(("0.0.0.0",p)); return True
    except OSError:
        return False
    finally:
        s.close()
def free(p):
    # Builds before the twenty-third session held their port for a few ms after exit
    # (io_uring tore the listeners down after the process was gone).
    for _ in range(500):
        if bindable(p): return
        time.sleep(0.01)
def ping(p):
    for _ in range(100):
        try:
            s=socket.create_connection(("127.0.0.1",p),timeout=0.5); s.sendall(b"PING\r\n")
            if s.recv(10).startswith(b"+PONG"): return
        except OSError: pass
        time.sleep(0.05)
def cli(port,*a):
    return subprocess.run(["redis-cli","-p",str(port),*a],capture_output=True,text=True).stdout
def online(port):
    for _ in range(100):
        if "state=online" in cli(port,"info","replication"): return
        time.sleep(0.05)
def bench(port,pid,P):
    n=1000000 if P>1 else 200000
    c0=cpu(pid)
    # A server that died (a port still taken) must stop the run, not leave the load
    # generator retrying for ever.
    subprocess.run(["taskset","-c","1","redis-benchmark","-p",str(port),"-c","50","-n",str(n),"-P",str(P),"-t","set","-d","32","-r","100000","-q"],capture_output=True,timeout=600)
    return (cpu(pid)-c0)*1e6/n
res={}
for rnd in range(ROUNDS):
    for b in BINS:
        if b=="redis-server":
            cmd=["taskset","-c","0","redis-server","--port","7810","--save","","--loglevel","warning"]+BACKLOG
        else:
            cmd=[b,"--port","7810","--shards","1","--cores","0","--save","","--loglevel","warning"]+BACKLOG
        # Logs go to /tmp/repl_cpu.{master,replica}.log (a run that stalls says why there).
        free(7810); free(7811)
        m=subprocess.Popen(cmd,stdout=open("/tmp/repl_cpu.master.log","w"),stderr=subprocess.STDOUT)
        ping(7810)
        if m.poll() is not None:
            sys.exit(f"{b} exited at start: see /tmp/repl_cpu.master.log")
        for P in (1,16):
            res.setdefault((b,"none",P),[]).append(bench(7810,m.pid,P))
        if REPLICA=="shardis" and b!="redis-server":
            rcmd=["taskset","-c",RCORE,b,"--port","7811","--shards","1","--save","","--replicaof","127.0.0.1","7810","--loglevel","warning","--dir","/tmp"]
        else:
            rcmd=["taskset","-c",RCORE,"redis-server","--port","7811","--save","","--replicaof","127.0.0.1","7810","--loglevel","warning","--dir","/tmp"]
        r=subprocess.Popen(rcmd,stdout=open("/tmp/repl_cpu.replica.log","w"),stderr=subprocess.STDOUT)
        ping(7811); online(7810); time.sleep(1.0)
        if ACK and b!="redis-server":
            cli(7810,"config","set","min-replicas-ack","1")
        for P in (1,16):
            res.setdefault((b,"replica",P),[]).append(bench(7810,m.pid,P))
        r.terminate(); m.terminate(); r.wait(); m.wait()
import statistics as st
print(f"replica: {REPLICA} on core {RCORE}{', min-replicas-ack 1' if ACK else ''}{', master ' + ' '.join(BACKLOG) if BACKLOG else ''}; {ROUNDS} rounds")
for b in BINS:
    for P in (1,16):
        a,c=st.median(res[(b,"none",P)]),st.median(res[(b,"replica",P)])
        print(f"{os.path.basename(b)} P{P}: none {a:.3f} us/req {['%.3f'%x for x in res[(b,'none',P)]]}, replica {c:.3f} {['%.3f'%x for x in res[(b,'replica',P)]]}: {c/a:.2f}x")
