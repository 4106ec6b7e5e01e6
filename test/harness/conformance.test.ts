/**
 * The strict sandbox (test/harness/conformance.ts): each rule refuses a request built the old way
 * with Signal-Server's status and its own name, and the engine's requests of today pass.
 */
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import { IdentityKeyPair, KEMKeyPair } from '@signalapp/libsignal-client';
import { resolveEnvironment, USER_AGENT, type Environment } from '../../core/config';
import type { SignalClient } from '../../core/client';
import { ChatConnection } from '../../core/net/connection';
import type { ChatRequest, ChatRequester, ChatResponse } from '../../core/net/types';
import {
  captureLogger,
  linkClient,
  openClient,
  startSandbox,
  tempDataFile,
  withTimeout,
  type PrimaryDevice,
  type Sandbox,
  inspect,
} from '../integration/helpers';
import {
  MAX_UPLOAD_LENGTH,
  compareSemver,
  parseFirstPartyUserAgent,
  type RuleName,
} from './conformance';

const OLD_DESKTOP = 'Signal-Desktop/7.0.0 sigflow/0.1';
const quiet = { report: () => undefined };

function env(sandbox: Sandbox, userAgent: string): Environment {
  // resolveEnvironment refuses a Signal app's name for a custom server, rightly: build it by hand.
  return { ...resolveEnvironment(sandbox.environment), userAgent };
}

function open(
  sandbox: Sandbox,
  userAgent = USER_AGENT,
  auth?: { username: string; password: string },
  path: '/v1/websocket/' | '/v1/websocket/provisioning/' = '/v1/websocket/',
): Promise<ChatConnection> {
  return ChatConnection.open({
    env: env(sandbox, userAgent),
    path,
    logger: captureLogger(),
    keepalive: false,
    connectTimeoutMs: 5000,
    ...(auth ? { auth } : {}),
    // The provisioning socket's pushed address and the queue-empty notice: acknowledged.
    handler: () => 200,
  }).then((c) => sandbox.track(c));
}

function credentials(client: SignalClient): { username: string; password: string } {
  const a = inspect(client).store()?.account.get();
  assert.ok(a, 'a linked account');
  return { username: `${a.aci}.${a.deviceId}`, password: a.password };
}

function chatOf(client: SignalClient): ChatRequester {
  const chat = inspect(client).chat();
  assert.ok(chat, 'a connected client');
  return chat;
}

function bodyOf(res: ChatResponse): { rule?: string; message?: string } {
  return JSON.parse(Buffer.from(res.body).toString('utf8')) as { rule?: string; message?: string };
}

/** The response is a refusal by `rule` with `status`, named in the body and in `fired`. */
function assertRefused(sandbox: Sandbox, res: ChatResponse, status: number, rule: RuleName): void {
  assert.equal(res.status, status, `status for ${rule}: ${Buffer.from(res.body).toString()}`);
  assert.equal(bodyOf(res).rule, rule);
  assert.equal(sandbox.conformance.fired.at(-1)?.rule, rule);
}

/** Rewrites the engine's own requests to `path` on their way out (a request "built the old way"). */
async function rewriting<T>(
  match: (req: ChatRequest) => boolean,
  edit: (body: Record<string, unknown>) => void,
  fn: () => Promise<T>,
): Promise<T> {
  const proto = ChatConnection.prototype;
  const original = proto.request;
  proto.request = function request(this: ChatConnection, req: ChatRequest) {
    if (!match(req) || !req.body || req.body instanceof Uint8Array) return original.call(this, req);
    const body = structuredClone(req.body) as Record<string, unknown>;
    edit(body);
    return original.call(this, { ...req, body });
  };
  try {
    return await fn();
  } finally {
    proto.request = original;
  }
}

const isLink = (req: ChatRequest) => req.verb === 'PUT' && req.path === '/v1/devices/link';
const capsOf = (body: Record<string, unknown>) =>
  (body.accountAttributes as { capabilities: Record<string, boolean> }).capabilities;

/** Links a client whose link request `edit` rewrote; resolves with its rejection. */
async function linkRewritten(
  sandbox: Sandbox,
  primary: PrimaryDevice,
  edit: (body: Record<string, unknown>) => void,
): Promise<unknown> {
  const client = await openClient(sandbox, tempDataFile());
  const provision = sandbox.server.waitForProvision();
  let onUrl!: (url: string) => void;
  const url = new Promise<string>((resolve) => (onUrl = resolve));
  // The phone never hears back from a refused link: its side is left pending.
  void Promise.all([provision, url])
    .then(([p, provisionURL]) => p.complete({ provisionURL, primaryDevice: primary }))
    .catch(() => undefined);
  return rewriting(isLink, edit, () =>
    withTimeout(client.link({ onUrl }), 20_000, 'linking').then(
      () => assert.fail('the link was accepted'),
      (e: unknown) => e,
    ),
  );
}

/** A registration body as Signal-Server's RegistrationRequest takes it, keys signed properly. */
function registrationBody(): Record<string, unknown> {
  const b64 = (b: Uint8Array) => Buffer.from(b).toString('base64');
  const identity = () => IdentityKeyPair.generate();
  const signed = (id: IdentityKeyPair, keyId: number) => {
    const pub = IdentityKeyPair.generate().publicKey.serialize();
    return { keyId, publicKey: b64(pub), signature: b64(id.privateKey.sign(pub)) };
  };
  const kem = (id: IdentityKeyPair, keyId: number) => {
    const pub = KEMKeyPair.generate().getPublicKey().serialize();
    return { keyId, publicKey: b64(pub), signature: b64(id.privateKey.sign(pub)) };
  };
  const aci = identity();
  const pni = identity();
  return {
    sessionId: 'c2Vzc2lvbg',
    accountAttributes: {
      fetchesMessages: true,
      registrationId: 4242,
      pniRegistrationId: 4243,
      capabilities: { spqr: true, usernameChangeSyncMessage: true, attachmentBackfill: false },
      unidentifiedAccessKey: Array.from({ length: 16 }, (_, i) => i),
      unrestrictedUnidentifiedAccess: false,
      discoverableByPhoneNumber: true,
      recoveryPassword: b64(new Uint8Array(32).fill(7)),
    },
    skipDeviceTransfer: true,
    aciIdentityKey: b64(aci.publicKey.serialize()),
    pniIdentityKey: b64(pni.publicKey.serialize()),
    aciSignedPreKey: signed(aci, 1),
    pniSignedPreKey: signed(pni, 1),
    aciPqLastResortPreKey: kem(aci, 2),
    pniPqLastResortPreKey: kem(pni, 2),
  };
}

/** A plain HTTP/2 request to the mock, as an HTTP client would send it. */
function http2Get(
  sandbox: Sandbox,
  path: string,
  headers: Record<string, string>,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(sandbox.url, { ca: sandbox.caCert });
    session.once('error', reject);
    const req = session.request({ ':method': 'GET', ':path': path, ...headers });
    let status = 0;
    let body = '';
    req.once('response', (h) => (status = Number(h[':status'])));
    req.setEncoding('utf8');
    req.on('data', (d: string) => (body += d));
    req.once('end', () => {
      session.close();
      resolve({ status, body });
    });
    req.once('error', reject);
  });
}

describe('harness: strict sandbox (Signal-Server rules on the mock)', function () {
  this.timeout(60_000);
  let sandbox: Sandbox;
  let primary: PrimaryDevice;
  let linked: SignalClient;

  before(async () => {
    sandbox = await startSandbox({ conformance: quiet });
    primary = await sandbox.createPrimary({ profileName: 'Alice' });
    linked = (await linkClient(sandbox, primary)).client;
  });
  after(async () => {
    await sandbox.close();
  });

  it('the engine links (link body, capabilities, PUT /v2/keys for both identities) with no rule firing', () => {
    assert.deepEqual(sandbox.conformance.fired, []);
    assert.equal(linked.state, 'connected');
  });

  it('the engine sends a message and fetches its sender certificate with no rule firing', async () => {
    const bob = await sandbox.createPrimary({ profileName: 'Bob' });
    const before = sandbox.conformance.fired.length;
    const result = await linked.send(bob.device.aci, { text: 'hello under strict rules' });
    assert.deepEqual(result.devices, [1]);
    const got = await withTimeout(bob.waitForMessage(), 10_000, 'bob.waitForMessage');
    assert.equal(got.body, 'hello under strict rules');
    // Sealed sender needs the certificate; ask for it explicitly too, the engine's way.
    const cert = await chatOf(linked).request({
      verb: 'GET',
      path: '/v1/certificate/delivery?includeE164=false',
    });
    assert.equal(cert.status, 200);
    assert.equal(sandbox.conformance.fired.length, before);
  });

  describe('user-agent-first-party-too-old (RemoteDeprecationFilter, UserAgentUtil)', () => {
    it('parses Signal apps as Signal-Server does', () => {
      assert.deepEqual(parseFirstPartyUserAgent('Signal-Desktop/7.0.0 sigflow/0.1'), {
        platform: 'desktop',
        version: '7.0.0',
      });
      assert.equal(parseFirstPartyUserAgent('signal-ios/7.61.0')?.platform, 'ios');
      assert.equal(
        parseFirstPartyUserAgent('Signal-Desktop/7.0'),
        null,
        'not semver: unrecognized',
      );
      assert.equal(parseFirstPartyUserAgent(USER_AGENT), null);
      assert.equal(parseFirstPartyUserAgent(''), null);
      assert.ok(compareSemver('7.60.0-beta.1', '7.60.0') < 0);
      assert.ok(compareSemver('7.9.0', '7.60.0') < 0);
      assert.equal(compareSemver('7.60.0+build', '7.60.0'), 0);
    });

    it('answers 499 to the chat and provisioning upgrades of an old Signal-Desktop, before the mock sees them', async () => {
      for (const path of ['/v1/websocket/', '/v1/websocket/provisioning/'] as const) {
        await assert.rejects(open(sandbox, OLD_DESKTOP, undefined, path), /HTTP 499/);
        const last = sandbox.conformance.fired.at(-1);
        assert.equal(last?.rule, 'user-agent-first-party-too-old');
        assert.equal(last?.where, 'upgrade');
        assert.equal(last?.status, 499);
        assert.equal(last?.path, path);
      }
      await assert.rejects(open(sandbox, 'signal-android/7.39.9'), /HTTP 499/);
      await assert.rejects(open(sandbox, 'Signal-iOS/7.59.0-beta.1'), /HTTP 499/);
    });

    it('lets a Signal app at its minimum through, and the engine’s own name', async () => {
      const before = sandbox.conformance.fired.length;
      for (const ua of ['Signal-Desktop/7.60.0 macOS', 'Signal-Android/7.40.0', USER_AGENT]) {
        const c = await open(sandbox, ua);
        await c.close();
      }
      assert.equal(sandbox.conformance.fired.length, before);
    });

    it('answers 499 to a request that names an old Signal app, on the socket and over HTTP', async () => {
      // On an unauthenticated socket of its own: the engine's chat stops as expired on a 499
      // (CLIENT_TOO_OLD) and the other tests here go on using it, and a second authenticated socket
      // would take over the device's (4409). The rule answers before any authentication.
      const conn = await open(sandbox, USER_AGENT);
      const res = await conn.request({
        verb: 'GET',
        path: '/v1/certificate/delivery?includeE164=false',
        headers: { 'User-Agent': OLD_DESKTOP },
      });
      await conn.close();
      assertRefused(sandbox, res, 499, 'user-agent-first-party-too-old');
      const http = await http2Get(sandbox, '/v1/storage/manifest', { 'user-agent': OLD_DESKTOP });
      assert.equal(http.status, 499);
      assert.equal(
        (JSON.parse(http.body) as { rule: string }).rule,
        'user-agent-first-party-too-old',
      );
      assert.equal(sandbox.conformance.fired.at(-1)?.where, 'http');
      const fine = await http2Get(sandbox, '/v1/storage/manifest', { 'user-agent': USER_AGENT });
      assert.notEqual(fine.status, 499);
    });
  });

  describe('spqr-required and link-capabilities (RemoteDeprecationFilter, DeviceController)', () => {
    it('a link without spqr is answered 409 by link-capabilities', async () => {
      const err = await linkRewritten(sandbox, primary, (b) => delete capsOf(b).spqr);
      assert.match(String(err), /409/);
      const last = sandbox.conformance.fired.at(-1);
      assert.equal(last?.rule, 'link-capabilities');
      assert.match(last?.reason ?? '', /spqr/);
    });

    it('a link dropping usernameChangeSyncMessage, which every device of the account has, is answered 409', async () => {
      const err = await linkRewritten(sandbox, primary, (b) => {
        capsOf(b).usernameChangeSyncMessage = false;
      });
      assert.match(String(err), /409/);
      assert.match(sandbox.conformance.fired.at(-1)?.reason ?? '', /usernameChangeSyncMessage/);
    });

    it('an upgrade by a device without spqr and another client’s name is answered 499; a device keeps its socket', async () => {
      const phone = await sandbox.createPrimary({ profileName: 'Dana' });
      const { client } = await linkClient(sandbox, phone);
      const auth = credentials(client);
      // PUT /v1/devices/capabilities replaces the device's set (DeviceController.setCapabilities).
      const set = await chatOf(client).request({
        verb: 'PUT',
        path: '/v1/devices/capabilities',
        body: { spqr: false, usernameChangeSyncMessage: true },
      });
      assert.equal(set.status, 200);
      await assert.rejects(open(sandbox, USER_AGENT, auth), /HTTP 499/);
      const last = sandbox.conformance.fired.at(-1);
      assert.equal(last?.rule, 'spqr-required');
      assert.equal(last?.where, 'upgrade');
      // A Signal app is held to its version instead; an unauthenticated socket to nothing.
      await (await open(sandbox, 'Signal-Desktop/7.61.0', auth)).close();
      await (await open(sandbox, USER_AGENT)).close();
      // Wrong credentials are not a device (isMissingSpqrCapability: false): the upgrade is the
      // mock's to refuse (it closes such a socket with 3000), not this rule's.
      await open(sandbox, USER_AGENT, { ...auth, password: 'wrong' }).then(
        (c) => c.close(),
        () => undefined,
      );
      assert.equal(sandbox.conformance.fired.at(-1), last);
      await client.close();
    });

    it('preventDowngrade counts only what every device has: one device without usernameChangeSyncMessage lets a link without it through', async () => {
      const phone = await sandbox.createPrimary({ profileName: 'Erin' });
      const { client } = await linkClient(sandbox, phone);
      const set = await chatOf(client).request({
        verb: 'PUT',
        path: '/v1/devices/capabilities',
        body: { spqr: true, usernameChangeSyncMessage: false },
      });
      assert.equal(set.status, 200);
      const before = sandbox.conformance.fired.length;
      const second = await openClient(sandbox, tempDataFile());
      const provision = sandbox.server.waitForProvision();
      let onUrl!: (url: string) => void;
      const url = new Promise<string>((resolve) => (onUrl = resolve));
      const phoneSide = Promise.all([provision, url]).then(([p, provisionURL]) =>
        p.complete({ provisionURL, primaryDevice: phone }),
      );
      await rewriting(
        isLink,
        (b) => delete capsOf(b).usernameChangeSyncMessage,
        () => withTimeout(Promise.all([second.link({ onUrl }), phoneSide]), 20_000, 'linking'),
      );
      assert.equal(sandbox.conformance.fired.length, before);
    });
  });

  describe('request bodies (Signal-Server request classes)', () => {
    it('link-request-shape: a registration id over 0x3fff, a missing Kyber key, no capabilities → 422', async () => {
      const cases: Array<[string, (b: Record<string, unknown>) => void, RegExp]> = [
        [
          'registrationId',
          (b) => ((b.accountAttributes as Record<string, unknown>).registrationId = 0x4000),
          /registrationId/,
        ],
        ['aciPqLastResortPreKey', (b) => delete b.aciPqLastResortPreKey, /aciPqLastResortPreKey/],
        [
          'capabilities',
          (b) => delete (b.accountAttributes as Record<string, unknown>).capabilities,
          /capabilities/,
        ],
        [
          'signature',
          (b) => {
            const k = b.aciSignedPreKey as { signature: string };
            k.signature = Buffer.alloc(64, 1).toString('base64');
          },
          /Invalid signature/,
        ],
      ];
      for (const [what, edit, reason] of cases) {
        const err = await linkRewritten(sandbox, primary, edit);
        assert.match(String(err), /422/, what);
        const last = sandbox.conformance.fired.at(-1);
        assert.equal(last?.rule, 'link-request-shape', what);
        assert.equal(last?.status, 422);
        assert.match(last?.reason ?? '', reason, what);
      }
    });

    it('keys-request-shape: over 100 one-time keys, bad base64, a key libsignal cannot read, a bad signature → 422', async () => {
      const chat = chatOf(linked);
      const key = IdentityKeyPair.generate().publicKey.serialize();
      const b64 = (b: Uint8Array) => Buffer.from(b).toString('base64');
      const bodies: Array<[object, RegExp]> = [
        [
          {
            preKeys: Array.from({ length: 101 }, (_, i) => ({ keyId: i + 1, publicKey: b64(key) })),
          },
          /over 100/,
        ],
        [{ preKeys: [{ keyId: 1, publicKey: 'not base64!' }] }, /not base64/],
        [{ preKeys: [{ keyId: 1, publicKey: b64(key.subarray(1)) }] }, /Curve25519/],
        [{ preKeys: [{ keyId: -1, publicKey: b64(key) }] }, /keyId/],
        [
          {
            preKeys: [],
            signedPreKey: { keyId: 1, publicKey: b64(key), signature: b64(new Uint8Array(64)) },
          },
          /Invalid signature/,
        ],
      ];
      for (const [body, reason] of bodies) {
        const res = await chat.request({ verb: 'PUT', path: '/v2/keys', body });
        assertRefused(sandbox, res, 422, 'keys-request-shape');
        assert.match(sandbox.conformance.fired.at(-1)?.reason ?? '', reason);
      }
      const text = await chat.request({
        verb: 'PUT',
        path: '/v2/keys',
        body: Buffer.from('{oops'),
      });
      assertRefused(sandbox, text, 400, 'keys-request-shape');
    });

    it('messages-request-shape: no messages, bad content, a server-only envelope type, one device twice → 422; oversize → 413', async () => {
      const chat = chatOf(linked);
      const to = `/v1/messages/${primary.device.aci}`;
      const msg = (over: Record<string, unknown> = {}) => ({
        type: 1,
        destinationDeviceId: 1,
        destinationRegistrationId: 1,
        content: Buffer.from('x').toString('base64'),
        ...over,
      });
      const ts = Date.now();
      const cases: Array<[object, number, RegExp]> = [
        [{ messages: [], timestamp: ts, online: false, urgent: true }, 422, /non-empty/],
        [{ messages: [msg({ content: '' })], timestamp: ts }, 422, /content/],
        [{ messages: [msg({ content: '***' })], timestamp: ts }, 422, /base64/],
        [{ messages: [msg({ type: 5 })], timestamp: ts }, 422, /type 5/],
        [{ messages: [msg(), msg()], timestamp: ts }, 422, /same destinationDeviceId/],
        [{ messages: [msg()], timestamp: -1 }, 422, /timestamp/],
        [{ messages: [msg()], timestamp: ts, online: 'no' }, 422, /online/],
        [
          {
            messages: [msg({ content: Buffer.alloc(96 * 1024 + 1).toString('base64') })],
            timestamp: ts,
          },
          413,
          /over/,
        ],
      ];
      for (const [body, status, reason] of cases) {
        const res = await chat.request({ verb: 'PUT', path: to, body });
        assertRefused(sandbox, res, status, 'messages-request-shape');
        assert.match(sandbox.conformance.fired.at(-1)?.reason ?? '', reason);
      }
    });

    it('registration-request-shape → 422 / 400, registration-capabilities → 499; a well-formed body passes to the mock', async () => {
      const chat = await open(sandbox);
      const post = (body: object | Uint8Array) =>
        chat.request({
          verb: 'POST',
          path: '/v1/registration',
          headers: { Authorization: `Basic ${Buffer.from('+14155550199:pw').toString('base64')}` },
          body,
        });
      const edits: Array<[(b: Record<string, unknown>) => void, number, RuleName, RegExp]> = [
        [
          (b) => ((b.accountAttributes as Record<string, unknown>).registrationId = 0x4000),
          422,
          'registration-request-shape',
          /registrationId/,
        ],
        [
          (b) => ((b.accountAttributes as Record<string, unknown>).unidentifiedAccessKey = [1, 2]),
          422,
          'registration-request-shape',
          /unidentifiedAccessKey/,
        ],
        [(b) => delete b.sessionId, 422, 'registration-request-shape', /exactly one/],
        [(b) => delete b.pniSignedPreKey, 422, 'registration-request-shape', /all together/],
        [(b) => (b.aciIdentityKey = 'AAAA'), 422, 'registration-request-shape', /aciIdentityKey/],
        [
          (b) => ((b.aciPqLastResortPreKey as { keyId: number }).keyId = 2 ** 31),
          422,
          'registration-request-shape',
          /keyId/,
        ],
        [
          (b) =>
            delete (b.accountAttributes as { capabilities: Record<string, boolean> }).capabilities
              .spqr,
          499,
          'registration-capabilities',
          /spqr/,
        ],
      ];
      for (const [edit, status, rule, reason] of edits) {
        const body = registrationBody();
        edit(body);
        const res = await post(body);
        assertRefused(sandbox, res, status, rule);
        assert.match(sandbox.conformance.fired.at(-1)?.reason ?? '', reason);
      }
      assertRefused(
        sandbox,
        await post(Buffer.from('not json')),
        400,
        'registration-request-shape',
      );
      const before = sandbox.conformance.fired.length;
      const res = await post(registrationBody());
      // The mock has no such session and says so; no rule of the sandbox's stood in the way.
      assert.notEqual(res.status, 422);
      assert.equal(sandbox.conformance.fired.length, before);
      await chat.close();
    });

    it('the engine registers a number (POST /v1/registration, keys) with no rule firing', async () => {
      const client = await openClient(sandbox, tempDataFile());
      const before = sandbox.conformance.fired.length;
      const captcha =
        'signalcaptcha://signal-hcaptcha.5fad97ac-7d06-4e44-b18a-b950b20148ff.registration.P1_secret';
      await client.startRegistration({ number: '+14155552999', captcha, transport: 'sms' });
      const account = await client.verifyRegistration('111111');
      assert.equal(account.deviceId, 1);
      assert.deepEqual(sandbox.conformance.fired.slice(before), []);
      await client.close();
    });
  });

  describe('sender certificates (CertificateController, and the sandbox’s privacy rule)', () => {
    it('certificate-e164: an includeE164 that is neither true nor false → 400', async () => {
      const res = await chatOf(linked).request({
        verb: 'GET',
        path: '/v1/certificate/delivery?includeE164=no',
      });
      assertRefused(sandbox, res, 400, 'certificate-e164');
    });

    it('group-credentials-range: not UTC midnights, reversed, before today or past 7 days → 400; today … +6 d passes', async () => {
      const DAY = 86_400;
      const now = Math.floor(Date.now() / 1000);
      const today = now - (now % DAY);
      for (const [start, end] of [
        [today + 60, today + DAY],
        [today + DAY, today],
        [today - DAY, today],
        [today, today + 8 * DAY],
      ]) {
        const res = await chatOf(linked).request({
          verb: 'GET',
          path: `/v1/certificate/auth/group?redemptionStartSeconds=${start}&redemptionEndSeconds=${end}`,
        });
        assertRefused(sandbox, res, 400, 'group-credentials-range');
      }
      const ok = await chatOf(linked).request({
        verb: 'GET',
        path: `/v1/certificate/auth/group?redemptionStartSeconds=${today}&redemptionEndSeconds=${today + 6 * DAY}`,
      });
      assert.equal(ok.status, 200);
    });

    it('sandbox-only-privacy-certificate-without-e164: without includeE164=false (Signal-Server defaults to true) → refused', async () => {
      for (const path of [
        '/v1/certificate/delivery',
        '/v1/certificate/delivery?includeE164=true',
      ]) {
        const res = await chatOf(linked).request({ verb: 'GET', path });
        assertRefused(sandbox, res, 400, 'sandbox-only-privacy-certificate-without-e164');
        assert.match(bodyOf(res).message ?? '', /not Signal-Server's/);
      }
      const ok = await chatOf(linked).request({
        verb: 'GET',
        path: '/v1/certificate/delivery?includeE164=FALSE',
      });
      assert.equal(ok.status, 200);
    });
  });

  describe('the attachment upload form (AttachmentControllerV4, a sandbox route)', () => {
    const form = (path: string, chat?: ChatRequester) =>
      (chat ?? chatOf(linked)).request({ verb: 'GET', path });

    it('attachment-form-request-shape: no uploadLength, a bad one, or one over the maximum → 400/413', async () => {
      assertRefused(
        sandbox,
        await form('/v4/attachments/form/upload'),
        400,
        'attachment-form-request-shape',
      );
      for (const bad of ['0', '-5', '1.5', 'ten'])
        assertRefused(
          sandbox,
          await form(`/v4/attachments/form/upload?uploadLength=${bad}`),
          400,
          'attachment-form-request-shape',
        );
      assertRefused(
        sandbox,
        await form(`/v4/attachments/form/upload?uploadLength=${MAX_UPLOAD_LENGTH + 1}`),
        413,
        'attachment-form-request-shape',
      );
    });

    it('attachment-form-request-shape: an unauthenticated socket → 401', async () => {
      const anon = await open(sandbox);
      assertRefused(
        sandbox,
        await form('/v4/attachments/form/upload?uploadLength=1000', anon),
        401,
        'attachment-form-request-shape',
      );
      await anon.close();
    });

    it('a well-formed request gets the mock’s CDN 3 form in Signal-Server’s shape, no rule firing', async () => {
      const before = sandbox.conformance.fired.length;
      const res = await form(`/v4/attachments/form/upload?uploadLength=${MAX_UPLOAD_LENGTH}`);
      assert.equal(res.status, 200);
      const body = JSON.parse(Buffer.from(res.body).toString()) as Record<string, unknown>;
      assert.deepEqual(Object.keys(body).sort(), ['cdn', 'headers', 'key', 'signedUploadLocation']);
      assert.equal(body.cdn, 3);
      assert.match(String(body.signedUploadLocation), /\/cdn3\/attachments\//);
      assert.equal(sandbox.conformance.fired.length, before);
    });
  });
});

describe('harness: strict sandbox options', function () {
  this.timeout(30_000);

  it('takes other minimum versions, lets rules be turned off, and reports on stderr by default', async () => {
    const lines: string[] = [];
    const box = await startSandbox({
      conformance: {
        minimumVersions: { desktop: '6.0.0' },
        disable: ['sandbox-only-privacy-certificate-without-e164'],
        report: (l) => lines.push(l),
      },
    });
    try {
      await (await open(box, OLD_DESKTOP)).close();
      await assert.rejects(open(box, 'Signal-Desktop/5.9.9'), /HTTP 499/);
      assert.deepEqual(box.conformance.firedRules, ['user-agent-first-party-too-old']);
      assert.match(
        lines[0] ?? '',
        /^\[strict sandbox\] rule user-agent-first-party-too-old refused GET \/v1\/websocket\/: /,
      );
    } finally {
      await box.close();
    }
    // Without a `report`, the line goes to stderr, where a test's output shows it.
    const plain = await startSandbox();
    const written: string[] = [];
    const write = process.stderr.write.bind(process.stderr);
    process.stderr.write = ((chunk: string | Uint8Array) => {
      written.push(String(chunk));
      return true;
    }) as typeof process.stderr.write;
    try {
      await assert.rejects(open(plain, OLD_DESKTOP), /HTTP 499/);
    } finally {
      process.stderr.write = write;
      await plain.close();
    }
    assert.ok(
      written.some((l) =>
        l.startsWith(
          '[strict sandbox] rule user-agent-first-party-too-old refused GET /v1/websocket/:',
        ),
      ),
      written.join(''),
    );
    await assert.rejects(
      startSandbox({ conformance: { disable: ['no-such-rule' as RuleName] } }),
      /no rule named no-such-rule/,
    );
  });
});
