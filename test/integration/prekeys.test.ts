import assert from 'node:assert/strict';
import { getKeyCounts } from '../../core/api';
import type { IncomingEvent } from '../../core/types';
import { linkClient, startSandbox, withTimeout, type Sandbox, inspect } from './helpers';
import { until } from '../harness/wait';
import { introduce } from '../harness/mock-phone';

const DAY = 24 * 60 * 60 * 1000;

describe('integration: prekey maintenance and store upkeep', function () {
  this.timeout(120_000);
  let sandbox: Sandbox;
  beforeEach(async () => {
    sandbox = await startSandbox();
  });
  afterEach(async () => {
    await sandbox.close();
  });

  it('refills the one-time keys that first messages from new contacts consumed, by itself after a reconnect', async () => {
    const alice = await sandbox.createPrimary({ profileName: 'Alice' });
    const { client } = await linkClient(sandbox, alice, {
      connection: { backoff: { baseMs: 50, maxMs: 200 } },
      prekeys: { threshold: 98 },
    });
    const chat = inspect(client).chat();
    assert.ok(chat);
    const bodies: string[] = [];
    client.on('event', (ev: IncomingEvent) => {
      if (ev.type === 'message') bodies.push(ev.body);
    });
    const contacts = await Promise.all(
      ['Carol', 'Dan', 'Erin'].map((name) => sandbox.createPrimary({ profileName: name })),
    );
    for (const c of contacts) {
      const device = await introduce(sandbox, client, c);
      await c.sendText(device, `hi from ${c.device.aci}`);
    }
    await until(() => bodies.length === 3, 10_000, 'three first messages');
    assert.equal((await getKeyCounts(chat, 'aci')).count, 97, 'three keys handed out');

    // No refreshPreKeys(): the reconnect's check notices 97 < 98 and refills.
    inspect(client).chat()?.dropConnection();
    await until(
      async () =>
        chat.state === 'connected' &&
        (await getKeyCounts(chat, 'aci').catch(() => null))?.count === 100,
      20_000,
      'automatic refill after the reconnect',
    );
    assert.equal((await getKeyCounts(chat, 'aci')).pqCount, 100);
    // A new contact gets a key from the new batch, and that first message decrypts.
    const frank = await sandbox.createPrimary({ profileName: 'Frank' });
    const device = await introduce(sandbox, client, frank);
    await frank.sendText(device, 'hi from the new batch');
    await until(() => bodies.includes('hi from the new batch'), 10_000, 'message on a new key');
  });

  it('prunes the sent log (message content) past 14 days on a later check, not only at the first connect', async () => {
    const bob = await sandbox.createPrimary({ profileName: 'Bob' });
    const alice = await sandbox.createPrimary({ profileName: 'Alice', contacts: [bob] });
    let offset = 0;
    const { client } = await linkClient(sandbox, alice, {
      connection: { backoff: { baseMs: 50, maxMs: 200 } },
      now: () => Date.now() + offset,
    });
    const store = inspect(client).store();
    assert.ok(store);
    const sent = await client.send(bob.device.aci, { text: 'kept 14 days at most' });
    await withTimeout(bob.waitForMessage(), 10_000, 'bob');
    assert.ok(store.sent.find(bob.device.aci, sent.timestamp), 'logged for retry requests');
    offset = 15 * DAY;
    // The process never restarted: the check after this reconnect prunes it.
    inspect(client).chat()?.dropConnection();
    await until(
      () => store.sent.find(bob.device.aci, sent.timestamp) === undefined,
      20_000,
      'sent log pruned',
    );
  });
});
