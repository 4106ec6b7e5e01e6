/**
 * The node-level table of bad inputs (issue 8): each row sends one bad msg through the test helper
 * and expects a clear error (done(err) with a code, a message naming what was wrong, a red status),
 * then the same node handles a good msg. Limits: MAX_TEXT_BYTES, MAX_RECIPIENTS and
 * MAX_LOOKUP_NUMBERS in nodes/lib/msg.ts.
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import accountNode = require('../../nodes/signal-account');
import outNode = require('../../nodes/signal-out');
import inNode = require('../../nodes/signal-in');
import lookupNode = require('../../nodes/signal-lookup');
import { MAX_LOOKUP_NUMBERS, MAX_RECIPIENTS, MAX_TEXT_BYTES } from '../../nodes/lib/msg';
import type { NodeMessage } from '../../nodes/lib/red';
import { startSandbox, withTimeout, type PrimaryDevice, type Sandbox } from '../harness/sandbox';
import {
  accountConfig,
  helper,
  linkThroughAdminRoutes,
  nextError,
  nextInput,
  statusesOf,
  type AccountTestNode,
  type TestNode,
} from './support';

interface Row {
  name: string;
  /** The bad msg; a function when it needs the sandbox's phones. */
  msg: () => NodeMessage;
  code: string;
  /** What the error message must say; a function when it names a phone of the sandbox. */
  message: RegExp | (() => RegExp);
}

const uuid = () => crypto.randomUUID();

describe('nodes: bad input table (each row: a clear error, then the node still works)', function () {
  this.timeout(60_000);
  let sandbox: Sandbox;
  let alice: PrimaryDevice;
  let bob: PrimaryDevice;
  let dave: PrimaryDevice;
  let dataDir: string;
  let good = 0;

  const flow = () => [
    accountConfig(sandbox, 'acct1', 'Alice'),
    accountConfig(sandbox, 'acct2', 'Spare'),
    { id: 'out1', type: 'signal-out', account: 'acct1', to: '', wires: [['outSink']] },
    { id: 'lookup1', type: 'signal-lookup', account: 'acct1', wires: [['lookupSink']] },
    { id: 'in1', type: 'signal-in', account: 'acct1', types: 'message', wires: [['inSink']] },
    { id: 'out2', type: 'signal-out', account: 'acct2', to: '', wires: [['outSink']] },
    { id: 'lookup2', type: 'signal-lookup', account: 'acct2', wires: [['lookupSink']] },
    { id: 'in2', type: 'signal-in', account: 'acct2', wires: [['inSink']] },
    { id: 'inNone', type: 'signal-in', account: '', wires: [['inSink']] },
    { id: 'outNone', type: 'signal-out', account: '', wires: [['outSink']] },
    { id: 'outSink', type: 'helper' },
    { id: 'lookupSink', type: 'helper' },
    { id: 'inSink', type: 'helper' },
  ];
  const node = (id: string) => helper.getNode(id) as TestNode;

  before(async () => {
    sandbox = await startSandbox();
    bob = await sandbox.createPrimary({ profileName: 'Bob' });
    dave = await sandbox.createPrimary({ profileName: 'Dave' });
    sandbox.server.unregister(dave);
    alice = await sandbox.createPrimary({ profileName: 'Alice', contacts: [bob] });
    dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sigflow-bad-input-'));
    helper.settings({ signalAccountDataDir: dataDir });
    await helper.load([accountNode, outNode, inNode, lookupNode], flow());
    await linkThroughAdminRoutes(sandbox, 'acct1', alice);
  });
  after(async () => {
    await helper.unload();
    await sandbox.close();
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  /** A bad msg into `id`: the error it reports, checked against the row, and a red status. */
  async function expectFailure(id: string, msg: NodeMessage, code: string, message: RegExp) {
    const err = nextError(node(id));
    node(id).receive(msg);
    const e = await err;
    assert.equal(e.code, code, `code for ${describeMsg(msg)}: ${e.message}`);
    assert.match(e.message, message);
    const last = statusesOf(id).at(-1);
    assert.equal(last?.fill, 'red', JSON.stringify(last));
    assert.equal(last?.shape, 'ring');
    assert.equal(last?.text, code.toLowerCase().replace(/_/g, ' '));
  }

  /** A good msg into signal-out `id`: sent, reported, and Bob receives exactly it next. */
  async function expectSendWorks(id: string) {
    const text = `good message ${++good}`;
    const out = nextInput(node('outSink'), (m) => m.payload === text);
    node(id).receive({ payload: text, to: bob.device.aci });
    const results = ((await out).signal as { results: Array<{ status: string }> }).results;
    assert.deepEqual(
      results.map((r) => r.status),
      ['sent'],
    );
    // Bob's next message is this one: nothing of the bad msg reached him first.
    assert.equal((await withTimeout(bob.waitForMessage(), 10_000, 'bob')).body, text);
    assert.deepEqual(statusesOf(id).at(-1), { fill: 'green', shape: 'dot', text: 'sent to 1' });
  }

  async function expectLookupWorks(id: string) {
    const out = nextInput(node('lookupSink'));
    node(id).receive({ payload: bob.device.number });
    assert.deepEqual((await out).payload, {
      number: bob.device.number,
      aci: bob.device.aci,
      pni: null,
      registered: true,
    });
  }

  const outRows: Row[] = [
    {
      name: 'payload an empty string',
      msg: () => ({ payload: '', to: bob.device.aci }),
      code: 'INVALID_INPUT',
      message: /msg\.payload is empty/,
    },
    {
      name: 'payload an object',
      msg: () => ({ payload: { text: 'hi' }, to: bob.device.aci }),
      code: 'INVALID_INPUT',
      message: /msg\.payload must be text .* but it is an object/,
    },
    {
      name: 'payload an array',
      msg: () => ({ payload: ['hi'], to: bob.device.aci }),
      code: 'INVALID_INPUT',
      message: /but it is an array/,
    },
    {
      name: 'payload null',
      msg: () => ({ payload: null, to: bob.device.aci }),
      code: 'INVALID_INPUT',
      message: /but it is null/,
    },
    {
      name: 'payload undefined',
      msg: () => ({ payload: undefined, to: bob.device.aci }),
      code: 'INVALID_INPUT',
      message: /but it is missing/,
    },
    {
      name: 'no payload at all',
      msg: () => ({ to: bob.device.aci }),
      code: 'INVALID_INPUT',
      message: /but it is missing/,
    },
    {
      name: 'payload a 1 MB string',
      msg: () => ({ payload: 'x'.repeat(1024 * 1024), to: bob.device.aci }),
      code: 'INVALID_INPUT',
      message: new RegExp(`too long: 1048576 bytes .* at most ${MAX_TEXT_BYTES} bytes`),
    },
    {
      name: `payload one byte over ${MAX_TEXT_BYTES} bytes of UTF-8 (counted in bytes, not characters)`,
      // 682 × "€" (3 bytes) + "ab" = 2048 bytes; one more "€" makes 2051 with only 685 characters.
      msg: () => ({ payload: '€'.repeat(683) + 'ab', to: bob.device.aci }),
      code: 'INVALID_INPUT',
      message: /too long: 2051 bytes/,
    },
    {
      name: 'msg.to an array of 1,000 recipients',
      msg: () => ({ payload: 'x', to: Array.from({ length: 1000 }, () => bob.device.aci) }),
      code: 'INVALID_INPUT',
      message: new RegExp(`Too many recipients: 1000, .* at most ${MAX_RECIPIENTS}`),
    },
    {
      name: 'msg.to a number too short to be a phone number',
      msg: () => ({ payload: 'x', to: '+12' }),
      code: 'INVALID_NUMBER',
      message: /"\+12" is not a valid phone number/,
    },
    {
      name: 'msg.to letters',
      msg: () => ({ payload: 'x', to: 'call me maybe' }),
      code: 'INVALID_NUMBER',
      message: /"call me maybe"/,
    },
    {
      name: 'msg.to a national number without a country code',
      msg: () => ({ payload: 'x', to: '0301234567' }),
      code: 'INVALID_NUMBER',
      message: /"0301234567" has no country code/,
    },
    {
      name: 'msg.to a list with one malformed number (nothing is sent to the others)',
      msg: () => ({ payload: 'x', to: [bob.device.aci, '+1 555 12'] }),
      code: 'INVALID_NUMBER',
      message: /"\+1 555 12"/,
    },
    {
      name: 'msg.to an ACI that is not (or no longer) on Signal',
      msg: () => ({ payload: 'x', to: dave.device.aci }),
      code: 'NOT_ON_SIGNAL',
      message: () => new RegExp(`${dave.device.aci}.* not registered on Signal`),
    },
    {
      name: 'msg.to a UUID Signal never knew',
      msg: () => ({ payload: 'x', to: 'a0f1e2d3-0000-4000-8000-00000000beef' }),
      code: 'NOT_ON_SIGNAL',
      message: /a0f1e2d3-0000-4000-8000-00000000beef/,
    },
    {
      name: 'msg.to "PNI:" followed by garbage',
      msg: () => ({ payload: 'x', to: 'PNI:garbage' }),
      code: 'INVALID_INPUT',
      message: /"PNI:garbage" is not a valid PNI/,
    },
    {
      name: 'msg.to a number type',
      msg: () => ({ payload: 'x', to: 15551234567 }),
      code: 'INVALID_INPUT',
      message: /msg\.to is a number \(15551234567\): give the phone number as text/,
    },
    {
      name: 'msg.to an array holding a number type',
      msg: () => ({ payload: 'x', to: [bob.device.aci, 15551234567] }),
      code: 'INVALID_INPUT',
      message: /msg\.to\[1\] is a number \(15551234567\), not text/,
    },
    {
      name: 'msg.to an object',
      msg: () => ({ payload: 'x', to: { number: '+15551234567' } }),
      code: 'INVALID_INPUT',
      message: /msg\.to must be .* but it is an object/,
    },
    {
      name: 'msg.to an empty array',
      msg: () => ({ payload: 'x', to: [] }),
      code: 'INVALID_INPUT',
      message: /No recipient: msg\.to is empty/,
    },
    {
      name: 'no recipient at all',
      msg: () => ({ payload: 'x' }),
      code: 'INVALID_INPUT',
      message: /No recipient: set msg\.to or the node's "To"/,
    },
  ];

  for (const row of outRows) {
    it(`signal-out, ${row.name}: ${row.code}, then the node still sends`, async () => {
      await expectFailure(
        'out1',
        row.msg(),
        row.code,
        typeof row.message === 'function' ? row.message() : row.message,
      );
      await expectSendWorks('out1');
    });
  }

  it(`signal-out sends a text of exactly ${MAX_TEXT_BYTES} bytes as Signal's apps send a long one`, async () => {
    const text = '€'.repeat(682) + 'ab';
    assert.equal(Buffer.byteLength(text), MAX_TEXT_BYTES);
    const out = nextInput(node('outSink'), (m) => m.payload === text);
    node('out1').receive({ payload: text, to: bob.device.aci });
    await out;
    // Over 2,000 bytes: the first 2,000 (cut between characters) inline, the whole as an attachment.
    const got = await withTimeout(bob.waitForMessage(), 10_000, 'bob');
    assert.equal(got.body, '€'.repeat(666));
    assert.equal(got.dataMessage.attachments?.[0]?.contentType, 'text/x-signal-plain');
  });

  it(`signal-out sends to ${MAX_RECIPIENTS} recipients (the most one msg takes), each reported`, async () => {
    const to = Array.from({ length: MAX_RECIPIENTS }, (_, i) =>
      i === 0 ? bob.device.aci : uuid(),
    );
    const err = nextError(node('out1'), 30_000);
    const out = nextInput(node('outSink'), (m) => m.to === to, 30_000);
    node('out1').receive({ payload: 'to many', to });
    const signal = (await out).signal as {
      timestamp: number;
      results: Array<{ to: string; status: string; timestamp?: number }>;
    };
    const results = signal.results;
    assert.equal(results.length, MAX_RECIPIENTS);
    assert.deepEqual(results[0], {
      to: bob.device.aci,
      serviceId: bob.device.aci,
      timestamp: signal.timestamp,
      status: 'sent',
    });
    assert.ok(results.slice(1).every((r) => r.status === 'failed'));
    const e = await err;
    assert.equal(e.code, 'NOT_ON_SIGNAL');
    assert.match(e.message, new RegExp(`failed for ${MAX_RECIPIENTS - 1} of ${MAX_RECIPIENTS}`));
    assert.equal((await withTimeout(bob.waitForMessage(), 10_000, 'bob')).body, 'to many');
    await expectSendWorks('out1');
  });

  it('signal-out sends to several recipients at once and reports them in input order', async () => {
    // The same person twice (by ACI and by number): sent one after the other on his session.
    const to = [uuid(), bob.device.aci, String(bob.device.number), uuid()];
    const err = nextError(node('out1'), 30_000);
    const out = nextInput(node('outSink'), (m) => m.to === to, 30_000);
    node('out1').receive({ payload: 'in order', to });
    const signal = (await out).signal as {
      timestamp: number;
      results: Array<{ to: string; status: string; timestamp?: number; serviceId?: string }>;
    };
    assert.deepEqual(
      signal.results.map((r) => [r.to, r.status]),
      to.map((t, i) => [t, i === 1 || i === 2 ? 'sent' : 'failed']),
    );
    assert.equal(signal.timestamp, signal.results[1]?.timestamp, 'the first sent, in input order');
    assert.equal(signal.results[2]?.serviceId, bob.device.aci);
    assert.equal((await err).code, 'NOT_ON_SIGNAL');
    const bodies = [
      (await withTimeout(bob.waitForMessage(), 10_000, 'bob')).body,
      (await withTimeout(bob.waitForMessage(), 10_000, 'bob')).body,
    ];
    assert.deepEqual(bodies, ['in order', 'in order']);
    await expectSendWorks('out1');
  });

  const lookupRows: Row[] = [
    {
      name: 'payload an empty string',
      msg: () => ({ payload: '' }),
      code: 'INVALID_INPUT',
      message: /msg\.payload is empty: give a phone number/,
    },
    {
      name: 'a malformed number',
      msg: () => ({ payload: '+12' }),
      code: 'INVALID_NUMBER',
      message: /"\+12" is not a valid phone number/,
    },
    {
      name: 'an array with one malformed number',
      msg: () => ({ payload: [bob.device.number, 'not-a-number'] }),
      code: 'INVALID_NUMBER',
      message: /"not-a-number"/,
    },
    {
      name: `${MAX_LOOKUP_NUMBERS + 1} numbers`,
      msg: () => ({
        payload: Array.from({ length: MAX_LOOKUP_NUMBERS + 1 }, () => bob.device.number),
      }),
      code: 'INVALID_INPUT',
      message: new RegExp(
        `Too many numbers: ${MAX_LOOKUP_NUMBERS + 1}, .* at most ${MAX_LOOKUP_NUMBERS}`,
      ),
    },
    {
      name: 'payload a number type',
      msg: () => ({ payload: 15551234567 }),
      code: 'INVALID_INPUT',
      message: /msg\.payload is a number \(15551234567\): give the phone number as text/,
    },
    {
      name: 'payload an array holding null',
      msg: () => ({ payload: [bob.device.number, null] }),
      code: 'INVALID_INPUT',
      message: /msg\.payload\[1\] is null, not text/,
    },
    {
      name: 'payload an object',
      msg: () => ({ payload: { number: bob.device.number } }),
      code: 'INVALID_INPUT',
      message: /must be a phone number or an array of phone numbers, but it is an object/,
    },
    {
      name: 'payload an empty array',
      msg: () => ({ payload: [] }),
      code: 'INVALID_INPUT',
      message: /empty array/,
    },
  ];

  for (const row of lookupRows) {
    it(`signal-lookup, ${row.name}: ${row.code}, then the node still looks up`, async () => {
      await expectFailure(
        'lookup1',
        row.msg(),
        row.code,
        typeof row.message === 'function' ? row.message() : row.message,
      );
      await expectLookupWorks('lookup1');
    });
  }

  it(`signal-lookup answers ${MAX_LOOKUP_NUMBERS} numbers in one msg, in input order`, async () => {
    const numbers = Array.from({ length: MAX_LOOKUP_NUMBERS }, () => bob.device.number);
    const out = nextInput(node('lookupSink'));
    node('lookup1').receive({ payload: numbers });
    const payload = (await out).payload as Array<{ number: string; aci: string }>;
    assert.equal(payload.length, MAX_LOOKUP_NUMBERS);
    assert.ok(payload.every((p) => p.number === bob.device.number && p.aci === bob.device.aci));
    await expectLookupWorks('lookup1');
  });

  // signal-in → signal-out and signal-in → signal-lookup: what msg.signal said about the received
  // item stays; the keys the node sets are its own (nodes/lib/signal-prop.ts).
  it('signal-out merges into msg.signal: the received item’s fields stay, timestamp and results are the send’s', async () => {
    const received = { type: 'message', from: { aci: bob.device.aci }, timestamp: 1, results: 'x' };
    const sent = nextInput(node('outSink'), (m) => m.payload === 'merged');
    node('out1').receive({ payload: 'merged', to: bob.device.aci, signal: received });
    const signal = (await sent).signal as Record<string, unknown>;
    assert.equal(signal.type, 'message');
    assert.deepEqual(signal.from, { aci: bob.device.aci });
    const results = signal.results as Array<{ status: string; timestamp: number }>;
    assert.deepEqual(
      results.map((r) => r.status),
      ['sent'],
    );
    assert.equal(signal.timestamp, results[0]?.timestamp);
    assert.notEqual(signal.timestamp, 1);
    assert.equal((await withTimeout(bob.waitForMessage(), 10_000, 'bob')).body, 'merged');
    // The msg's own object is not changed in place: a msg sharing it keeps what it said.
    assert.equal(received.timestamp, 1);

    // Nothing sent: no timestamp at all, rather than the received item's taken for the send's.
    const failedOut = nextInput(node('outSink'), (m) => m.payload === 'to nobody');
    const err = nextError(node('out1'));
    node('out1').receive({ payload: 'to nobody', to: dave.device.aci, signal: received });
    assert.equal((await err).code, 'NOT_ON_SIGNAL');
    const failed = (await failedOut).signal as Record<string, unknown>;
    assert.equal(failed.type, 'message');
    assert.ok(!('timestamp' in failed), JSON.stringify(failed));
    assert.deepEqual(
      (failed.results as Array<{ status: string }>).map((r) => r.status),
      ['failed'],
    );
  });

  it('signal-lookup merges into msg.signal: the received item’s fields stay, lookup is the lookup’s; a msg.signal that is not an object is replaced', async () => {
    const out = nextInput(node('lookupSink'));
    node('lookup1').receive({
      payload: bob.device.number,
      signal: { type: 'message', from: { aci: bob.device.aci }, lookup: 'stale' },
    });
    const signal = (await out).signal as Record<string, unknown>;
    assert.equal(signal.type, 'message');
    assert.deepEqual(signal.from, { aci: bob.device.aci });
    const lookup = signal.lookup as { source: string; sources: string[] };
    assert.deepEqual(lookup.sources, [lookup.source]);
    assert.deepEqual(statusesOf('lookup1').at(-1), {
      fill: 'green',
      shape: 'dot',
      text: '1/1 on Signal',
    });

    const replaced = nextInput(node('lookupSink'));
    node('lookup1').receive({ payload: bob.device.number, signal: 'not an object' });
    assert.deepEqual(Object.keys((await replaced).signal as object), ['lookup']);
  });

  it('signal-in with no account configured: a red status and an error naming it; others still receive', async () => {
    assert.deepEqual(statusesOf('inNone').at(-1), {
      fill: 'red',
      shape: 'ring',
      text: 'no account',
    });
    const logged = helper
      .log()
      .getCalls()
      .map((c) => c.args[0] as { id?: string; level?: number; msg?: unknown })
      .filter((l) => l.id === 'inNone');
    assert.ok(
      logged.some((l) => /No Signal account is configured for this node/.test(String(l.msg))),
      JSON.stringify(logged),
    );
    // The node with an account keeps receiving.
    const acct = await (helper.getNode('acct1') as AccountTestNode).client();
    const a = acct.account;
    assert.ok(a);
    const device = await sandbox.server.getDeviceByServiceId(a.aci as never, a.deviceId as never);
    assert.ok(device);
    await bob.addSingleUseKey(device, await device.popSingleUseKey());
    const received = nextInput(node('inSink'), (m) => m.payload === 'still listening');
    await bob.sendText(device, 'still listening');
    assert.equal((await received).to, bob.device.aci);
  });

  it('signal-out with no account configured: NOT_LINKED naming it, and the node keeps answering', async () => {
    for (let i = 0; i < 2; i++) {
      await expectFailure(
        'outNone',
        { payload: 'x', to: bob.device.aci },
        'NOT_LINKED',
        /No Signal account is configured for this node/,
      );
    }
  });

  it('an account not linked yet: signal-in shows it, signal-out and signal-lookup fail with NOT_LINKED; once linked, the same nodes work', async () => {
    assert.deepEqual(statusesOf('in2').at(-1), { fill: 'grey', shape: 'ring', text: 'not linked' });
    await expectFailure(
      'out2',
      { payload: 'x', to: bob.device.aci },
      'NOT_LINKED',
      /"Spare" is not linked yet: open it in the editor and click "Link device"/,
    );
    await expectFailure('lookup2', { payload: bob.device.number }, 'NOT_LINKED', /not linked yet/);
    // A bad msg is named as such even before linking.
    await expectFailure('out2', { payload: {}, to: bob.device.aci }, 'INVALID_INPUT', /object/);
    await linkThroughAdminRoutes(sandbox, 'acct2', alice);
    await expectSendWorks('out2');
    await expectLookupWorks('lookup2');
  });
});

function describeMsg(msg: NodeMessage): string {
  const s = JSON.stringify(msg, (_k, v: unknown) =>
    typeof v === 'string' && v.length > 60 ? `${v.slice(0, 20)}…(${v.length})` : v,
  );
  return s.length > 200 ? `${s.slice(0, 200)}…` : s;
}
