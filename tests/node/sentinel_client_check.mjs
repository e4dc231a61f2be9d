// A Node.js client in Sentinel mode against shardis sentinels, through a failover (run by
// tests/sentinel.rs).
//
//   node sentinel_client_check.mjs CLIENT MASTER_NAME SENTINEL_PORT...
//
// CLIENT is `ioredis` (the client BullMQ is built on: `sentinels` + `name`, and a second
// client with `role: 'slave'`) or `node-redis` (`createSentinel`, RESP3 as it asks; it
// re-reads the topology on the sentinels' `+sdown`/`+odown`/`+slave` events and skips a
// master they flag `disconnected` or `s_down`).
//
// The client INCRs a counter in a loop. Prints `MASTER <port>` once the first INCR succeeded,
// then keeps writing while the test SIGKILLs that master. Once a write lands on another
// master it prints `SWITCHED <port> <acknowledged INCRs> <errors> <counter on the new
// master>`, then after 200 more INCRs `DONE <counter> <replica read>` (ioredis's replica
// client reads it from the other replica; node-redis has no replica client here and
// repeats the counter) and exits 0. Exits 1 after 30 s, with node-redis's trace.

import Redis from 'ioredis';
import { createSentinel } from 'redis';

const [kind, name, ...ports] = process.argv.slice(2);
const sentinels = ports.map((port) => ({ host: '127.0.0.1', port: Number(port) }));
const trace = [];

async function open() {
  if (kind === 'ioredis') {
    const opts = { sentinels, name, maxRetriesPerRequest: null, enableOfflineQueue: true };
    const master = new Redis(opts);
    const replica = new Redis({ ...opts, role: 'slave' });
    // Connection errors during the failover are expected; the loop counts failed commands.
    master.on('error', () => {});
    replica.on('error', () => {});
    return {
      master,
      readReplica: (key) => replica.get(key),
      close: () => {
        master.disconnect();
        replica.disconnect();
      },
    };
  }
  const master = createSentinel({ name, sentinelRootNodes: sentinels, RESP: 3 });
  master.setTracer(trace);
  master.on('error', (e) => trace.push(`error: ${e}`));
  await master.connect();
  return { master, readReplica: (key) => master.get(key), close: () => master.close() };
}

const { master, readReplica, close } = await open();
const key = `${kind}:counter`;
const port = async () => Number((await master.info('server')).match(/tcp_port:(\d+)/)[1]);
const deadline = setTimeout(() => {
  console.error(`no switch within 30 s; trace:\n${trace.slice(-40).join('\n')}`);
  process.exit(1);
}, 30000);

let ok = 0;
let errors = 0;
let first = null;
for (;;) {
  try {
    await master.incr(key);
    ok += 1;
    if (first === null) {
      first = await port();
      console.log(`MASTER ${first}`);
    } else if (ok % 20 === 0) {
      const now = await port();
      if (now !== first) {
        const counter = Number(await master.get(key));
        console.log(`SWITCHED ${now} ${ok} ${errors} ${counter}`);
        for (let i = 0; i < 200; i += 1) await master.incr(key);
        const after = Number(await master.get(key));
        // The replica follows the new master; give replication a moment.
        let seen = -1;
        for (let i = 0; i < 100 && seen !== after; i += 1) {
          try {
            seen = Number(await readReplica(key));
          } catch (e) {
            // reconnecting
          }
          if (seen !== after) await new Promise((r) => setTimeout(r, 50));
        }
        console.log(`DONE ${after} ${seen}`);
        clearTimeout(deadline);
        await close();
        process.exit(0);
      }
    }
  } catch (e) {
    errors += 1;
    await new Promise((r) => setTimeout(r, 20));
  }
}
