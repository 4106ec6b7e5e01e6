/**
 * Who a message is from: an unsealed envelope names only the sender's ACI, and a sealed one names
 * their number only when they share it. A contact synced from the phone still comes with its number
 * and name (DESIGN.md, signal-in: `from.number` from the contacts).
 */
import assert from 'node:assert/strict';
import type { SignalClient } from '../../core/client';
import type { IncomingEvent, MessageEvent } from '../../core/types';
import { linkClient, startSandbox, type PrimaryDevice, type Sandbox, inspect } from './helpers';
import { introduce } from '../harness/mock-phone';
import { until } from '../harness/wait';

function messages(client: SignalClient): MessageEvent[] {
  const seen: MessageEvent[] = [];
  client.on('event', (ev: IncomingEvent) => {
    if (ev.type === 'message') seen.push(ev);
  });
  return seen;
}

describe('integration: the sender of a message, from the contacts', function () {
  this.timeout(60_000);
  let sandbox: Sandbox;
  let bob: PrimaryDevice;
  let carol: PrimaryDevice;
  let client: SignalClient;

  beforeEach(async () => {
    sandbox = await startSandbox();
    bob = await sandbox.createPrimary({ profileName: 'Bob' });
    carol = await sandbox.createPrimary({ profileName: 'Carol' });
    const alice = await sandbox.createPrimary({ profileName: 'Alice', contacts: [bob] });
    ({ client } = await linkClient(sandbox, alice));
    const store = inspect(client).store();
    assert.ok(store);
    await until(
      () => Boolean(store.contacts.findByNumber(String(bob.device.number))),
      10_000,
      'contacts synced from the phone',
    );
  });
  afterEach(async () => {
    await sandbox.close();
  });

  it("a synced contact's unsealed message carries their number and name; a stranger's only the ACI", async () => {
    const seen = messages(client);
    const bobDevice = await introduce(sandbox, client, bob);
    await bob.sendText(bobDevice, 'from a contact');
    await until(() => seen.length === 1, 10_000, "Bob's message");
    const fromBob = seen[0];
    assert.ok(fromBob);
    assert.equal(fromBob.sealed, false, 'the envelope itself names no number');
    assert.deepEqual(fromBob.from, {
      aci: bob.device.aci,
      device: 1,
      number: bob.device.number,
      name: 'Bob',
    });
    const carolDevice = await introduce(sandbox, client, carol);
    await carol.sendText(carolDevice, 'from a stranger');
    await until(() => seen.length === 2, 10_000, "Carol's message");
    assert.deepEqual(seen[1]?.from, { aci: carol.device.aci, device: 1 });
  });
});
