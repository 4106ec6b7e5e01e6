/**
 * `npm run bench`: one run against the sandbox's mock server on 127.0.0.1, compared with the raw
 * libsignal ceiling measured in the same process. Writes bench-results.json and prints a table.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { SignalClient } from '../core/client';
import type { IncomingEvent } from '../core/types';
import { startSandbox, type PrimaryDevice, type Sandbox } from '../test/harness/sandbox';
import { measureCeiling } from './ceiling';

/** `BENCH_SCALE=0.1 npm run bench` runs a tenth of everything (a quick check, not for quoting). */
const SCALE = Math.min(1, Math.max(0.01, Number(process.env.BENCH_SCALE ?? 1) || 1));
const n = (count: number) => Math.max(10, Math.round(count * SCALE));
const RECEIVE = n(2000);
const SEND = n(1000);
const COST = n(500);
const LOOKUP = n(1000);
let lastTimestamp = 0;
const warnings: string[] = [];
const logger = {
  debug: () => {},
  info: () => {},
  warn: (m: string) => void warnings.push(`warn ${m}`),
  error: (m: string) => void warnings.push(`error ${m}`),
};

const rssMb = () => Math.round((process.memoryUsage().rss / 1024 / 1024) * 10) / 10;
const now = () => Number(process.hrtime.bigint()) / 1e6;

async function linkNew(
  sandbox: Sandbox,
  phone: PrimaryDevice,
  dataFile: string,
): Promise<SignalClient> {
  const client = await SignalClient.open({
    dataFile,
    environment: sandbox.environment,
    deviceName: 'bench',
  });
  const provision = sandbox.server.waitForProvision();
  await client.link({
    onUrl: (url) =>
      void provision.then((p) => p.complete({ provisionURL: url, primaryDevice: phone })),
  });
  return client;
}

async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`${what}: not reached within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Queues `count` messages from `from` while the client is closed, then times reconnect → all emitted. */
async function timedReceive(
  sandbox: Sandbox,
  dataFile: string,
  from: PrimaryDevice,
  count: number,
  prepare?: (client: SignalClient) => void,
): Promise<{ ms: number; client: SignalClient }> {
  const probe = await SignalClient.open({ dataFile, environment: sandbox.environment });
  const account = probe.account;
  await probe.close();
  if (!account) throw new Error('not linked');
  const device = await sandbox.server.getDeviceByServiceId(
    account.aci as never,
    account.deviceId as never,
  );
  if (!device) throw new Error('device unknown to the mock');
  // The mock's send resolves only once delivered: fire them all, wait until they sit in its queue.
  // Timestamps unique across the whole run: a repeat (sender, device, timestamp) is a duplicate.
  const base = Math.max(Date.now(), lastTimestamp + 1);
  lastTimestamp = base + count - 1;
  const queued = Array.from({ length: count }, (_, i) =>
    from.sendText(device, `bench ${i}`, { timestamp: base + i }),
  );
  const queues = (sandbox.server as unknown as { messageQueue: Map<unknown, unknown[]> })
    .messageQueue;
  await until(() => (queues.get(device)?.length ?? 0) >= count, 600_000, `${count} queued`);
  const client = await SignalClient.open({ dataFile, environment: sandbox.environment, logger });
  prepare?.(client);
  let received = 0;
  client.on('event', (ev: IncomingEvent) => {
    if (ev.type === 'message') received++;
  });
  const start = now();
  await client.connect();
  await until(
    () => received >= count,
    Number(process.env.BENCH_WAIT_MS ?? 600_000),
    `${count} messages`,
  );
  const ms = now() - start;
  await Promise.all(queued);
  return { ms, client };
}

/** Stores `n` extra sessions (copies of a real record under random ids) and log rows. */
function growStore(client: SignalClient, sessions: number, logRows: number): void {
  const store = client.storeForTesting;
  if (!store) throw new Error('no store');
  const template = store.db.prepare('SELECT record FROM sessions LIMIT 1').pluck().get() as Buffer;
  const insertSession = store.db.prepare(
    'INSERT OR IGNORE INTO sessions (our_kind, service_id, device_id, record) VALUES (?, ?, 1, ?)',
  );
  const insertLog = store.db.prepare(
    `INSERT OR IGNORE INTO received_log (sender, device, sent_at, server_guid, state, events, received_at) VALUES (?, 1, ?, NULL, 'emitted', '[]', ?)`,
  );
  store.transaction(() => {
    for (let i = 0; i < sessions; i++) insertSession.run('aci', randomUUID(), template);
    for (let i = 0; i < logRows; i++)
      insertLog.run(randomUUID(), 1_600_000_000_000 + i, Date.now());
  });
}

async function main(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sigflow-bench-'));
  const results: Record<string, unknown> = {
    node: process.version,
    cpu: os.cpus()[0]?.model ?? 'unknown',
    cores: os.cpus().length,
    platform: `${os.platform()} ${os.arch()}`,
  };
  console.log('measuring the libsignal ceiling…');
  const ceiling = await measureCeiling(2000);
  results.ceiling_msgs_per_s = Math.round(ceiling.msgsPerSecond);

  const sandbox = await startSandbox();
  try {
    const bob = await sandbox.createPrimary({ profileName: 'Bob' });
    const carol = await sandbox.createPrimary({ profileName: 'Carol' });
    const alice = await sandbox.createPrimary({ profileName: 'Alice', contacts: [bob] });
    const dataFile = path.join(dir, 'bench.db');
    console.log('linking…');
    let client = await linkNew(sandbox, alice, dataFile);
    results.rss_mb_linked = rssMb();
    // Bob needs a session with us before he can write.
    const account = client.account;
    if (!account) throw new Error('not linked');
    const device = await sandbox.server.getDeviceByServiceId(
      account.aci as never,
      account.deviceId as never,
    );
    if (!device) throw new Error('device unknown');
    for (const p of [bob, carol]) await p.addSingleUseKey(device, await device.popSingleUseKey());
    await client.close();

    console.log('connect time…');
    const connectTimes: number[] = [];
    for (let i = 0; i < 5; i++) {
      const start = now();
      const c = await SignalClient.open({ dataFile, environment: sandbox.environment });
      await c.connect();
      connectTimes.push(now() - start);
      await c.close();
    }
    connectTimes.sort((a, b) => a - b);
    results.connect_ms = Math.round(connectTimes[2] ?? 0);

    console.log('receive: 2,000 messages from a mock primary…');
    const rx = await timedReceive(sandbox, dataFile, bob, RECEIVE);
    client = rx.client;
    results.receive_msgs_per_s = Math.round(RECEIVE / (rx.ms / 1000));

    console.log('send: 1,000 messages (with sync transcripts)…');
    const drain = (async () => {
      for (let i = 0; i < SEND; i++) await bob.waitForMessage();
    })();
    const sendStart = now();
    let next = 0;
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        while (next < SEND) {
          const i = next++;
          await client.send(bob.device.aci, `out ${i}`);
        }
      }),
    );
    const sendMs = now() - sendStart;
    await drain;
    results.send_msgs_per_s = Math.round(SEND / (sendMs / 1000));
    await client.close();

    console.log('per-message receive cost: 100 sessions vs 20,000 sessions + 100,000 log rows…');
    const small = await timedReceive(sandbox, dataFile, carol, COST, (c) => growStore(c, 100, 0));
    await small.client.close();
    const large = await timedReceive(sandbox, dataFile, carol, COST, (c) =>
      growStore(c, 19_900, 100_000),
    );
    const costSmall = small.ms / COST;
    const costLarge = large.ms / COST;
    results.receive_cost_ms_small_store = Math.round(costSmall * 1000) / 1000;
    results.receive_cost_ms_large_store = Math.round(costLarge * 1000) / 1000;
    results.receive_cost_ratio_large_store = Math.round((costLarge / costSmall) * 100) / 100;

    console.log('lookup of 1,000 numbers from the contacts table…');
    const store = large.client.storeForTesting;
    if (!store) throw new Error('no store');
    const numbers = Array.from(
      { length: LOOKUP },
      (_, i) => `+1415555${String(i).padStart(4, '0')}`,
    );
    store.transaction(() => {
      for (const n of numbers)
        store.contacts.upsert({ e164: n, aci: randomUUID(), source: 'sync' });
    });
    const lookupStart = now();
    const found = await large.client.lookup(numbers);
    const lookupMs = now() - lookupStart;
    if (found.length !== LOOKUP || !found.every((r) => r.registered))
      throw new Error('lookup returned wrong results');
    results.lookup_contacts_per_s = Math.round(LOOKUP / (lookupMs / 1000));
    await large.client.close();
    results.rss_mb_after = rssMb();
  } finally {
    await sandbox.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const ceil = results.ceiling_msgs_per_s as number;
  results.receive_ratio = Math.round(((results.receive_msgs_per_s as number) / ceil) * 100) / 100;
  results.send_ratio = Math.round(((results.send_msgs_per_s as number) / ceil) * 100) / 100;
  fs.writeFileSync('bench-results.json', `${JSON.stringify(results, null, 2)}\n`);
  console.log('\n| metric | value |\n| --- | --- |');
  for (const [k, v] of Object.entries(results)) console.log(`| ${k} | ${String(v)} |`);
  console.log('\nwritten to bench-results.json');
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    console.error('bench failed:', e);
    if (warnings.length) console.error(warnings.slice(0, 30).join('\n'));
    process.exit(1);
  },
);
