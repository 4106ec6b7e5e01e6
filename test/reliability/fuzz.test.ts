/**
 * Fuzzing the receive path: mutated Envelopes into a live client's receiver, and mutated
 * WebSocketMessage frames through a real chat connection into that receiver. Two kinds of mutation:
 * byte-level (bit flips, byte rewrites, truncations, extensions, huge length prefixes, chunk swaps,
 * random bytes) and field-level (wrong types, swapped or foreign fields, valid-looking envelopes
 * with garbage or corrupted content, forged plaintext content, extreme numbers, huge bodies).
 * Seeded, so a failure reproduces. Nothing may escape: no throw, no unhandled rejection; every
 * envelope is answered with a status and every drop is logged with its reason; afterwards the
 * client still receives.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import type { WebSocket } from 'ws';
import { ChatConnection } from '../../core/net/connection';
import type { Receiver } from '../../core/messaging/receiver';
import type { SignalClient } from '../../core/client';
import { Content, Envelope, Long, WebSocketMessage } from '../../proto';
import { startFakeChatServer, type FakeChatServer } from '../core/net/fake-server';
import { bytes, int, pick, prng, type Rand } from './prng';
import {
  captureLogger,
  linkClient,
  startSandbox,
  withTimeout,
  type PrimaryDevice,
  type Sandbox,
  inspect,
} from '../integration/helpers';
import { until } from '../harness/wait';

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

/** Who the fuzzer can name: our ACI and PNI (bare), and a real peer. */
interface Ids {
  self: string;
  pni: string;
  bob: string;
}

/** A random UUID string drawn from the seeded PRNG (crypto.randomUUID would not reproduce). */
function uuid(r: Rand): string {
  const h = Buffer.from(bytes(r, 16)).toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20)}`;
}

/** Contents someone might forge as plaintext, or put in a valid-looking envelope: one of each kind. */
function contentSeeds(ids: Ids): Uint8Array[] {
  const r = prng(0xc0);
  const ts = 1_700_000_000_000;
  const contents: Array<Record<string, unknown>> = [
    { dataMessage: { body: 'forged', timestamp: ts, profileKey: bytes(r, 32) } },
    {
      dataMessage: { reaction: { emoji: '!', targetSentTimestamp: ts, targetAuthorAci: ids.bob } },
    },
    {
      syncMessage: {
        sent: { destinationServiceId: ids.bob, timestamp: ts, message: { body: 's' } },
      },
    },
    {
      syncMessage: {
        contacts: { blob: { cdnNumber: 3, cdnKey: 'k', key: bytes(r, 64), size: 9 } },
      },
    },
    { receiptMessage: { type: 1, timestamp: [ts, ts + 1] } },
    { typingMessage: { timestamp: ts, action: 1, groupId: bytes(r, 32) } },
    { decryptionErrorMessage: bytes(r, 40) },
    { nullMessage: { padding: bytes(r, 20) } },
    { editMessage: { targetSentTimestamp: ts, dataMessage: { body: 'edit', timestamp: ts } } },
  ];
  return contents.map((c) => Content.encode(c as never).finish());
}

/** Signal's padding: the content, 0x80, zeros. */
function padded(content: Uint8Array, extra: number): Uint8Array {
  const out = new Uint8Array(content.length + 1 + extra);
  out.set(content);
  out[content.length] = 0x80;
  return out;
}

const EXTREME_U64 = ['0', '1', '9007199254740993', '18446744073709551615'];
const TYPES = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 42, -1, 0x7fffffff];

/**
 * One field-level mutation of a well-formed envelope: the protobuf stays valid, its meaning does
 * not. Wrong types over real ciphertexts, swapped or foreign fields, valid headers with garbage or
 * corrupted content, forged plaintext content, extreme numbers, huge content.
 */
function structuredEnvelope(
  r: Rand,
  seeds: readonly Envelope[],
  contents: readonly Uint8Array[],
  ids: Ids,
): Uint8Array {
  const e = Envelope.decode(Envelope.encode(pick(r, seeds)).finish());
  const serviceIds = [ids.self, ids.bob, `PNI:${ids.pni}`, uuid(r), 'not-a-uuid', '', 'PNI:'];
  const serviceIdBinaries = [bytes(r, 16), bytes(r, 17), bytes(r, 3), new Uint8Array(0)];
  const content = e.content ? new Uint8Array(e.content) : new Uint8Array(0);
  // Mostly a fresh (sender, device, timestamp) key: a key already in the received log is ACKed as
  // a duplicate before any decryption, and the mutation would test nothing else.
  if (r() < 0.8) e.clientTimestamp = Long.fromNumber(1_600_000_000_000 + int(r, 2 ** 40), true);
  switch (int(r, 10)) {
    case 0:
      e.type = pick(r, TYPES);
      break;
    case 1: {
      const source = e.sourceServiceId;
      e.sourceServiceId = e.destinationServiceId;
      e.destinationServiceId = source;
      const binary = e.sourceServiceIdBinary;
      e.sourceServiceIdBinary = e.destinationServiceIdBinary;
      e.destinationServiceIdBinary = binary;
      break;
    }
    case 2:
      // Another envelope's content under this one's header (and sometimes its type too).
      e.content = pick(r, seeds).content;
      if (r() < 0.5) e.type = pick(r, TYPES);
      break;
    case 3:
      e.content = bytes(r, content.length || 1 + int(r, 200));
      break;
    case 4:
      e.content = mutate(r, content);
      break;
    case 5:
      if (r() < 0.3) e.content = bytes(r, 65_536 + int(r, 448 * 1024));
      else e.sourceDeviceId = pick(r, [0, 127, 128, 0xffffffff]);
      break;
    case 6:
      e.sourceServiceId = pick(r, serviceIds);
      if (r() < 0.5) e.sourceServiceIdBinary = pick(r, serviceIdBinaries);
      break;
    case 7: {
      // Forged plaintext content (type 8: 0xC0, then a padded Content), sometimes mangled.
      const body = padded(pick(r, contents), int(r, 40));
      e.type = Envelope.Type.PLAINTEXT_CONTENT;
      e.content = Uint8Array.of(0xc0, ...(r() < 0.3 ? mutate(r, body) : body));
      break;
    }
    case 8:
      e.clientTimestamp = Long.fromString(pick(r, EXTREME_U64), true);
      if (r() < 0.5) e.serverTimestamp = Long.fromString(pick(r, EXTREME_U64), true);
      if (r() < 0.5) e.type = Envelope.Type.SERVER_DELIVERY_RECEIPT;
      break;
    default:
      e.destinationServiceId = pick(r, serviceIds);
      if (r() < 0.5) e.destinationServiceIdBinary = pick(r, serviceIdBinaries);
  }
  return Envelope.encode(e).finish();
}

/**
 * One field-level mutation of a WebSocketMessage: odd ids (none, 0, 2^64-1), verbs and paths,
 * garbage headers, huge bodies, and type fields that disagree with the payload.
 */
function structuredFrame(r: Rand, envelope: () => Uint8Array): Uint8Array {
  const id = pick(r, [
    undefined,
    Long.UZERO,
    Long.MAX_UNSIGNED_VALUE,
    Long.fromNumber(int(r, 1e9), true),
  ]);
  const headers =
    r() < 0.2
      ? Array.from({ length: 1 + int(r, 100) }, () =>
          pick(r, [
            'X-Signal-Timestamp:1',
            'no colon',
            ':',
            `a:${'b'.repeat(4000)}`,
            String.fromCharCode(...bytes(r, 20)),
          ]),
        )
      : [];
  const request = {
    verb: pick(r, ['PUT', 'PUT', 'GET', 'put', '', 'DELETE']),
    path: pick(r, [
      '/api/v1/message',
      '/api/v1/message',
      '/api/v1/queue/empty',
      '/v1/keepalive',
      '',
      '/api/v1/message/',
      '/'.repeat(2000),
    ]),
    body: r() < 0.01 ? bytes(r, 65_536 + int(r, 448 * 1024)) : envelope(),
    headers,
    ...(id ? { id } : {}),
  };
  const response = {
    id: id ?? Long.UZERO,
    status: int(r, 1000),
    message: pick(r, ['OK', '', 'x'.repeat(1000)]),
    body: bytes(r, int(r, 100)),
    headers,
  };
  const T = WebSocketMessage.Type;
  switch (int(r, 6)) {
    case 0:
      return WebSocketMessage.encode({ type: T.REQUEST, request }).finish();
    case 1:
      return WebSocketMessage.encode({ type: T.RESPONSE, request }).finish();
    case 2:
      return WebSocketMessage.encode({ type: T.REQUEST, response }).finish();
    case 3:
      return WebSocketMessage.encode({
        type: pick(r, [0, 3, 99, -1]) as WebSocketMessage.Type,
        request,
      }).finish();
    case 4:
      return WebSocketMessage.encode({ type: T.RESPONSE, response }).finish();
    default:
      return WebSocketMessage.encode({ type: T.REQUEST, request, response }).finish();
  }
}

interface Live {
  sandbox: Sandbox;
  client: SignalClient;
  bob: PrimaryDevice;
  receiver: Receiver;
  lines: string[];
  /** Envelopes as bytes: the real ones Bob sent, then synthetic ones of every type. */
  seeds: Uint8Array[];
  /** The same, decoded, for field-level mutation. */
  envelopes: Envelope[];
  contents: Uint8Array[];
  ids: Ids;
}

/** A linked client that has received real envelopes from Bob (unsealed and sealed), kept as seeds. */
async function live(): Promise<Live> {
  const sandbox = await startSandbox();
  const bob = await sandbox.createPrimary({ profileName: 'Bob' });
  const alice = await sandbox.createPrimary({ profileName: 'Alice', contacts: [bob] });
  const lines: string[] = [];
  const logger = captureLogger(lines);
  const { client } = await linkClient(sandbox, alice, { logger });
  const receiver = inspect(client).receiver();
  assert.ok(receiver);
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
  const ids = { self: account.aci, pni: account.pni, bob: bob.device.aci };
  const envelopes = seeds.map((b) => Envelope.decode(b));
  return {
    sandbox,
    client,
    bob,
    receiver,
    lines,
    seeds,
    envelopes,
    contents: contentSeeds(ids),
    ids,
  };
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

/** Every drop the receiver counted so far (all reasons). */
const dropTotal = (receiver: Receiver) => [...receiver.drops.values()].reduce((a, b) => a + b, 0);

describe('reliability: fuzzing the receive path', function () {
  this.timeout(300_000);
  let l: Live;
  before(async () => {
    l = await live();
  });
  after(async () => {
    await l?.sandbox.close();
  });

  it('10,000 mutated Envelopes (bytes and fields): each answered, each drop logged with its reason, no crash', async () => {
    const r = prng(0x5eed);
    const N = 10_000;
    const statuses = new Map<number, number>();
    const linesBefore = l.lines.length;
    const dropsBefore = dropTotal(l.receiver);
    let events = 0;
    const onEvent = () => void events++;
    l.client.on('event', onEvent);
    const kinds = { random: 0, bytes: 0, fields: 0 };
    await noUnhandled(async () => {
      for (let i = 0; i < N; i++) {
        let body: Uint8Array;
        if (i % 10 === 0) {
          kinds.random++;
          body = bytes(r, int(r, 400));
        } else if (i % 2) {
          kinds.bytes++;
          body = mutate(r, pick(r, l.seeds));
        } else {
          kinds.fields++;
          body = structuredEnvelope(r, l.envelopes, l.contents, l.ids);
        }
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
    const lines = l.lines.slice(linesBefore);
    const drops = dropTotal(l.receiver) - dropsBefore;
    const logged = lines.filter((x) => x.includes('dropped envelope (')).length;
    // Every envelope is ACKed: either recorded (and emitted) or dropped with a logged reason. A 500
    // would make the server redeliver a poison envelope forever.
    assert.deepEqual(
      [...statuses.keys()],
      [200],
      `statuses: ${JSON.stringify([...statuses])}\n${lines
        .filter((x) => x.startsWith('error '))
        .slice(0, 5)
        .join('\n')}`,
    );
    assert.equal(logged, drops, 'each drop has its logged reason');
    assert.deepEqual(
      lines.filter((x) => x.startsWith('error ')),
      [],
      'nothing failed inside the receiver',
    );
    assert.ok(drops > N * 0.9, `most mutations are dropped with a reason (${drops} of ${N})`);
    const reasons = new Set(
      lines.map((x) => /dropped envelope \(([a-z-]+)\)/.exec(x)?.[1]).filter(Boolean),
    );
    for (const reason of [
      'malformed-envelope',
      'decrypt-failed',
      'unsupported-type',
      'missing-source',
      'malformed-content',
      'duplicate',
    ])
      assert.ok(reasons.has(reason), `reason ${reason} seen (${[...reasons].join(', ')})`);
    // Forged plaintext content never comes out as an event (it is not end-to-end authenticated).
    assert.equal(
      lines.filter((x) => x.includes('plaintext content may carry only a retry request')).length >
        0,
      true,
      'forged plaintext content was tried and refused',
    );
    console.log(
      `      ${N} envelopes (${kinds.random} random, ${kinds.bytes} byte-mutated, ${kinds.fields} field-mutated): ${drops} dropped (${[...reasons].join(', ')}), ${N - drops} recorded, ${events} events`,
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
      const answered: string[] = [];
      ws.on('message', (data: Buffer) => {
        const m = WebSocketMessage.decode(data);
        if (m.type === WebSocketMessage.Type.RESPONSE)
          answered.push(Long.fromValue(m.response?.id ?? 0).toString());
      });
      const r = prng(0xf4a3e5);
      const seeds = [
        ...l.seeds.map((body, i) =>
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
      const envelope = () =>
        r() < 0.5 ? pick(r, l.seeds) : structuredEnvelope(r, l.envelopes, l.contents, l.ids);
      const N = 10_000;
      const expected: string[] = [];
      let others = 0;
      const kinds = { random: 0, bytes: 0, fields: 0 };
      await noUnhandled(async () => {
        for (let i = 0; i < N; i++) {
          let frame: Uint8Array;
          if (i % 10 === 0) {
            kinds.random++;
            frame = bytes(r, int(r, 300));
          } else if (i % 2) {
            kinds.bytes++;
            frame = mutate(r, pick(r, seeds));
          } else {
            kinds.fields++;
            frame = structuredFrame(r, envelope);
          }
          // What the client must do with it: a request gets an answer; anything else a log line.
          let decoded: WebSocketMessage | null = null;
          try {
            decoded = WebSocketMessage.decode(frame);
          } catch {
            decoded = null;
          }
          if (decoded?.type === WebSocketMessage.Type.REQUEST && decoded.request)
            expected.push(Long.fromValue(decoded.request.id ?? 0).toString());
          else others++;
          ws.send(frame);
          // Let the client keep up: the socket is the only backpressure here.
          if (i % 200 === 199)
            await until(() => answered.length >= expected.length - 50, 60_000, 'answers');
        }
        await until(
          () => answered.length >= expected.length,
          120_000,
          `${expected.length} answers`,
        );
      });
      // Each request answered once, under its own id.
      assert.deepEqual([...answered].sort(), [...expected].sort(), 'every request frame answered');
      const logged = lines.filter(
        (x) =>
          x.includes('dropped an undecodable frame') ||
          x.includes('dropped a frame of unknown type') ||
          x.includes('response for unknown request'),
      ).length;
      assert.equal(logged, others, 'every other frame was dropped with a logged reason');
      assert.ok(
        expected.length > 1000 && others > 1000,
        `a mix (${expected.length} requests, ${others} others)`,
      );
      assert.deepEqual(
        lines.filter((x) => x.startsWith('error ')),
        [],
        'no handler failed',
      );
      console.log(
        `      ${N} frames (${kinds.random} random, ${kinds.bytes} byte-mutated, ${kinds.fields} field-mutated): ${expected.length} requests answered, ${others} others dropped and logged`,
      );
    } finally {
      await conn.close();
      await server.close();
    }
    await stillReceives(l, 'still here after 10,000 frames');
  });
});
