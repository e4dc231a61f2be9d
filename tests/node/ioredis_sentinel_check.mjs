// ioredis, the Node.js client BullMQ is built on, in Sentinel mode against shardis sentinels
// (run by tests/sentinel.rs).
//
//   node ioredis_sentinel_check.mjs MASTER_NAME SENTINEL_PORT...
//
// One client on the master (`sentinels` + `name`) INCRs a counter in a loop; one on a replica
// (`role: 'slave'`) reads it. Prints `MASTER <port>` once the first INCR succeeded, then
// keeps writing while the test SIGKILLs that master. ioredis asks the sentinels again when
// its connection drops; once a write lands on another master the script prints
// `SWITCHED <port> <acknowledged INCRs> <errors> <counter on the new master>` and, after
// 200 more INCRs there, `DONE <counter> <replica read>` and exits 0. Exits 1 after 30 s.

import Redis from 'ioredis';

const [name, ...ports] = process.argv.slice(2);
const sentinels = ports.map((port) => ({ host: '127.0.0.1', port: Number(port) }));
const opts = { sentinels, name, maxRetriesPerRequest: null, enableOfflineQueue: true };
const master = new Redis(opts);
const replica = new Redis({ ...opts, role: 'slave' });
// Connection errors during the failover are expected; the loop counts failed commands.
master.on('error', () => {});
replica.on('error', () => {});

const port = async () => Number((await master.info('server')).match(/tcp_port:(\d+)/)[1]);

let ok = 0;
let errors = 0;
let first = null;
const t0 = Date.now();
while (Date.now() - t0 < 30000) {
  try {
    await master.incr('ioredis:counter');
    ok += 1;
    if (first === null) {
      first = await port();
      console.log(`MASTER ${first}`);
    } else if (ok % 20 === 0) {
      const now = await port();
      if (now !== first) {
        const counter = Number(await master.get('ioredis:counter'));
        console.log(`SWITCHED ${now} ${ok} ${errors} ${counter}`);
        for (let i = 0; i < 200; i += 1) await master.incr('ioredis:counter');
        const after = Number(await master.get('ioredis:counter'));
        // The replica client follows the new topology too; give replication a moment.
        let seen = -1;
        for (let i = 0; i < 100 && seen !== after; i += 1) {
          try {
            seen = Number(await replica.get('ioredis:counter'));
          } catch (e) {
            // reconnecting
          }
          if (seen !== after) await new Promise((r) => setTimeout(r, 50));
        }
        console.log(`DONE ${after} ${seen}`);
        master.disconnect();
        replica.disconnect();
        process.exit(0);
      }
    }
  } catch (e) {
    errors += 1;
    await new Promise((r) => setTimeout(r, 20));
  }
}
console.error(`no switch: ${ok} writes, ${errors} errors`);
process.exit(1);
