// A real BullMQ workload against a Redis-compatible server (run by tests/bullmq.rs against
// shardis; works as well against a stock redis-server).
//
//   node bullmq_check.mjs PORT [QUEUE_NAME]
//
// Environment: BULLMQ_JOBS (jobs that complete; default 200, at least 50), BULLMQ_DEADLINE_MS
// (default 60000), BULLMQ_HOST (default 127.0.0.1), BULLMQ_PREFIX (BullMQ's key prefix,
// default `bull`; `{bull}` puts every key of the queue in one hash slot, as on Redis Cluster).
//
// One Queue, one Worker (concurrency 8) and one QueueEvents (an XREAD BLOCK loop on
// bull:<queue>:events) on a fresh queue. BULLMQ_JOBS jobs that complete: plain ones added one
// by one and in bulk, delayed ones, prioritized ones, "flaky" ones with `attempts: 3` whose
// processor throws on the first two attempts (half retried at once, half after a fixed
// backoff), a parent/children flow and a job scheduler that repeats 3 times. Besides them,
// 4 jobs with `attempts: 2` that always throw and end failed. Every job reports progress
// and writes one log line per attempt.
//
// BullMQ's event stream has no `failed` event for an attempt that is retried: the retry shows
// as `waiting` (immediate) or `delayed` (backoff), and `failed` comes once, when the attempts
// run out. So the check waits until QueueEvents has reported `completed` for every job that
// completes, the retry events for every failed attempt of the flaky jobs, `failed` and
// `retries-exhausted` for the doomed ones and `progress` for every job, and the Worker's
// `completed` handler has seen each job exactly once (its `failed` handler every deliberate
// failure); then checks the job counts, the return values (as stored and as carried by the
// events), the failure reasons, the logs, the flow's children values and the order the
// prioritized jobs were taken in (from the stream's `active` events). On success it
// prints one JSON line starting with {"ok":true and exits 0; on any failure or timeout it
// prints the reason on stderr and exits 1 (2 on the deadline).

import { Queue, Worker, QueueEvents, FlowProducer } from 'bullmq';

const port = Number(process.argv[2]);
if (!Number.isInteger(port) || port <= 0) {
  console.error('usage: node bullmq_check.mjs PORT [QUEUE_NAME]');
  process.exit(64);
}
const host = process.env.BULLMQ_HOST || '127.0.0.1';
const queueName = process.argv[3] || `check-${process.pid}-${Date.now().toString(36)}`;
const N = Math.max(50, Number(process.env.BULLMQ_JOBS || 200));
const prefix = process.env.BULLMQ_PREFIX || 'bull';
const deadlineMs = Number(process.env.BULLMQ_DEADLINE_MS || 60000);
const started = Date.now();

// Every connection gives up quickly instead of retrying forever: a server that drops or
// refuses us must fail the check, not hang it.
const connection = {
  host,
  port,
  maxRetriesPerRequest: null,
  retryStrategy: (times) => (times > 3 ? null : 100),
};

const problems = [];
const fail = (msg) => {
  if (problems.length < 50) problems.push(msg);
};

// What the workload expects.
const expected = new Map(); // jobId -> expected return value
const failingIds = new Set(); // jobs whose first two attempts throw
const backoffIds = new Set(); // the failing jobs retried after a backoff
const FAILS_PER_FAILING_JOB = 2;
const doomedIds = new Set(); // jobs that always throw
const DOOMED = 4;
const DOOMED_ATTEMPTS = 2;
const REPEATS = 3;
const schedulerId = 'every-150ms';

// What the worker and the events saw.
const workerCompleted = new Map(); // jobId -> times
const workerFailed = new Map(); // jobId -> times
const eventCompleted = new Map(); // jobId -> returnvalue (parsed by QueueEvents)
const eventCompletedTimes = new Map();
const eventFailed = new Map(); // jobId -> times
const eventExhausted = new Map(); // jobId -> times
const eventRetried = new Map(); // jobId -> `waiting` after `active` or `delayed` events of failing jobs
const eventFailedReason = new Map();
const eventProgress = new Map(); // jobId -> last progress data
const repeatJobIds = new Set();
const prioIds = []; // in the order they were added

const result = (name, i) => ({ name, i, twice: i * 2, text: `job-${i}-done` });

const queue = new Queue(queueName, { connection, prefix });
const queueEvents = new QueueEvents(queueName, { connection, prefix, lastEventId: '0-0' });
const flows = new FlowProducer({ connection, prefix });
const errorEvents = [];
for (const [what, emitter] of [
  ['queue', queue],
  ['queueEvents', queueEvents],
  ['flowProducer', flows],
]) {
  emitter.on('error', (e) => errorEvents.push(`${what}: ${e && e.message}`));
}

let worker;
let finished = false;

async function closeAll() {
  const closers = [];
  if (worker) closers.push(worker.close(true));
  closers.push(queueEvents.close(), flows.close(), queue.close());
  await Promise.race([
    Promise.allSettled(closers),
    new Promise((r) => setTimeout(r, 5000)),
  ]);
}

function snapshot() {
  return (
    `worker completed ${workerCompleted.size}/${expected.size}, ` +
    `events completed ${eventCompleted.size}/${expected.size}, ` +
    `events retried ${sum(eventRetried)}/${failingIds.size * FAILS_PER_FAILING_JOB}, ` +
    `events failed ${sum(eventFailed)}/${doomedIds.size}, ` +
    `progress ${eventProgress.size}/${expected.size}, ` +
    `missing completions: ${[...expected.keys()].filter((id) => !eventCompleted.has(id)).slice(0, 10).join(',')}`
  );
}

const sum = (m) => [...m.values()].reduce((a, b) => a + b, 0);
const bump = (m, k) => m.set(k, (m.get(k) || 0) + 1);

const deadline = setTimeout(async () => {
  if (finished) return;
  console.error(`bullmq_check: TIMEOUT after ${deadlineMs} ms on queue ${queueName}: ${snapshot()}`);
  if (errorEvents.length) console.error(`errors seen: ${errorEvents.slice(0, 10).join(' | ')}`);
  await closeAll();
  process.exit(2);
}, deadlineMs);

async function main() {
  await queue.waitUntilReady();
  const client = await queue.client;
  const serverInfo = await client.info('server');
  const version = (/redis_version:(\S+)/.exec(serverInfo) || [])[1] || '?';
  await queueEvents.waitUntilReady();

  queueEvents.on('completed', ({ jobId, returnvalue }) => {
    bump(eventCompletedTimes, jobId);
    eventCompleted.set(jobId, returnvalue);
  });
  queueEvents.on('failed', ({ jobId, failedReason }) => {
    bump(eventFailed, jobId);
    eventFailedReason.set(jobId, failedReason);
  });
  queueEvents.on('retries-exhausted', ({ jobId }) => bump(eventExhausted, jobId));
  queueEvents.on('waiting', ({ jobId, prev }) => {
    if (prev === 'active' && failingIds.has(jobId) && !backoffIds.has(jobId)) bump(eventRetried, jobId);
  });
  queueEvents.on('delayed', ({ jobId }) => {
    if (backoffIds.has(jobId)) bump(eventRetried, jobId);
  });
  queueEvents.on('progress', ({ jobId, data }) => eventProgress.set(jobId, data));

  worker = new Worker(
    queueName,
    async (job) => {
      await job.updateProgress({ step: 'started', attempt: job.attemptsMade });
      await job.log(`attempt ${job.attemptsMade} of ${job.name}`);
      if (job.data.failTimes && job.attemptsMade < job.data.failTimes) {
        throw new Error(`deliberate failure ${job.attemptsMade + 1} of job ${job.id}`);
      }
      if (job.name === 'doomed') throw new Error(`doomed job ${job.id}, attempt ${job.attemptsMade + 1}`);
      if (job.data.slow) await new Promise((r) => setTimeout(r, 5));
      if (job.name === 'parent') {
        const children = await job.getChildrenValues();
        return { name: job.name, i: job.data.i, children: Object.values(children).map((c) => c.i).sort((a, b) => a - b) };
      }
      if (job.repeatJobKey) {
        repeatJobIds.add(job.id);
        return { repeat: true };
      }
      await job.updateProgress(100);
      return result(job.name, job.data.i);
    },
    // Started once the prioritized jobs wait (see below).
    { connection, prefix, concurrency: 8, drainDelay: 1, autorun: false },
  );
  worker.on('error', (e) => errorEvents.push(`worker: ${e && e.message}`));
  worker.on('completed', (job) => bump(workerCompleted, job.id));
  worker.on('failed', (job, err) => {
    if (!job) return errorEvents.push(`worker failed without a job: ${err && err.message}`);
    bump(workerFailed, job.id);
    if (!failingIds.has(job.id) && !doomedIds.has(job.id)) fail(`job ${job.id} failed unexpectedly: ${err && err.message}`);
  });
  await worker.waitUntilReady();

  // The jobs. i runs over every job but the flow's and the scheduler's.
  let i = 0;
  const plain = (n, extra = {}) => {
    const out = [];
    for (let k = 0; k < n; k++, i++) out.push({ name: 'plain', data: { i, ...extra.data }, opts: extra.opts || {} });
    return out;
  };
  const addOne = async ({ name, data, opts }) => {
    const job = await queue.add(name, data, opts);
    expected.set(job.id, result(name, data.i));
    if (data.failTimes) failingIds.add(job.id);
    return job;
  };
  const addMany = async (list) => {
    const jobs = await queue.addBulk(list);
    jobs.forEach((job, k) => {
      expected.set(job.id, result(list[k].name, list[k].data.i));
      if (list[k].data.failTimes) failingIds.add(job.id);
    });
  };

  // One by one, with custom ids for a few.
  for (const j of plain(10)) await addOne(j);
  await addOne({ name: 'custom-id', data: { i: i++ }, opts: { jobId: `custom-${queueName}` } });
  // Delayed.
  for (let k = 0; k < 10; k++) {
    await addOne({ name: 'delayed', data: { i: i++ }, opts: { delay: 200 + 40 * k } });
  }
  // Prioritized (lower number first, FIFO within a priority), added in one bulk before the
  // worker starts, so all of them wait together and it must take them in priority order.
  // (addBulk is a pipeline, not a MULTI: a running worker may take each job as it arrives,
  // on any server that serves other clients between pipelined commands; redis-server
  // happens not to within one read.)
  const prioJobs = Array.from({ length: 10 }, (_, k) => ({ name: 'prio', data: { i: i++ }, opts: { priority: 1 + (k % 5) } }));
  await addMany(prioJobs);
  const running = worker.run();
  running.catch((e) => errorEvents.push(`worker run: ${e && e.message}`));
  const prioAdded = [...expected.keys()].slice(-prioJobs.length);
  prioIds.push(...prioAdded);
  // Failing twice, then succeeding on the third attempt: retried at once or after a backoff.
  // (The sets are filled before the add: the worker may take a job before add() returns.)
  for (let k = 0; k < 6; k++) {
    const id = `flaky-${k}`;
    failingIds.add(id);
    if (k % 2) backoffIds.add(id);
    await addOne({
      name: 'flaky',
      data: { i: i++, failTimes: FAILS_PER_FAILING_JOB },
      opts: { jobId: id, attempts: 3, ...(k % 2 ? { backoff: { type: 'fixed', delay: 100 } } : {}) },
    });
  }
  // Failing for good.
  for (let k = 0; k < DOOMED; k++) {
    const id = `doomed-${k}`;
    doomedIds.add(id);
    await queue.add('doomed', { i: -100 - k }, { jobId: id, attempts: DOOMED_ATTEMPTS });
  }
  // A flow: a parent completed after its two children.
  const flow = await flows.add({
    name: 'parent',
    queueName,
    data: { i: 100000 },
    children: [
      { name: 'child', queueName, data: { i: 100001 } },
      { name: 'child', queueName, data: { i: 100002 } },
    ],
  });
  expected.set(flow.job.id, { name: 'parent', i: 100000, children: [100001, 100002] });
  for (const c of flow.children) expected.set(c.job.id, result('child', c.job.data.i));
  // A job scheduler repeating REPEATS times.
  await queue.upsertJobScheduler(schedulerId, { every: 150, limit: REPEATS }, { name: 'repeat', data: { i: -1 } });
  // The rest in bulk, some slow.
  const rest = N - expected.size - REPEATS;
  const tail = plain(Math.max(0, rest));
  tail.forEach((j, k) => (j.data.slow = k % 7 === 0));
  for (let k = 0; k < tail.length; k += 50) await addMany(tail.slice(k, k + 50));

  // Wait for everything.
  const done = () =>
    [...expected.keys()].every((id) => eventCompleted.has(id) && workerCompleted.has(id) && eventProgress.has(id)) &&
    repeatJobIds.size >= REPEATS &&
    [...repeatJobIds].every((id) => eventCompleted.has(id)) &&
    sum(eventRetried) >= failingIds.size * FAILS_PER_FAILING_JOB &&
    [...doomedIds].every((id) => eventFailed.has(id) && eventExhausted.has(id) && eventProgress.has(id));
  while (!done()) {
    if (errorEvents.length) throw new Error(`error events: ${errorEvents.slice(0, 5).join(' | ')}`);
    if (problems.length) throw new Error(problems.join('; '));
    await new Promise((r) => setTimeout(r, 20));
  }
  // Let stray duplicates (a job processed twice) show up before counting.
  await new Promise((r) => setTimeout(r, 300));
  for (const id of repeatJobIds) expected.set(id, { repeat: true });
  const total = expected.size;

  // Exactly once, through both the worker and the events.
  for (const id of expected.keys()) {
    if (workerCompleted.get(id) !== 1) fail(`worker completed job ${id} ${workerCompleted.get(id) || 0} times`);
    if (eventCompletedTimes.get(id) !== 1) fail(`QueueEvents reported job ${id} completed ${eventCompletedTimes.get(id) || 0} times`);
  }
  for (const id of workerCompleted.keys()) if (!expected.has(id)) fail(`worker completed an unknown job ${id}`);
  for (const id of failingIds) {
    if (eventRetried.get(id) !== FAILS_PER_FAILING_JOB) fail(`job ${id}: ${eventRetried.get(id) || 0} retry events, expected ${FAILS_PER_FAILING_JOB}`);
    if (workerFailed.get(id) !== FAILS_PER_FAILING_JOB) fail(`job ${id}: worker saw ${workerFailed.get(id) || 0} failures`);
  }
  for (const id of doomedIds) {
    if (eventFailed.get(id) !== 1) fail(`doomed job ${id}: ${eventFailed.get(id) || 0} failed events, expected 1`);
    if (eventExhausted.get(id) !== 1) fail(`doomed job ${id}: ${eventExhausted.get(id) || 0} retries-exhausted events`);
    if (workerFailed.get(id) !== DOOMED_ATTEMPTS) fail(`doomed job ${id}: worker saw ${workerFailed.get(id) || 0} failures`);
    const want = `doomed job ${id}, attempt ${DOOMED_ATTEMPTS}`;
    if (eventFailedReason.get(id) !== want) fail(`doomed job ${id}: failedReason ${JSON.stringify(eventFailedReason.get(id))}`);
    const job = await queue.getJob(id);
    if (!job || job.failedReason !== want || job.attemptsMade !== DOOMED_ATTEMPTS || job.stacktrace.length !== DOOMED_ATTEMPTS) {
      fail(`doomed job ${id} stored as ${JSON.stringify(job && { failedReason: job.failedReason, attemptsMade: job.attemptsMade, stacktrace: job.stacktrace.length })}`);
    }
    if (workerCompleted.has(id) || eventCompleted.has(id)) fail(`doomed job ${id} completed`);
  }
  for (const id of eventFailed.keys()) if (!doomedIds.has(id)) fail(`unexpected failed event for job ${id}`);
  if (repeatJobIds.size !== REPEATS) fail(`scheduler ran ${repeatJobIds.size} jobs, expected ${REPEATS}`);

  // Return values: as the events carried them and as stored with the job.
  const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
  for (const [id, want] of expected) {
    if (!same(eventCompleted.get(id), want)) fail(`job ${id}: event returnvalue ${JSON.stringify(eventCompleted.get(id))}, expected ${JSON.stringify(want)}`);
  }
  const ids = [...expected.keys()];
  const stored = await Promise.all(ids.map((id) => queue.getJob(id)));
  stored.forEach((job, k) => {
    if (!job) return fail(`job ${ids[k]} is gone`);
    if (!same(job.returnvalue, expected.get(ids[k]))) fail(`job ${ids[k]}: stored returnvalue ${JSON.stringify(job.returnvalue)}`);
    if (!job.finishedOn) fail(`job ${ids[k]} has no finishedOn`);
  });
  const flaky = stored.filter((j) => j && failingIds.has(j.id));
  for (const j of flaky) {
    if (j.attemptsMade !== FAILS_PER_FAILING_JOB + 1) fail(`flaky job ${j.id}: attemptsMade ${j.attemptsMade}`);
  }
  // Progress: the last event of a plain job is 100; logs: one line per attempt.
  let progressEvents = 0;
  for (const [id, data] of eventProgress) {
    progressEvents++;
    const want = expected.get(id);
    if (want && want.twice !== undefined && data !== 100) fail(`job ${id}: last progress ${JSON.stringify(data)}`);
  }
  let logLines = 0;
  for (const id of [...ids, ...doomedIds]) {
    const { logs, count } = await queue.getJobLogs(id);
    const attempts = failingIds.has(id) ? FAILS_PER_FAILING_JOB + 1 : doomedIds.has(id) ? DOOMED_ATTEMPTS : 1;
    if (count !== attempts || logs.length !== attempts || !String(logs[0]).startsWith('attempt 0')) {
      fail(`job ${id}: logs ${JSON.stringify(logs)} (count ${count}), expected ${attempts}`);
    }
    logLines += count;
  }
  // Priorities: the order of the prioritized jobs' first `active` events in the stream.
  const stream = await client.xrange(`${prefix}:${queueName}:events`, '-', '+');
  const activated = [];
  for (const [, fields] of stream) {
    const ev = {};
    for (let k = 0; k + 1 < fields.length; k += 2) ev[fields[k]] = fields[k + 1];
    if (ev.event === 'active' && prioIds.includes(ev.jobId) && !activated.includes(ev.jobId)) activated.push(ev.jobId);
  }
  const byPriority = prioIds
    .map((id, k) => ({ id, k, p: prioJobs[k].opts.priority }))
    .sort((a, b) => a.p - b.p || a.k - b.k)
    .map((x) => x.id);
  if (activated.join() !== byPriority.join()) fail(`prioritized jobs activated as ${activated.join()}, expected ${byPriority.join()}`);

  // Counts.
  await queue.removeJobScheduler(schedulerId);
  const counts = await queue.getJobCounts('completed', 'failed', 'waiting', 'active', 'delayed', 'prioritized', 'waiting-children', 'paused');
  if (counts.completed !== total) fail(`completed count ${counts.completed}, expected ${total}`);
  if (counts.failed !== doomedIds.size) fail(`failed count ${counts.failed}, expected ${doomedIds.size}`);
  for (const k of ['waiting', 'active', 'delayed', 'prioritized', 'waiting-children', 'paused']) {
    if (counts[k] !== 0) fail(`${k} count ${counts[k]}, expected 0`);
  }
  const schedulers = await queue.getJobSchedulersCount();
  if (schedulers !== 0) fail(`${schedulers} job schedulers left`);
  if (errorEvents.length) fail(`error events: ${errorEvents.slice(0, 5).join(' | ')}`);
  if (problems.length) throw new Error(problems.join('; '));

  const eventsLen = await client.xlen(`${prefix}:${queueName}:events`);
  return {
    ok: true,
    queue: queueName,
    prefix,
    server: version,
    jobs: total,
    completed: counts.completed,
    failed: counts.failed,
    worker_failures: sum(workerFailed),
    retries: sum(eventRetried),
    progress_jobs: progressEvents,
    log_lines: logLines,
    repeats: repeatJobIds.size,
    events_len: eventsLen,
    elapsed_ms: Date.now() - started,
  };
}

main().then(
  async (summary) => {
    finished = true;
    clearTimeout(deadline);
    await closeAll();
    console.log(JSON.stringify(summary));
    process.exit(0);
  },
  async (err) => {
    finished = true;
    clearTimeout(deadline);
    console.error(`bullmq_check: FAILED on queue ${queueName}: ${err && err.stack ? err.stack : err}`);
    console.error(`state: ${snapshot()}`);
    await closeAll();
    process.exit(1);
  },
);
