/**
 * `npm run bench`: one run against the sandbox's mock server on 127.0.0.1 (in its own process,
 * bench/peer.ts), compared with the raw libsignal ceiling measured in this same process. Writes
 * bench-results.json and prints a table. `BENCH_SCALE=0.1` runs a tenth of everything (a quick
 * check, not for quoting).
 */
import { fork, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { SignalClient } from '../core/client';
import { resolveEnvironment, type EnvironmentOptions } from '../core/config';
import { SignalStore } from '../core/store';
import type { IncomingEvent } from '../core/types';
import { measureAttachments, measureFreshProcessRss } from './attachments';
import { measureCeiling } from './ceiling';
import { groupBench } from './group';
import type { PeerCommand, PeerReply } from './peer';

const SCALE = Math.min(1, Math.max(0.01, Number(process.env.BENCH_SCALE ?? 1) || 1));
const n = (count: number) => Math.max(10, Math.round(count * SCALE));
const RECEIVE = n(2000);
const SEND = n(1000);
const COST = n(500);
const LOOKUP = n(1000);
/** The group-send phase: members (us included) and messages per variant. */
const GROUP_SIZE = Math.max(3, Number(process.env.BENCH_GROUP_SIZE ?? 50) || 50);
const GROUP_MESSAGES = n(50);
/** Sends in flight at once (a flow's messages arrive independently): `BENCH_SEND_CONCURRENCY`. */
const SEND_CONCURRENCY = Math.max(1, Number(process.env.BENCH_SEND_CONCURRENCY ?? 8) || 8);
const WAIT_MS = 600_000;

const warnings: string[] = [];
const logger = {
  debug: () => {},
  info: () => {},
  warn: (m: string) => void warnings.push(`warn ${m}`),
  error: (m: string) => void warnings.push(`error ${m}`),
};

const rssMb = () => Math.round((process.memoryUsage().rss / 1024 / 1024) * 10) / 10;
const now = () => Number(process.hrtime.bigint()) / 1e6;

/** The mock server and its phones in a child process, driven by request/reply over IPC. */
class Peer {
  private readonly child: ChildProcess;
  private nextId = 1;
  private readonly waiting = new Map<
    number,
    { resolve: (v: unknown) => void; reject: (e: Error) => void }
  >();

  constructor() {
    const fromSources = __filename.endsWith('.ts');
    this.child = fork(path.join(__dirname, fromSources ? 'peer.ts' : 'peer.js'), [], {
      execArgv: fromSources ? ['--require', require.resolve('tsx/cjs')] : [],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    this.child.on('message', (reply: PeerReply) => {
      const w = this.waiting.get(reply.id);
      if (!w) return;
      this.waiting.delete(reply.id);
      if ('error' in reply) w.reject(new Error(`peer: ${reply.error}`));
      else w.resolve(reply.result);
    });
    this.child.on('exit', (code) => {
      for (const w of this.waiting.values()) w.reject(new Error(`peer exited (${code})`));
      this.waiting.clear();
    });
  }

  call<T = null>(command: PeerCommand): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.waiting.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.child.send({ id, command });
    });
  }

  async stop(): Promise<void> {
    await this.call({ cmd: 'stop' }).catch(() => undefined);
    this.child.disconnect();
  }
}

/** `BENCH_PROFILE=dir`: CPU profiles of the receive and send phases, for finding where time goes. */
async function startProfile(): Promise<((name: string) => Promise<void>) | null> {
  const dir = process.env.BENCH_PROFILE;
  if (!dir) return null;
  const { Session } = await import('node:inspector/promises');
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.start');
  return async (name) => {
    const { profile } = await session.post('Profiler.stop');
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, `${name}.cpuprofile`), JSON.stringify(profile));
    session.disconnect();
  };
}

async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`${what}: not reached within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

interface Bench {
  peer: Peer;
  environment: EnvironmentOptions;
  dataFile: string;
  account: { aci: string; deviceId: number };
}

let lastTimestamp = 0;
const round3 = (x: number) => Math.round(x * 1000) / 1000;

/** Queues `count` messages from `from` while the client is closed, then times connect → all emitted. */
async function timedReceive(
  b: Bench,
  from: string,
  count: number,
  prepare?: (store: SignalStore) => void,
  beforeConnect?: () => Promise<void>,
): Promise<{ ms: number; cpuMs: number; client: SignalClient; store: SignalStore }> {
  // Timestamps unique across the whole run: a repeated (sender, device, timestamp) is a duplicate.
  const base = Math.max(Date.now(), lastTimestamp + 1);
  lastTimestamp = base + count - 1;
  await b.peer.call({ cmd: 'queue', from, ...b.account, count, base });
  // The store the client opens, held through its openStore port to grow it and fill contacts.
  let store: SignalStore | undefined;
  const client = await SignalClient.open({
    dataFile: b.dataFile,
    environment: b.environment,
    logger,
    ports: { openStore: (file, options) => (store = SignalStore.open(file, options)) },
  });
  if (!store) throw new Error('no store');
  prepare?.(store);
  await beforeConnect?.();
  let received = 0;
  client.on('event', (ev: IncomingEvent) => {
    if (ev.type === 'message') received++;
  });
  const start = now();
  const cpu = process.cpuUsage();
  await client.connect();
  await until(() => received >= count, WAIT_MS, `${count} messages`);
  const used = process.cpuUsage(cpu);
  return { ms: now() - start, cpuMs: (used.user + used.system) / 1000, client, store };
}

/** Stores `n` extra sessions (copies of a real record under random ids) and log rows. */
function growStore(store: SignalStore, sessions: number, logRows: number): void {
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
    scale: SCALE,
  };
  console.log('measuring the libsignal ceiling…');
  const ceiling = await measureCeiling(2000);
  results.ceiling_msgs_per_s = Math.round(ceiling.msgsPerSecond);
  results.ceiling_ms_per_msg = round3(1000 / ceiling.msgsPerSecond);
  // What a sealed-sender message costs at the same layer (our sends to a contact whose profile key
  // we know are sealed): context for the send figure, not its ratio's denominator.
  const sealedCeiling = await measureCeiling(1000, { sealed: true });
  results.ceiling_sealed_msgs_per_s = Math.round(sealedCeiling.msgsPerSecond);
  // One send to a contact is a sealed message to them plus a plain sync transcript to our phone:
  // the raw crypto of that same work (both messages encrypted and decrypted), in messages per second.
  results.ceiling_send_work_msgs_per_s = Math.round(
    1 / (1 / sealedCeiling.msgsPerSecond + 1 / ceiling.msgsPerSecond),
  );

  const peer = new Peer();
  try {
    const environment = await peer.call<EnvironmentOptions>({ cmd: 'start' });
    const bob = await peer.call<{ aci: string }>({ cmd: 'primary', name: 'bob' });
    await peer.call({ cmd: 'primary', name: 'carol' });
    await peer.call({ cmd: 'primary', name: 'alice', contacts: ['bob'] });
    const dataFile = path.join(dir, 'bench.db');

    console.log('linking…');
    let client = await SignalClient.open({ dataFile, environment, deviceName: 'bench', logger });
    await peer.call({ cmd: 'expect-provision' });
    await client.link({
      onUrl: (url) =>
        void peer
          .call({ cmd: 'complete-provision', url, primary: 'alice' })
          .catch((e: unknown) => console.error(e)),
    });
    results.rss_mb_linked = rssMb();
    const linked = client.account;
    if (!linked) throw new Error('not linked');
    const b: Bench = {
      peer,
      environment,
      dataFile,
      account: { aci: linked.aci, deviceId: linked.deviceId },
    };
    // Bob and Carol need one of our one-time keys before they can write.
    await peer.call({ cmd: 'give-keys', ...b.account, to: ['bob', 'carol'] });
    await client.close();

    console.log('connect time (median of 5)…');
    const connectTimes: number[] = [];
    for (let i = 0; i < 5; i++) {
      const start = now();
      const c = await SignalClient.open({ dataFile, environment, logger });
      await c.connect();
      connectTimes.push(now() - start);
      await c.close();
    }
    connectTimes.sort((x, y) => x - y);
    results.connect_ms = Math.round(connectTimes[2] ?? 0);

    console.log(`receive: ${RECEIVE} messages from a mock primary…`);
    // The peer's CPU is read after the messages are queued (their encryption is not the receive's
    // cost) and once all are emitted: what the mock server spends delivering them and taking ACKs.
    let peerRxStart = 0;
    let rxProfiler: Awaited<ReturnType<typeof startProfile>> = null;
    const rx = await timedReceive(b, 'bob', RECEIVE, undefined, async () => {
      peerRxStart = await peer.call<number>({ cmd: 'cpu' });
      rxProfiler = await startProfile();
    });
    await (rxProfiler as Awaited<ReturnType<typeof startProfile>>)?.('receive');
    const peerRxMs = (await peer.call<number>({ cmd: 'cpu' })) - peerRxStart;
    client = rx.client;
    results.receive_msgs_per_s = Math.round(RECEIVE / (rx.ms / 1000));
    results.receive_cpu_ms_per_msg = round3(rx.cpuMs / RECEIVE);
    results.receive_peer_cpu_ms_per_msg = round3(peerRxMs / RECEIVE);

    console.log(`send: ${SEND} messages (with sync transcripts), ${SEND_CONCURRENCY} at a time…`);
    await peer.call({ cmd: 'start-drain', who: 'bob', count: SEND });
    const peerSendStart = await peer.call<number>({ cmd: 'cpu' });
    const profiler = await startProfile();
    const sendStart = now();
    const sendCpu = process.cpuUsage();
    let next = 0;
    await Promise.all(
      Array.from({ length: SEND_CONCURRENCY }, async () => {
        while (next < SEND) {
          const i = next++;
          await client.send(bob.aci, { text: `out ${i}` });
        }
      }),
    );
    const sendMs = now() - sendStart;
    const sendCpuUs = process.cpuUsage(sendCpu);
    await profiler?.('send');
    results.send_cpu_ms_per_msg =
      Math.round(((sendCpuUs.user + sendCpuUs.system) / 1000 / SEND) * 1000) / 1000;
    await peer.call({ cmd: 'drained' });
    // Bob decrypts each message and our own phone each sync transcript, in the peer's process.
    const peerSendMs = (await peer.call<number>({ cmd: 'cpu' })) - peerSendStart;
    results.send_peer_cpu_ms_per_msg = round3(peerSendMs / SEND);
    results.send_msgs_per_s = Math.round(SEND / (sendMs / 1000));

    console.log('attachments: 20 MiB up and down, RSS during a 30 MiB transfer…');
    Object.assign(
      results,
      await measureAttachments(
        client,
        resolveEnvironment(environment),
        dir,
        Math.max(1, Math.round(20 * SCALE)),
        Math.max(1, Math.round(30 * SCALE)),
        () => peer.call<number>({ cmd: 'cpu' }),
      ),
    );
    await client.close();
    console.log('attachments: RSS of a fresh process during a 30 MiB transfer up and down…');
    Object.assign(
      results,
      await measureFreshProcessRss({
        dataFile,
        environment,
        dir,
        sizeMiB: Math.max(1, Math.round(30 * SCALE)),
      }),
    );

    console.log(`per-message receive cost: 100 vs 20,000 sessions + 100,000 log rows…`);
    const small = await timedReceive(b, 'carol', COST, (s) => growStore(s, 100, 0));
    await small.client.close();
    const large = await timedReceive(b, 'carol', COST, (s) => growStore(s, 19_900, 100_000));
    const costSmall = small.ms / COST;
    const costLarge = large.ms / COST;
    results.receive_cost_ms_small_store = Math.round(costSmall * 1000) / 1000;
    results.receive_cost_ms_large_store = Math.round(costLarge * 1000) / 1000;
    results.receive_cost_ratio_large_store = Math.round((costLarge / costSmall) * 100) / 100;

    console.log(`lookup of ${LOOKUP} numbers from the contacts table…`);
    const store = large.store;
    const numbers = Array.from(
      { length: LOOKUP },
      (_, i) => `+1415555${String(i).padStart(4, '0')}`,
    );
    store.transaction(() => {
      for (const num of numbers)
        store.contacts.upsert({ e164: num, aci: randomUUID(), source: 'sync' });
    });
    const lookupStart = now();
    const found = await large.client.lookup(numbers);
    const lookupMs = now() - lookupStart;
    if (found.length !== LOOKUP || !found.every((r) => r.registered))
      throw new Error('lookup returned wrong results');
    results.lookup_contacts_per_s = Math.round(LOOKUP / (lookupMs / 1000));
    await large.client.close();

    await groupBench({
      peer,
      environment,
      dataFile,
      logger,
      size: GROUP_SIZE,
      messages: GROUP_MESSAGES,
      results,
    });
    results.rss_mb_after = rssMb();
  } finally {
    await peer.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const ceil = results.ceiling_msgs_per_s as number;
  results.receive_ratio = Math.round(((results.receive_msgs_per_s as number) / ceil) * 100) / 100;
  results.send_ratio = Math.round(((results.send_msgs_per_s as number) / ceil) * 100) / 100;
  results.send_ratio_same_work =
    Math.round(
      ((results.send_msgs_per_s as number) / (results.ceiling_send_work_msgs_per_s as number)) *
        100,
    ) / 100;
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
