// node-redis (the `redis` package) in Sentinel mode (`createSentinel`) against shardis
// sentinels (run by tests/sentinel.rs), with the output ioredis_sentinel_check.mjs prints.
//
//   node node_redis_sentinel_check.mjs MASTER_NAME SENTINEL_PORT...
//
// One sentinel client (RESP3, as node-redis asks) INCRs a counter in a loop. Prints
// `MASTER <port>` once the first INCR succeeded, then keeps writing while the test SIGKILLs
// that master. node-redis re-reads the topology from the sentinels on their pub/sub events
// (`+sdown`, `+odown`, `+slave`, ...) and skips a master they report `disconnected` or
// `s_down`. Once a write lands on another master it prints `SWITCHED <port> <acknowledged
// INCRs> <errors> <counter on the new master>`, then after 200 more INCRs `DONE <counter>
// <counter>` (no replica-role client here) and exits 0. Exits 1 after 30 s, with the
// client's trace.

import { createSentinel } from 'redis';

const [name, ...ports] = process.argv.slice(2);
const sentinel = createSentinel({
  name,
  sentinelRootNodes: ports.map((port) => ({ host: '127.0.0.1', port: Number(port) })),
  RESP: 3,
});
const trace = [];
sentinel.setTracer(trace);
sentinel.on('error', (e) => trace.push(`error: ${e}`));
await sentinel.connect();

const port = async () => Number((await sentinel.info('server')).match(/tcp_port:(\d+)/)[1]);
const deadline = setTimeout(() => {
  console.error(`no switch within 30 s; trace:\n${trace.slice(-40).join('\n')}`);
  process.exit(1);
}, 30000);

let ok = 0;
let errors = 0;
let first = null;
for (;;) {
  try {
    await sentinel.incr('noderedis:counter');
    ok += 1;
    if (first === null) {
      first = await port();
      console.log(`MASTER ${first}`);
    } else if (ok % 20 === 0) {
      const now = await port();
      if (now !== first) {
        const counter = Number(await sentinel.get('noderedis:counter'));
        console.log(`SWITCHED ${now} ${ok} ${errors} ${counter}`);
        for (let i = 0; i < 200; i += 1) await sentinel.incr('noderedis:counter');
        const after = Number(await sentinel.get('noderedis:counter'));
        console.log(`DONE ${after} ${after}`);
        clearTimeout(deadline);
        await sentinel.close();
        process.exit(0);
      }
    }
  } catch (e) {
    errors += 1;
    await new Promise((r) => setTimeout(r, 20));
  }
}
