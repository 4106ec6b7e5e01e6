/**
 * The Signal sandbox: Signal's own mock server (`@signalapp/mock-server`, used by Signal-Desktop's
 * tests) on 127.0.0.1 with a random port, plus helpers to create its simulated phones. The
 * integration tests, the benchmarks and `npm start` all use this one harness. Plain TS, no mocha.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { EnvironmentOptions } from '../../core/config';
import {
  checkConformanceOptions,
  installConformance,
  type Conformance,
  type ConformanceOptions,
} from './conformance';
import { installPolyfills } from './polyfill';
import {
  installMultiRecipientRoute,
  multiRecipientLog,
  type MultiRecipientRequest,
} from './multi-recipient';

installPolyfills();
// Required after the polyfill: the mock server uses Promise.withResolvers at load time.
import mock = require('@signalapp/mock-server');

export type MockServer = InstanceType<typeof mock.Server>;
export type PrimaryDevice = Awaited<ReturnType<MockServer['createPrimaryDevice']>>;

export interface Closable {
  close(): Promise<void> | void;
}

export interface Sandbox {
  server: MockServer;
  /** Where the mock keeps CDN 3's files (`<cdn3Path>/attachments/<cdnKey>`, served at /cdn3/...). */
  cdn3Path: string;
  port: number;
  url: string;
  /** PEM of the CA the mock server's certificate chains to. */
  caCert: string;
  /** Base64 sealed-sender trust root (33-byte public key). */
  trustRoot: string;
  /** What a SignalClient needs to use this server: `resolveEnvironment(sandbox.environment)`. */
  environment: EnvironmentOptions;
  /**
   * The strict sandbox (./conformance.ts): the mock held to Signal-Server's rules, on for every
   * sandbox. `conformance.fired` lists the rules that refused something.
   */
  conformance: Conformance;
  /** Every `PUT /v1/messages/multi_recipient` the test-only route answered (./multi-recipient.ts). */
  readonly multiRecipient: MultiRecipientRequest[];
  /** Every credential the `/v2/directory/auth` route handed out, in order. */
  directoryCredentials: Array<{ username: string; password: string }>;
  createPrimary(opts?: {
    profileName?: string;
    contacts?: PrimaryDevice[];
  }): Promise<PrimaryDevice>;
  /** Closed before the server at teardown (clients hold HTTP/2 sessions that would stall it). */
  track<T extends Closable>(c: T): T;
  /**
   * Closes the tracked clients, then the server, each within the cap. Rejects, after cleaning up
   * what it can, naming what did not close in time: a teardown that only looks bounded hides a
   * leak (the port stays open, the next test shares a half-closed server).
   */
  close(): Promise<void>;
}

export interface SandboxOptions {
  /** Cap on each client's and the server's close (default 5000 ms). */
  closeTimeoutMs?: number;
  /**
   * The strict sandbox's settings: minimum Signal app versions, requireSpqr, rules to turn off
   * (for a test that deliberately drives old behaviour). Its rules are on by default.
   */
  conformance?: ConformanceOptions;
}

/** Races a promise against a timeout; the mock's waitFor* helpers have none of their own. */
export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: no result within ${ms} ms`)), ms);
    }),
  ]);
}

const credentialLog: Array<{ username: string; password: string }> = [];
let directoryRouteInstalled = false;

/**
 * The mock serves no `/v2/directory/auth` (PROTOCOL.md §11) and no REST upload form: register both
 * on each WebSocket connection's router, authenticated like the mock's own routes. Pinned to
 * mock-server 27.0.0.
 */
function installDirectoryAuthRoute(): void {
  if (directoryRouteInstalled) return;
  directoryRouteInstalled = true;
  const { Connection } = require('@signalapp/mock-server/src/server/ws/connection') as {
    Connection: {
      prototype: { handleRequest(this: MockConnection, request: unknown): Promise<unknown> };
    };
  };
  interface MockConnection {
    device?: { aci: string };
    server?: {
      getAttachmentUploadForm(
        folder: string,
        key: string,
      ): Promise<{
        cdn: number;
        key: string;
        headers: Record<string, string>;
        signedUploadLocation: string;
      }>;
    };
    router: { get(pattern: string, handler: () => Promise<[number, unknown]>): void };
    __sigflowDirectory?: boolean;
  }
  const original = Connection.prototype.handleRequest;
  Connection.prototype.handleRequest = function handleRequest(
    this: MockConnection,
    request: unknown,
  ) {
    if (!this.__sigflowDirectory) {
      this.__sigflowDirectory = true;
      this.router.get('/v2/directory/auth', async () => {
        if (!this.device) return [401, { error: 'Not authorized' }];
        const credential = {
          username: `${this.device.aci}:${Date.now()}`,
          password: crypto.randomBytes(24).toString('base64'),
        };
        credentialLog.push(credential);
        return [200, credential];
      });
      // NEXT-WAVE.md §5 Option A: the mock serves the upload form over gRPC only
      // (Attachments/GetUploadForm); production Signal-Server serves this REST route
      // (AttachmentControllerV4), so the sandbox adds it from the mock's own form function. The
      // strict sandbox checks the request first (rule attachment-form-request-shape).
      this.router.get('/v4/attachments/form/upload', async () => {
        if (!this.device) return [401, { error: 'Not authorized' }];
        const form = await this.server!.getAttachmentUploadForm('attachments', crypto.randomUUID());
        // AttachmentDescriptorV3 as Signal-Server serializes it.
        return [
          200,
          {
            cdn: form.cdn,
            key: form.key,
            headers: form.headers,
            signedUploadLocation: form.signedUploadLocation,
          },
        ];
      });
    }
    return original.call(this, request);
  };
}

/** Waits for `p` at most `ms`; true when it settled in time (a rejection counts as settled). */
async function bounded(p: Promise<unknown> | unknown, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const settled = await Promise.race([
    Promise.resolve(p).then(
      () => true,
      () => true,
    ),
    new Promise<false>((r) => {
      timer = setTimeout(() => r(false), ms);
      timer.unref();
    }),
  ]);
  clearTimeout(timer);
  return settled;
}

export async function startSandbox(opts: SandboxOptions = {}): Promise<Sandbox> {
  const closeTimeoutMs = opts.closeTimeoutMs ?? 5000;
  // Before anything is started, so that bad options leave nothing behind.
  checkConformanceOptions(opts.conformance);
  installDirectoryAuthRoute();
  installMultiRecipientRoute();
  const cdn3Path = fs.mkdtempSync(path.join(os.tmpdir(), 'sigflow-cdn3-'));
  const server = new mock.Server({ cdn3Path });
  await server.listen(0, '127.0.0.1');
  // Before anything connects: from the first upgrade on, the mock refuses what Signal would.
  const conformance = installConformance(server, opts.conformance);
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  const certs = await mock.loadCertificates();
  const caCert = certs.certificateAuthority;
  const trustRoot = String(certs.serverTrustRoots[0]);
  const url = `https://127.0.0.1:${port}`;
  const tracked: Closable[] = [];
  const firstCredential = credentialLog.length;
  let closed: Promise<void> | null = null;
  const sandbox: Sandbox = {
    server,
    cdn3Path,
    port,
    url,
    caCert,
    trustRoot,
    conformance,
    environment: {
      server: 'custom',
      serviceUrl: url,
      caCert,
      trustRoots: [trustRoot],
      transport: 'http2',
      // As Signal-Desktop's mock tests configure it: the mock serves CDN 3 under /cdn3.
      cdnUrls: { 0: url, 2: url, 3: `${url}/cdn3` },
      // The mock serves the storage service (groups, storage records) under /storageService.
      storageUrl: `${url}/storageService`,
      serverPublicParams: certs.serverPublicParams,
    },
    multiRecipient: multiRecipientLog(server),
    get directoryCredentials() {
      return credentialLog.slice(firstCredential);
    },
    createPrimary: (opts = {}) =>
      server.createPrimaryDevice({
        profileName: opts.profileName ?? `Mock ${crypto.randomBytes(3).toString('hex')}`,
        ...(opts.contacts ? { contacts: opts.contacts } : {}),
      }),
    track: (c) => {
      tracked.push(c);
      return c;
    },
    close: () => {
      closed ??= (async () => {
        let stuckClients = 0;
        for (const c of tracked.splice(0).reverse()) {
          if (!(await bounded(c.close(), closeTimeoutMs))) stuckClients++;
        }
        const serverClosed = await bounded(server.close(), closeTimeoutMs);
        fs.rmSync(cdn3Path, { recursive: true, force: true });
        const stuck = [
          ...(stuckClients ? [`${stuckClients} tracked client(s)`] : []),
          ...(serverClosed ? [] : ['the mock server']),
        ];
        if (stuck.length)
          throw new Error(
            `sandbox teardown: ${stuck.join(' and ')} did not close within ${closeTimeoutMs} ms`,
          );
      })();
      return closed;
    },
  };
  return sandbox;
}
