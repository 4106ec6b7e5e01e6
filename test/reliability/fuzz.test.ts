/**
 * Fuzzing the receive path: mutated Envelopes into a live client's receiver, and mutated
 * WebSocketMessage frames through a real chat connection into that receiver. Seeded, so a failure
 * reproduces. Nothing may escape: no throw, no unhandled rejection; every envelope is answered with
 * a status and every drop is logged with its reason; afterwards the client still receives.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import type { WebSocket } from 'ws';
import { ChatConnection } from '../../core/net/connection';
import type { Receiver } from '../../core/messaging/receiver';
import type { SignalClient } from '../../core/client';
import { Envelope, Long, WebSocketMessage } from '../../proto';
import { startFakeChatServer, type FakeChatServer } from '../core/net/fake-server';
import {
  captureLogger,
  linkClient,
  startSandbox,
  withTimeout,
  type PrimaryDevice,
  type Sandbox,
} from '../integration/helpers';

/** mulberry32: a small seeded PRNG. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Rand = () => number;
const int = (r: Rand, n: number) => Math.floor(r() * n);
const bytes = (r: Rand, n: number) => Uint8Array.from({ length: n }, () => int(r, 256));

/** One mutation of `seed`: bit flips, byte rewrites, truncation, extension, splices, or noise. */
function mutate(r: Rand, seed: Uint8Array): Uint8Array {
  const out = Uint8Array.from(seed);
  switch (int(r, 7)) {
    case 0: {
      for (let i = 0, n = 1 + int(r, 8); i < n && out.length; i++) {
        const at = int(r, out.length);
        out[at] = (out[at] ?? 0) ^ (1 << int(r, 8));
      }
      return out;
    }
    case 1: {
      for (let i = 0, n = 1 + int(r, 4); i < n && out.length; i++)
        out[int(r, out.length)] = int(r, 256);
      return out;
    }
    case 2:
      return out.subarray(0, int(r, out.length + 1));
    case 3: {
      const extra = bytes(r, 1 + int(r, 64));
      const merged = new Uint8Array(out.length + extra.length);
      merged.set(out);
      merged.set(extra, out.length);
      return merged;
    }
    case 4: {
      // A length-delimited field claiming far more than is there.
      const at = int(r, out.length + 1);
      const huge = Uint8Array.of(0x42, 0xff, 0xff, 0xff, 0xff, 0x0f);
      const merged = new Uint8Array(out.length + huge.length);
      merged.set(out.subarray(0, at));
      merged.set(huge, at);
      merged.set(out.subarray(at), at + huge.length);
      return merged;
    }
    case 5: {
      // Swap two chunks (fields out of order, or torn apart).
      if (out.length < 4) return out;
      const a = int(r, out.length / 2);
      const b = out.length / 2 + int(r, out.length / 2);
      const len = Math.min(1 + int(r, 16), out.length - b);
      const tmp = out.slice(a, a + len);
      out.copyWithin(a, b, b + len);
      out.set(tmp, b);
      return out;
    }
    default:
      return bytes(r, int(r, 300));
  }
}

interface Live {
  sandbox: Sandbox;
  client: SignalClient;
  bob: PrimaryDevice;
  receiver: Receiver;
  lines: string[];
  seeds: Uint8Array[];
}

/** A linked client that has received real envelopes from Bob (unsealed and sealed), kept as seeds. */
async function live(): Promise<Live> {
  const sandbox = await startSandbox();
  const bob = await sandbox.createPrimary({ profileName: 'Bob' });
  const alice = await sandbox.createPrimary({ profileName: 'Alice', contacts: [bob] });
  const lines: string[] = [];
  const logger = captureLogger(lines);
  const { client } = await linkClient(sandbox, alice, { logger });
  const receiver = (client as unknown as { receiver: Receiver }).receiver;
  const seeds: Uint8Array[] = [];
  const inner = receiver as unknown as { processEnvelope: (b: Uint8Array) => Promise<number> };
  const original = inner.processEnvelope.bind(receiver);
  inner.processEnvelope = (b) => {
    seeds.push(Uint8Array.from(b));
    return original(b);
  };
  const account = client.account;
  assert.ok(account);
  const device = await sandbox.server.getDeviceByServiceId(
    account.aci as never,
    account.deviceId as never,
  );
  assert.ok(device);
  await bob.addSingleUseKey(device, await device.popSingleUseKey());
  const got: string[] = [];
  client.on('event', (ev) => {
    if (ev.type === 'message') got.push(ev.body ?? '');
  });
  void bob.sendText(device, 'seed one', { withProfileKey: true });
  await until(() => got.length >= 1, 10_000, 'first seed');
  void bob.sendText(device, 'seed two', { sealed: true });
  await until(() => got.length >= 2, 10_000, 'second seed');
  inner.processEnvelope = original;
  // Synthetic seeds for every envelope type, from Bob, from nobody, and for our PNI.
  for (const type of [1, 3, 5, 6, 8, 0, 42]) {
    seeds.push(
      Envelope.encode({
        type,
        sourceServiceId: type % 2 ? bob.device.aci : '',
        sourceDeviceId: 1,
        destinationServiceId: type === 8 ? `PNI:${randomUUID()}` : account.aci,
        clientTimestamp: Long.fromNumber(Date.now() - 1000, true),
        serverTimestamp: Long.fromNumber(Date.now(), true),
        serverGuid: randomUUID(),
        content: bytes(prng(type), 120),
      }).finish(),
    );
  }
  return { sandbox, client, bob, receiver, lines, seeds };
}

async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`${what}: not reached within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Fails the test on any unhandled rejection while `fn` runs. */
async function noUnhandled<T>(fn: () => Promise<T>): Promise<T> {
  const seen: unknown[] = [];
  const listener = (reason: unknown) => void seen.push(reason);
  process.on('unhandledRejection', listener);
  try {
    const result = await fn();
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(seen, [], 'no unhandled rejection');
    return result;
  } finally {
    process.off('unhandledRejection', listener);
  }
}

async function stillReceives(l: Live, text: string): Promise<void> {
  const account = l.client.account;
  assert.ok(account);
  const device = await l.sandbox.server.getDeviceByServiceId(
    account.aci as never,
    account.deviceId as never,
  );
  assert.ok(device);
  const next = new Promise<string>((resolve) => {
    const on = (ev: { type: string; body?: string }) => {
      if (ev.type === 'message' && ev.body === text) {
        l.client.off('event', on);
        resolve(ev.body);
      }
    };
    l.client.on('event', on);
  });
  void l.bob.sendText(device, text);
  assert.equal(await withTimeout(next, 20_000, 'a real message after fuzzing'), text);
}

describe('reliability: fuzzing the receive path', function () {
  this.timeout(300_000);
  let l: Live;
  before(async () => {
    l = await live();
  });
  after(async () => {
    await l?.sandbox.close();
  });

  it('10,000 mutated Envelopes: each answered, each drop logged with its reason, no crash', async () => {
    const r = prng(0x5eed);
    const N = 10_000;
    const statuses = new Map<number, number>();
    const dropsBefore = l.lines.filter((x) => x.includes('dropped envelope (')).length;
    let recorded = 0;
    const onEvent = () => void recorded++;
    l.client.on('event', onEvent);
    await noUnhandled(async () => {
      for (let i = 0; i < N; i++) {
        const seed = l.seeds[int(r, l.seeds.length)] as Uint8Array;
        const body = i % 10 === 0 ? bytes(r, int(r, 400)) : mutate(r, seed);
        const status = await l.receiver.handleRequest({
          verb: 'PUT',
          path: '/api/v1/message',
          body,
          headers: {},
        });
        statuses.set(status, (statuses.get(status) ?? 0) + 1);
      }
      await l.client.idle();
    });
    l.client.off('event', onEvent);
    const drops = l.lines.filter((x) => x.includes('dropped envelope (')).length - dropsBefore;
    // Every envelope is ACKed: either recorded (and emitted) or dropped with a logged reason. A 500
    // would make the server redeliver a poison envelope forever.
    assert.deepEqual([...statuses.keys()], [200], `statuses: ${JSON.stringify([...statuses])}`);
    assert.ok(drops > N * 0.9, `most mutations are dropped with a reason (${drops} of ${N})`);
    const reasons = new Set(
      l.lines.map((x) => /dropped envelope \(([a-z-]+)\)/.exec(x)?.[1]).filter(Boolean),
    );
    for (const reason of ['malformed-envelope', 'decrypt-failed'])
      assert.ok(reasons.has(reason), `reason ${reason} seen (${[...reasons].join(', ')})`);
    assert.ok(
      drops + recorded >= N - 1,
      `every envelope accounted for (${drops} drops, ${recorded} events, reasons ${[...reasons].join(', ')})`,
    );
    await stillReceives(l, 'still here after 10,000 envelopes');
  });

  it('10,000 mutated WebSocketMessage frames through a chat connection: requests answered, the rest logged', async () => {
    const server: FakeChatServer = await startFakeChatServer();
    const lines: string[] = [];
    const conn = await ChatConnection.open({
      env: server.env,
      path: '/v1/websocket/',
      auth: { username: 'fuzz.2', password: 'pw' },
      logger: captureLogger(lines),
      keepalive: false,
      handler: l.receiver.handleRequest,
    });
    try {
      const ws = server.sockets[server.sockets.length - 1] as WebSocket;
      let responses = 0;
      ws.on('message', (data: Buffer) => {
        if (WebSocketMessage.decode(data).type === WebSocketMessage.Type.RESPONSE) responses++;
      });
      const r = prng(0xf4a3e5);
      const envelopes = l.seeds;
      const seeds = [
        ...envelopes.map((body, i) =>
          WebSocketMessage.encode({
            type: WebSocketMessage.Type.REQUEST,
            request: {
              verb: 'PUT',
              path: i % 3 ? '/api/v1/message' : '/api/v1/queue/empty',
              id: Long.fromNumber(i + 1, true),
              body,
            },
          }).finish(),
        ),
        WebSocketMessage.encode({
          type: WebSocketMessage.Type.RESPONSE,
          response: { id: Long.fromNumber(77, true), status: 200, message: 'OK' },
        }).finish(),
      ];
      const N = 10_000;
      let requests = 0;
      let others = 0;
      await noUnhandled(async () => {
        for (let i = 0; i < N; i++) {
          const frame =
            i % 10 === 0
              ? bytes(r, int(r, 300))
              : mutate(r, seeds[int(r, seeds.length)] as Uint8Array);
          // What the client must do with it: a request gets an answer; anything else a log line.
          let decoded: WebSocketMessage | null = null;
          try {
            decoded = WebSocketMessage.decode(frame);
          } catch {
            decoded = null;
          }
          if (decoded?.type === WebSocketMessage.Type.REQUEST && decoded.request) requests++;
          else others++;
          ws.send(frame);
          // Let the client keep up: the socket is the only backpressure here.
          if (i % 200 === 199) await until(() => responses >= requests - 50, 60_000, 'answers');
        }
        await until(() => responses >= requests, 120_000, `${requests} answers`);
      });
      assert.equal(responses, requests, 'every request frame was answered');
      const logged = lines.filter(
        (x) =>
          x.includes('dropped an undecodable frame') ||
          x.includes('dropped a frame of unknown type') ||
          x.includes('response for unknown request'),
      ).length;
      assert.equal(logged, others, 'every other frame was dropped with a logged reason');
      assert.ok(requests > 1000 && others > 1000, `a mix (${requests} requests, ${others} others)`);
    } finally {
      await conn.close();
      await server.close();
    }
    await stillReceives(l, 'still here after 10,000 frames');
  });
});
