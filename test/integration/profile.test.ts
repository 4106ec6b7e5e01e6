/**
 * Our own profile name (PROTOCOL.md, profiles): a number registered here sets it with
 * `PUT /v1/profile` (the name padded to 53/257 bytes and encrypted with our profile key); the mock
 * then serves it on `GET /v1/profile`. A linked device is refused: the phone owns its profile.
 */
import assert from 'node:assert/strict';
import { Aci } from '@signalapp/libsignal-client';
import { ProfileKey } from '@signalapp/libsignal-client/dist/zkgroup/index.js';
import { getVersionedProfile } from '../../core/api';
import { decryptProfileName } from '../../core/crypto/profile-name';
import { InvalidInputError } from '../../core/errors';
import {
  inspect,
  linkClient,
  openClient,
  startSandbox,
  tempDataFile,
  type Sandbox,
} from './helpers';

describe('integration: our own profile name', function () {
  this.timeout(90_000);
  let sandbox: Sandbox;

  before(async () => {
    sandbox = await startSandbox();
  });
  after(async () => {
    await sandbox.close();
  });

  it('a registered number sets its name; GET /v1/profile returns it, padded to 53 bytes', async () => {
    const client = await openClient(sandbox, tempDataFile());
    const number = '+14155553901';
    const captcha =
      'signalcaptcha://signal-hcaptcha.5fad97ac-7d06-4e44-b18a-b950b20148ff.registration.P1_x';
    await client.startRegistration({ number, transport: 'sms' }).catch(() => undefined);
    await client.startRegistration({ number, captcha, transport: 'sms' });
    const account = await client.verifyRegistration('111111');
    await client.setProfileName('Node', 'RED');

    const profileKey = inspect(client).store()?.account.get()?.profileKey;
    const chat = inspect(client).chat();
    assert.ok(profileKey && chat);
    const version = new ProfileKey(new Uint8Array(profileKey))
      .getProfileKeyVersion(Aci.parseFromServiceIdString(account.aci))
      .toString();
    const profile = await getVersionedProfile(chat, account.aci, version);
    assert.ok(profile.name);
    const blob = new Uint8Array(Buffer.from(profile.name, 'base64'));
    assert.equal(blob.length, 12 + 53 + 16, 'nonce, 53 padded bytes, tag');
    assert.deepEqual(decryptProfileName(profileKey, blob), { given: 'Node', family: 'RED' });
    await assert.rejects(client.setProfileName('  '), InvalidInputError);
  });

  it("a linked device is refused: it uses the phone's profile", async () => {
    const alice = await sandbox.createPrimary({ profileName: 'Alice' });
    const { client } = await linkClient(sandbox, alice);
    await assert.rejects(
      client.setProfileName('Someone'),
      (e: unknown) => e instanceof InvalidInputError && /phone/.test(e.message),
    );
  });
});
