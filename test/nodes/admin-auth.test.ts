/**
 * The signal-account admin routes under Node-RED's adminAuth (DESIGN.md: reads need
 * `signal-account.read` (the groups list too), linking, cancelling and approving an identity need `signal-account.write`). The test helper stubs
 * the permission check out, so this runs a real Node-RED with adminAuth configured: users logged in
 * through /auth/token, and API tokens given by adminAuth.tokens. Node-RED answers 401 both to a
 * request without credentials and to a user without the permission.
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { startNodeRed, type NodeRedProcess } from '../harness/node-red';
import { startSandbox, type Sandbox } from '../harness/sandbox';
import { accountConfig } from './support';

type Route =
  | 'GET link'
  | 'GET status'
  | 'GET identities'
  | 'GET groups'
  | 'POST link'
  | 'DELETE link'
  | 'POST identities/approve';
const READS: Route[] = ['GET link', 'GET status', 'GET identities', 'GET groups'];
const WRITES: Route[] = ['POST link', 'DELETE link', 'POST identities/approve'];
const ALL: Route[] = [...READS, ...WRITES];

describe('nodes: admin routes under adminAuth (real Node-RED process)', function () {
  this.timeout(60_000);
  let sandbox: Sandbox;
  let red: NodeRedProcess;
  const password = {
    admin: crypto.randomBytes(12).toString('hex'),
    reader: crypto.randomBytes(12).toString('hex'),
  };
  const tokens = {
    signalRead: crypto.randomBytes(16).toString('hex'),
    signalWrite: crypto.randomBytes(16).toString('hex'),
    flowsOnly: crypto.randomBytes(16).toString('hex'),
  };
  const bearer: Record<'admin' | 'reader', string> = { admin: '', reader: '' };

  before(async () => {
    sandbox = await startSandbox();
    const users = {
      admin: { password: password.admin, permissions: '*' },
      reader: { password: password.reader, permissions: 'read' },
    };
    const apiTokens = {
      [tokens.signalRead]: { username: 'signal-reader', permissions: ['signal-account.read'] },
      [tokens.signalWrite]: { username: 'signal-writer', permissions: ['signal-account.write'] },
      [tokens.flowsOnly]: { username: 'flows-only', permissions: ['flows.read', 'flows.write'] },
    };
    red = await startNodeRed({
      // acct1 is not started (no flow node uses it, and its name equals its id, which Node-RED takes
      // for a reference to itself): the link routes run on a client of their own. The identity
      // routes need a running account, so they go to acct2, used by a flow node.
      flows: [
        { id: 'tab1', type: 'tab', label: 'Flow 1' },
        accountConfig(sandbox, 'acct1'),
        accountConfig(sandbox, 'acct2', 'Deployed account'),
        { id: 'in2', type: 'signal-in', z: 'tab1', account: 'acct2', wires: [] },
      ],
      settingsSource: `adminAuth: {
        type: 'credentials',
        users: function (username) {
          const u = (${JSON.stringify(users)})[username];
          return Promise.resolve(u ? { username: username, permissions: u.permissions } : null);
        },
        authenticate: function (username, password) {
          const u = (${JSON.stringify(users)})[username];
          return Promise.resolve(u && u.password === password ? { username: username, permissions: u.permissions } : null);
        },
        tokens: function (token) {
          return Promise.resolve((${JSON.stringify(apiTokens)})[token] || null);
        }
      }`,
    });
    for (const who of ['admin', 'reader'] as const) bearer[who] = await login(who, password[who]);
  });
  after(async () => {
    await red?.stop();
    await sandbox?.close();
  });

  async function login(username: string, pass: string): Promise<string> {
    const res = await fetch(`${red.url}/auth/token`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        client_id: 'node-red-admin',
        grant_type: 'password',
        scope: '',
        username,
        password: pass,
      }),
    });
    assert.equal(res.status, 200, `login of ${username}: ${await res.clone().text()}`);
    const body = (await res.json()) as { access_token?: string };
    assert.ok(body.access_token, `login of ${username} gave no token`);
    return body.access_token;
  }

  async function call(
    route: Route,
    token?: string,
    accountId?: string,
  ): Promise<{
    status: number;
    body: {
      state?: string;
      linked?: boolean;
      pending?: unknown[];
      url?: string;
      qr?: string;
      error?: { code?: string; message?: string };
    };
  }> {
    const [method, what] = route.split(' ') as [string, string];
    // Approving names a contact; linking sends the server settings.
    const body =
      what === 'identities/approve'
        ? { serviceId: crypto.randomUUID() }
        : {
            server: 'custom',
            serviceUrl: sandbox.url,
            caCert: sandbox.caCert,
            trustRoots: sandbox.trustRoot,
          };
    const account =
      accountId ?? (what.startsWith('identities') || what === 'groups' ? 'acct2' : 'acct1');
    const res = await fetch(`${red.url}/signal-account/${account}/${what}`, {
      method,
      headers: {
        ...(token ? { authorization: `Bearer ${token}` } : {}),
        ...(method === 'POST' ? { 'content-type': 'application/json' } : {}),
      },
      ...(method === 'POST' ? { body: JSON.stringify(body) } : {}),
    });
    const text = await res.text();
    // A refusal comes from Node-RED's guard as plain text ("Unauthorized"); the routes answer JSON.
    const json = (res.headers.get('content-type') ?? '').includes('application/json');
    return { status: res.status, body: json && text ? (JSON.parse(text) as object) : {} };
  }

  /** What a refused write must not have changed: the link state, read with full permission. */
  const linkState = async () => (await call('GET link', bearer.admin)).body.state;

  async function expectRefused(routes: Route[], token: string | undefined, who: string) {
    const before = await linkState();
    for (const route of routes) {
      const r = await call(route, token);
      assert.equal(r.status, 401, `${route} by ${who}: ${r.status} ${JSON.stringify(r.body)}`);
    }
    assert.equal(await linkState(), before, `a refused request by ${who} changed the link state`);
  }

  /**
   * Reads reach the routes, which answer with the documented shapes: an id that is neither deployed
   * nor being linked answers 404 NOT_FOUND (JSON from the route, not the guard's 401), and creates
   * nothing; acct2 is deployed.
   */
  async function expectReads(token: string, who: string) {
    for (const route of ['GET link', 'GET status', 'GET groups'] as const) {
      const r = await call(route, token, 'nosuchaccount');
      assert.equal(r.status, 404, `${route} by ${who}: ${JSON.stringify(r.body)}`);
      assert.equal(r.body.error?.code, 'NOT_FOUND');
      assert.match(
        String(r.body.error?.message),
        /nosuchaccount is deployed, being linked or being/,
      );
    }
    assert.equal(fs.existsSync(path.join(red.dataDir, 'nosuchaccount.db')), false);
    const identities = await call('GET identities', token);
    assert.equal(
      identities.status,
      200,
      `GET identities by ${who}: ${JSON.stringify(identities.body)}`,
    );
    assert.deepEqual(identities.body, { pending: [] });
    // The deployed account is not linked yet: it is in no group.
    const groups = await call('GET groups', token);
    assert.equal(groups.status, 200, `GET groups by ${who}: ${JSON.stringify(groups.body)}`);
    assert.deepEqual(groups.body, []);
  }

  /** Writes are let through: a link starts (202 waiting), and is cancelled (200). */
  async function expectWrites(token: string, who: string) {
    const started = await call('POST link', token);
    assert.equal(started.status, 202, `POST link by ${who}: ${JSON.stringify(started.body)}`);
    assert.equal(started.body.state, 'waiting');
    const cancelled = await call('DELETE link', token);
    assert.equal(cancelled.status, 200, `DELETE link by ${who}`);
    assert.equal(cancelled.body.state, 'cancelled');
    // Let through to the route, which finds nothing waiting for that contact.
    const approved = await call('POST identities/approve', token);
    assert.equal(approved.status, 404, `POST identities/approve by ${who}`);
    assert.match(String(approved.body.error?.message), /nothing to approve/);
  }

  it('refuses every route to a request without credentials or with an unknown token (401)', async () => {
    await expectRefused(ALL, undefined, 'an anonymous request');
    await expectRefused(ALL, crypto.randomBytes(16).toString('hex'), 'an unknown token');
  });

  it('a read-only user reads the link state, status and pending identities, but cannot start or cancel a link or approve an identity', async () => {
    await expectReads(bearer.reader, 'reader');
    await expectRefused(WRITES, bearer.reader, 'reader');
    // A link in progress (started by the admin) is not cancelled by the reader either.
    assert.equal((await call('POST link', bearer.admin)).status, 202);
    await expectRefused(['DELETE link'], bearer.reader, 'reader');
    assert.equal(await linkState(), 'waiting');
    assert.equal((await call('DELETE link', bearer.admin)).status, 200);
  });

  it('the link URL and QR code go only to users who may link; readers see the state without them', async () => {
    assert.equal((await call('POST link', bearer.admin)).status, 202);
    let admin = await call('GET link', bearer.admin);
    for (let i = 0; i < 100 && !admin.body.qr; i++) {
      await new Promise((r) => setTimeout(r, 100));
      admin = await call('GET link', bearer.admin);
    }
    assert.equal(admin.body.state, 'waiting');
    assert.match(String(admin.body.url), /^sgnl:\/\/linkdevice\?/);
    assert.match(String(admin.body.qr), /<svg/);
    for (const [token, who] of [
      [bearer.reader, 'reader'],
      [tokens.signalRead, 'a signal-account.read token'],
    ] as const) {
      const r = await call('GET link', token);
      assert.equal(r.status, 200, who);
      assert.equal(r.body.state, 'waiting', who);
      assert.equal(r.body.url, undefined, `${who} got the link URL`);
      assert.equal(r.body.qr, undefined, `${who} got the QR code`);
    }
    assert.equal((await call('DELETE link', bearer.admin)).status, 200);
  });

  it('a user with full permission reads, starts and cancels a link', async () => {
    await expectReads(bearer.admin, 'admin');
    await expectWrites(bearer.admin, 'admin');
  });

  it('API tokens: signal-account.read reads only, signal-account.write writes only, other permissions neither', async () => {
    await expectReads(tokens.signalRead, 'a signal-account.read token');
    await expectRefused(WRITES, tokens.signalRead, 'a signal-account.read token');
    await expectWrites(tokens.signalWrite, 'a signal-account.write token');
    await expectRefused(READS, tokens.signalWrite, 'a signal-account.write token');
    await expectRefused(ALL, tokens.flowsOnly, 'a flows.read/flows.write token');
  });
});
