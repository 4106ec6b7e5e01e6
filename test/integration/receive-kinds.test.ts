/**
 * What a phone can send besides text, as Signal's apps send it (DataMessage / EditMessage fields,
 * PROTOCOL.md §6), each reaching the flow as one typed event: edits, deletes, mentions and styles
 * (UTF-16 offsets, as received), quotes, timer changes, view-once, reactions; and a sender's Signal
 * profile name on `from.name` once their profile is fetched.
 */
import assert from 'node:assert/strict';
import { Aci } from '@signalapp/libsignal-client';
import { EMPTY_DATA_MESSAGE } from '@signalapp/mock-server';
import type { SignalClient } from '../../core/client';
import type { AccountSession } from '../../core/account/session';
import type { IncomingEvent } from '../../core/types';
import { inspect, linkedWithBobPerTest } from './helpers';
import { introduce, type MockDevice } from '../harness/mock-phone';
import type { PrimaryDevice } from '../harness/sandbox';
import { until } from '../harness/wait';

type FromSomeone = Exclude<IncomingEvent, { type: 'identity-change' | 'receipt' }>;

function collect(client: SignalClient): FromSomeone[] {
  const seen: FromSomeone[] = [];
  client.on('event', (ev: IncomingEvent) => {
    if (ev.type !== 'receipt' && ev.type !== 'identity-change') seen.push(ev);
  });
  return seen;
}

const aciBytes = (aci: string) => Aci.parseFromServiceIdString(aci).getServiceIdBinary();

function sendData(
  phone: PrimaryDevice,
  target: MockDevice,
  fields: Record<string, unknown>,
): Promise<void> {
  return phone.sendRaw(
    target,
    {
      content: {
        dataMessage: { ...EMPTY_DATA_MESSAGE, timestamp: BigInt(Date.now()), ...fields },
      },
      pniSignatureMessage: null,
      senderKeyDistributionMessage: null,
    } as never,
    {} as never,
  ) as unknown as Promise<void>;
}

describe('integration: receiving rich messages', function () {
  this.timeout(90_000);
  const world = linkedWithBobPerTest();

  it('an edit is an `edit` event naming the original, never a second message', async () => {
    const seen = collect(world.client);
    const original = Date.now() - 1000;
    await sendData(world.bob, world.device, { body: 'frist', timestamp: BigInt(original) });
    await until(() => seen.length === 1, 10_000, 'the original');
    const editedAt = Date.now();
    await world.bob.sendRaw(
      world.device,
      {
        content: {
          editMessage: {
            targetSentTimestamp: BigInt(original),
            dataMessage: {
              ...EMPTY_DATA_MESSAGE,
              body: 'first',
              timestamp: BigInt(editedAt),
              bodyRanges: [{ start: 0, length: 5, associatedValue: { style: 1 } }],
            },
          },
        },
        pniSignatureMessage: null,
        senderKeyDistributionMessage: null,
      } as never,
      {} as never,
    );
    await until(() => seen.length === 2, 10_000, 'the edit');
    await world.client.idle();
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(seen.length, 2);
    const edit = seen[1];
    assert.ok(edit?.type === 'edit', `an edit event, not ${edit?.type}`);
    assert.equal(edit.targetTimestamp, original);
    assert.equal(edit.body, 'first');
    assert.equal(edit.timestamp, editedAt);
    assert.deepEqual(edit.styles, [{ style: 'bold', start: 0, length: 5 }]);
    assert.equal(seen.filter((e) => e.type === 'message').length, 1);
  });

  it('a delete for everyone is a `delete` event', async () => {
    const seen = collect(world.client);
    await sendData(world.bob, world.device, { delete: { targetSentTimestamp: 1234567n } });
    await until(() => seen.length === 1, 10_000, 'the delete');
    const ev = seen[0];
    assert.ok(ev?.type === 'delete');
    assert.equal(ev.targetTimestamp, 1234567);
    assert.equal(ev.from.aci, world.bob.device.aci);
  });

  it('mentions and styles come with their UTF-16 offsets as received', async () => {
    const seen = collect(world.client);
    // "👋 \uFFFC look" : the emoji is two UTF-16 code units, so the mention starts at 3.
    const body = '👋 \uFFFC look: bold mono';
    await sendData(world.bob, world.device, {
      body,
      bodyRanges: [
        {
          start: 3,
          length: 1,
          associatedValue: { mentionAciBinary: aciBytes(world.alice.device.aci) },
        },
        { start: 11, length: 4, associatedValue: { style: 1 } },
        { start: 16, length: 4, associatedValue: { style: 5 } },
        { start: 0, length: 2, associatedValue: { style: 3 } },
      ],
    });
    await until(() => seen.length === 1, 10_000, 'the message');
    const ev = seen[0];
    assert.ok(ev?.type === 'message');
    assert.equal(ev.body, body);
    assert.deepEqual(ev.mentions, [{ aci: world.alice.device.aci, start: 3, length: 1 }]);
    assert.deepEqual(ev.styles, [
      { style: 'bold', start: 11, length: 4 },
      { style: 'monospace', start: 16, length: 4 },
      { style: 'spoiler', start: 0, length: 2 },
    ]);
    assert.equal(body.slice(11, 15), 'bold');
  });

  it('a quote names the quoted message, its author and text', async () => {
    const seen = collect(world.client);
    await sendData(world.bob, world.device, {
      body: 'agreed',
      quote: {
        id: 42n,
        authorAci: null,
        authorAciBinary: aciBytes(world.alice.device.aci),
        text: 'lunch?',
        attachments: [],
        bodyRanges: [],
        type: 0,
      },
    });
    await until(() => seen.length === 1, 10_000, 'the reply');
    const ev = seen[0];
    assert.ok(ev?.type === 'message');
    assert.deepEqual(ev.quote, { id: 42, authorAci: world.alice.device.aci, text: 'lunch?' });
  });

  it('a timer change without text is a `timer` event; a message carries its timer', async () => {
    const seen = collect(world.client);
    await sendData(world.bob, world.device, {
      flags: 2,
      expireTimer: 3600,
      expireTimerVersion: 2,
    });
    await until(() => seen.length === 1, 10_000, 'the timer change');
    const ev = seen[0];
    assert.ok(ev?.type === 'timer', `a timer event, not ${ev?.type}`);
    assert.equal(ev.expiresInSeconds, 3600);
    assert.equal(ev.version, 2);
    await sendData(world.bob, world.device, {
      body: 'vanishing',
      expireTimer: 3600,
      expireTimerVersion: 2,
    });
    await until(() => seen.length === 2, 10_000, 'the message');
    const msg = seen[1];
    assert.ok(msg?.type === 'message');
    assert.equal(msg.expiresInSeconds, 3600);
    assert.equal(msg.timerVersion, 2);
    assert.equal(msg.timerChange, undefined, 'a message that keeps the timer does not change it');
  });

  it('view-once is flagged', async () => {
    const seen = collect(world.client);
    await sendData(world.bob, world.device, { body: 'once', isViewOnce: true });
    await until(() => seen.length === 1, 10_000, 'the view-once message');
    const ev = seen[0];
    assert.ok(ev?.type === 'message');
    assert.equal(ev.viewOnce, true);
  });

  it('a reaction is a message with its reaction', async () => {
    const seen = collect(world.client);
    await sendData(world.bob, world.device, {
      reaction: {
        emoji: '👍',
        remove: false,
        targetAuthorAci: null,
        targetAuthorAciBinary: aciBytes(world.alice.device.aci),
        targetSentTimestamp: 777n,
      },
    });
    await until(() => seen.length === 1, 10_000, 'the reaction');
    const ev = seen[0];
    assert.ok(ev?.type === 'message');
    assert.equal(ev.body, '👍');
    assert.deepEqual(ev.reaction, {
      emoji: '👍',
      remove: false,
      targetTimestamp: 777,
      targetAuthorAci: world.alice.device.aci,
    });
  });

  it('a sender not in the contacts gets the name of their Signal profile, fetched after their first message', async () => {
    const carol = await world.sandbox.createPrimary({ profileName: 'Carol' });
    const device = await introduce(world.sandbox, world.client, carol);
    const seen = collect(world.client);
    await carol.sendText(device, 'hello, I am new', { withProfileKey: true });
    await until(() => seen.length === 1, 10_000, 'the first message');
    assert.equal(seen[0]?.from.name, undefined, 'not a contact, profile not fetched yet');
    const session = (world.client as unknown as { session: AccountSession }).session;
    await until(
      () =>
        inspect(world.client).store()?.contacts.findByServiceId(carol.device.aci)?.profileName ===
        'Carol',
      10_000,
      'the profile name stored',
    );
    await session.profiles.idle();
    await carol.sendText(device, 'me again');
    await until(() => seen.length === 2, 10_000, 'the second message');
    assert.equal(seen[1]?.from.name, 'Carol');
    const contact = inspect(world.client).store()?.contacts.findByServiceId(carol.device.aci);
    assert.ok(contact?.profileFetchedAt, 'the fetch time is kept (refreshed at most daily)');
  });
});
