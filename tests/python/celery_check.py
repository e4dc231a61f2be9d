"""A real Celery workload against a Redis-compatible server (run by tests/celery.rs against
shardis; works as well against a stock redis-server).

    python3 celery_check.py PORT

Redis is both the broker (db 0: kombu's list queues popped with BRPOP, the unacked hash and
its ZSET index for late acks, fanout over PUBLISH/PSUBSCRIBE for remote control) and the
result backend (db 1: SETEX results, SUBSCRIBE on each task's channel, chord counters with
MULTI/EXEC). The script starts one worker (4 processes, acks late) as a subprocess, then
runs: 200 `add` tasks, a group, a chord, a chain, tasks that retry twice before succeeding,
a countdown task and a remote-control ping, checking every result. It prints `ALL OK` and
exits 0, or the failure and exits 1. The worker is stopped before exiting either way.
"""
import os
import subprocess
import sys
import time

from celery import Celery, chain, chord, group

PORT = os.environ.get("CELERY_CHECK_PORT", "6379")
app = Celery("celery_check", broker=f"redis://127.0.0.1:{PORT}/0",
             backend=f"redis://127.0.0.1:{PORT}/1")
app.conf.update(task_acks_late=True, result_expires=600, worker_prefetch_multiplier=4,
                broker_connection_retry_on_startup=True, worker_hijack_root_logger=False)


@app.task
def add(x, y):
    return x + y


@app.task(bind=True, max_retries=3, default_retry_delay=0.2)
def flaky(self, n):
    if self.request.retries < 2:
        raise self.retry(exc=ValueError("again"))
    return n * 10


@app.task
def total(xs):
    return sum(xs)


@app.task
def nap(n):
    time.sleep(0.01)
    return n


def check():
    t0 = time.time()
    rs = [add.delay(i, i) for i in range(200)]
    assert [r.get(timeout=30) for r in rs] == [2 * i for i in range(200)], "add"
    assert group(nap.s(i) for i in range(50))().get(timeout=30) == list(range(50)), "group"
    got = chord((add.s(i, 1) for i in range(30)), total.s())().get(timeout=30)
    assert got == sum(i + 1 for i in range(30)), f"chord {got}"
    assert chain(add.s(1, 2), add.s(3), add.s(4))().get(timeout=30) == 10, "chain"
    fs = [flaky.delay(i) for i in range(10)]
    assert [r.get(timeout=30) for r in fs] == [i * 10 for i in range(10)], "retries"
    r = add.apply_async((1, 2), countdown=1)
    assert r.get(timeout=30) == 3, "countdown"
    pong = app.control.inspect(timeout=3).ping() or {}
    assert any(v == {"ok": "pong"} for v in pong.values()), f"inspect ping {pong}"
    print(f"ALL OK {time.time() - t0:.2f}s", flush=True)


if __name__ == "__main__":
    PORT = sys.argv[1]
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, CELERY_CHECK_PORT=PORT)
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "celery_check", "worker", "--loglevel=warning",
         "--concurrency=4", "-n", f"check{PORT}@%h", "--without-gossip", "--without-mingle"],
        cwd=here, env=env)
    try:
        app.conf.broker_url = f"redis://127.0.0.1:{PORT}/0"
        app.conf.result_backend = f"redis://127.0.0.1:{PORT}/1"
        check()
        code = 0
    except Exception as e:  # noqa: BLE001 - any failure is the check's failure
        print(f"FAILED: {e!r}", flush=True)
        code = 1
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
    sys.exit(code)
