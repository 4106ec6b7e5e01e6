import assert from 'node:assert/strict';
import { linkClient, startSandbox, withTimeout, type Sandbox } from './helpers';

async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`${what}: not reached within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('integration: contacts sync and sending to a phone number', function () {
  this.timeout(60_000);
  let sandbox: Sandbox;
  beforeEach(async () => {
    sandbox = await startSandbox();
  });
  afterEach(async () => {
    await sandbox.close();
  });

  it("learns the phone's contacts after linking, and send('+1…') reaches that contact", async () => {
    const bob = await sandbox.createPrimary({ profileName: 'Bob' });
    const carol = await sandbox.createPrimary({ profileName: 'Carol' });
    const alice = await sandbox.createPrimary({ profileName: 'Alice', contacts: [bob, carol] });
    const { client } = await linkClient(sandbox, alice);
    const store = client.storeForTesting;
    assert.ok(store);
    const bobNumber = String(bob.device.number);
    const carolNumber = String(carol.device.number);
    await until(
      () => Boolean(store.contacts.findByNumber(carolNumber)),
      10_000,
      'contacts synced from the phone',
    );
    const [b, c] = await client.lookup([bobNumber, carolNumber]);
    assert.deepEqual(
      [b?.aci, c?.aci, b?.source, b?.registered],
      [bob.device.aci, carol.device.aci, 'contacts', true],
    );
    // A number as people write it: spaces and brackets are fine.
    const written = bobNumber.replace(/^\+1(\d{3})(\d{3})/, '+1 ($1) $2-');
    const sent = await client.send(written, 'to your number');
    assert.equal(sent.serviceId, bob.device.aci);
    assert.equal((await withTimeout(bob.waitForMessage(), 10_000, 'bob')).body, 'to your number');
    // A number nobody synced: not guessed as "not registered".
    await assert.rejects(
      client.send('+15550009999', 'x'),
      (e: unknown) => (e as { code?: string }).code === 'CDSI_UNAVAILABLE',
    );
    await assert.rejects(
      client.send('+1 2', 'x'),
      (e: unknown) => (e as { code?: string }).code === 'INVALID_NUMBER',
    );
  });
});
