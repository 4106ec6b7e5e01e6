/**
 * signal-account: the config node that owns one SignalClient (one Signal account). Flow nodes
 * register with it (Node-RED's MQTT-broker pattern); it pushes its status to them and forwards
 * received events. It also serves the editor's admin routes for linking, keyed by node id so that
 * linking works before the first deploy.
 */
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import QRCode from 'qrcode';
import { SignalClient } from '../core/client';
import { resolveEnvironment, type EnvironmentOptions, type ServerName } from '../core/config';
import { normalizeNumber } from '../core/directory/number';
import { SignalError } from '../core/errors';
import type { Logger } from '../core/log';
import type { AccountInfo, ClientState, IdentityTrust, IncomingEvent } from '../core/types';
import { regionOf, type AccountNode } from './lib/account';
import type { Node, RED, RedRequest, RedResponse } from './lib/red';
import { statusFor } from './lib/status';
import { guardRegistry, sendError, stringField } from './lib/registration';
import { serviceIdOf } from './lib/identity';
import { RegistrationError } from '../core/registration';

interface AccountConfig {
  name?: string;
  server?: ServerName;
  serviceUrl?: string;
  caCert?: string;
  trustRoots?: string;
  deviceName?: string;
  identityTrust?: IdentityTrust;
  /** ISO 3166 two-letter country for numbers written without a country code; optional. */
  region?: string;
  /** Custom server only: the User-Agent to send instead of sigflow's own. */
  userAgent?: string;
}

interface LinkSession {
  state: 'waiting' | 'linked' | 'failed' | 'cancelled';
  url?: string;
  qr?: string;
  account?: { number?: string; aci: string; deviceId: number };
  error?: string;
  abort: AbortController;
  /** Settles once the link attempt has ended and its client is free for another. */
  ended?: Promise<void>;
}

function environmentOf(c: AccountConfig): EnvironmentOptions {
  const server = c.server ?? 'production';
  return server === 'custom'
    ? {
        server,
        serviceUrl: c.serviceUrl ?? '',
        caCert: c.caCert ?? '',
        trustRoots: c.trustRoots ?? '',
        ...(c.userAgent ? { userAgent: c.userAgent } : {}),
      }
    : { server };
}

function nodeLogger(RED: RED, id: string): Logger {
  const p = `[signal-account:${id}]`;
  return {
    debug: (m) => RED.log.debug(`${p} ${m}`),
    info: (m) => RED.log.info(`${p} ${m}`),
    warn: (m) => RED.log.warn(`${p} ${m}`),
    error: (m) => RED.log.error(`${p} ${m}`),
  };
}

function summary(a: AccountInfo | null): LinkSession['account'] | undefined {
  return a
    ? { aci: a.aci, deviceId: a.deviceId, ...(a.number ? { number: a.number } : {}) }
    : undefined;
}

export = function register(RED: RED): void {
  const dataDir = (): string =>
    (RED.settings.signalAccountDataDir as string | undefined) ??
    path.join(RED.settings.userDir ?? path.join(os.homedir(), '.node-red'), 'signal');
  const dataFileFor = (id: string): string => {
    if (!/^[A-Za-z0-9._-]+$/.test(id))
      throw new SignalError('INVALID_INPUT', `Invalid node id "${id}"`);
    return path.join(dataDir(), `${id}.db`);
  };
  const sessions = new Map<string, LinkSession>();
  /** The POST /link start in progress per id (see the route). */
  const linkStarts = new Map<string, Promise<void>>();
  const guard = guardRegistry(RED, dataDir);

  function SignalAccountNode(this: AccountNode, config: AccountConfig & { id: string }) {
    RED.nodes.createNode(this, config);
    const node = this;
    const users = new Map<string, Node>();
    node.events = new EventEmitter();
    node.events.setMaxListeners(0);
    node.state = 'idle';
    let closing = false;
    const logger = nodeLogger(RED, node.id);

    // The last state's detail too: a flow node that registers after an error must show the same
    // "error: <code>" as those that were there when it happened.
    let stateDetail: string | undefined;
    const setState = (state: ClientState | 'error', detail?: string) => {
      node.state = state;
      stateDetail = detail;
      const status = statusFor(state, detail);
      for (const u of users.values()) u.status(status);
    };

    const opened: Promise<SignalClient> = (async () => {
      const defaultRegion = regionOf(config.region);
      const client = await SignalClient.open({
        dataFile: dataFileFor(node.id),
        environment: environmentOf(config),
        deviceName: config.deviceName || 'Node-RED',
        identityTrust: config.identityTrust === 'block' ? 'block' : 'accept',
        ...(defaultRegion ? { defaultRegion } : {}),
        logger,
      });
      client.on('state', (s, err) => setState(s, err?.code));
      client.on('event', (ev: IncomingEvent) => node.events.emit('event', ev));
      const mismatch = client.environmentMismatch;
      if (mismatch) {
        // Linked or registered on another server: nothing connects (the password stays here) until
        // the server is set back, or Link device / registering sets this account aside.
        node.error(mismatch.message);
        setState('error', mismatch.code);
      } else if (client.account && !closing) {
        client.connect().catch((e: unknown) => {
          if (!closing)
            logger.warn(`connect failed: ${e instanceof Error ? e.message : String(e)}`);
        });
      } else {
        setState('idle');
      }
      return client;
    })();
    opened.catch((e: unknown) => {
      const msg = e instanceof Error ? e.message : String(e);
      node.error(`Signal account settings are unusable: ${msg}`);
      setState('error', e instanceof SignalError ? e.code.toLowerCase() : 'settings');
    });

    node.client = () => opened;
    node.register = (user: Node) => {
      users.set(user.id, user);
      user.status(statusFor(node.state, stateDetail));
    };
    node.deregister = (user: Node, done: () => void) => {
      users.delete(user.id);
      done();
    };

    node.on('close', (_removed: boolean, done: () => void) => {
      closing = true;
      node.events.removeAllListeners();
      const session = sessions.get(node.id);
      if (session?.state === 'waiting') session.abort.abort();
      // Node-RED allows 15 s; the client closes sockets and the store well within that.
      const timeout = new Promise((r) => setTimeout(r, 10_000).unref());
      void Promise.race([opened.then((c) => c.close()).catch(() => undefined), timeout]).then(() =>
        done(),
      );
    });
  }

  RED.nodes.registerType('signal-account', SignalAccountNode);

  // ------------------------------------------------------------------ admin routes

  const read = RED.auth.needsPermission('signal-account.read');
  const write = RED.auth.needsPermission('signal-account.write');

  const publicSession = (s: LinkSession): Partial<LinkSession> => ({
    state: s.state,
    ...(s.url ? { url: s.url } : {}),
    ...(s.qr ? { qr: s.qr } : {}),
    ...(s.account ? { account: s.account } : {}),
    ...(s.error ? { error: s.error } : {}),
  });

  const deployed = (id: string): AccountNode | null => {
    const n = RED.nodes.getNode(id) as AccountNode | null;
    return n && n.type === 'signal-account' ? n : null;
  };

  RED.httpAdmin.post('/signal-account/:id/link', write, (req: RedRequest, res: RedResponse) => {
    void (async () => {
      const id = req.params.id ?? '';
      const body = (req.body ?? {}) as AccountConfig;
      let file: string;
      try {
        file = dataFileFor(id);
        if (
          body.server !== undefined &&
          !['production', 'staging', 'custom'].includes(body.server)
        ) {
          throw new SignalError('INVALID_INPUT', `Unknown server "${String(body.server)}"`);
        }
        resolveEnvironment(environmentOf(body));
      } catch (e) {
        res.status(400).json({ error: e instanceof Error ? e.message : String(e) });
        return;
      }
      // One start at a time per account id: a double click or a second editor tab must not race the
      // first (two link attempts on one client, two clients on one file, two discards).
      const prior = linkStarts.get(id) ?? Promise.resolve();
      let release!: () => void;
      const mine = new Promise<void>((r) => (release = r));
      linkStarts.set(id, mine);
      await prior;
      try {
        // A new Link click replaces an attempt still waiting; the client takes one link at a time, so
        // the old attempt must have ended (its cancel lands a moment after the abort) before the next.
        const previous = sessions.get(id);
        if (previous?.state === 'waiting') previous.abort.abort();
        await previous?.ended;
        const node = deployed(id);
        let client: SignalClient;
        let temporary = false;
        try {
          if (node) client = await node.client();
          else {
            client = await SignalClient.open({
              dataFile: file,
              environment: environmentOf(body),
              deviceName: body.deviceName || 'Node-RED',
              logger: nodeLogger(RED, id),
            });
            temporary = true;
          }
        } catch (e) {
          res.status(400).json({ error: e instanceof Error ? e.message : String(e) });
          return;
        }
        // An account Signal no longer accepts (the phone removed this device) is set aside so that the
        // editor can link again in place; its file is kept beside, renamed, for its contacts and logs.
        if (client.account && client.state === 'unlinked') {
          try {
            const aside = await client.discardUnlinkedAccount();
            RED.log.info(
              `[signal-account:${id}] the unlinked account was set aside as ${path.basename(aside)}; linking again`,
            );
          } catch (e) {
            res.status(409).json({
              error: `Signal no longer accepts this account's credentials, and setting it aside failed (${
                e instanceof Error ? e.message : String(e)
              }): stop Node-RED, delete ${path.basename(file)} from the signal folder, start it and link again`,
              account: summary(client.account),
            });
            return;
          }
        }
        if (client.account) {
          if (temporary) await client.close();
          res
            .status(409)
            .json({ error: 'This account is already linked', account: summary(client.account) });
          return;
        }
        const session: LinkSession = { state: 'waiting', abort: new AbortController() };
        sessions.set(id, session);
        session.ended = client
          .link({
            signal: session.abort.signal,
            onUrl: (url) => {
              session.url = url;
              QRCode.toString(url, { type: 'svg', margin: 2, errorCorrectionLevel: 'M' }).then(
                (svg) => {
                  if (session.url === url) session.qr = svg;
                },
                () => undefined,
              );
            },
          })
          .then(
            (account) => {
              session.state = 'linked';
              session.account = summary(account);
              // The guard registry notes numbers linked here too, so a registration cannot take
              // them over unnoticed (issue 7).
              const number = account.number;
              if (number) {
                void guard()
                  .then((g) => g.recordLinked(number))
                  .catch((e: unknown) =>
                    RED.log.warn(
                      `[signal-account:${id}] the registration registry did not record the linked number: ${
                        e instanceof Error ? e.message : String(e)
                      }`,
                    ),
                  );
              }
            },
            (e: unknown) => {
              session.state =
                e instanceof SignalError && e.code === 'CANCELLED' ? 'cancelled' : 'failed';
              session.error = e instanceof Error ? e.message : String(e);
            },
          )
          .finally(async () => {
            delete session.url;
            delete session.qr;
            // A client opened just for linking is closed; the deployed node opens the file itself.
            if (temporary) await client.close();
          })
          .catch((e: unknown) =>
            RED.log.warn(
              `[signal-account:${id}] closing the linking client failed: ${e instanceof Error ? e.message : String(e)}`,
            ),
          );
        res.status(202).json(publicSession(session));
      } finally {
        release();
        if (linkStarts.get(id) === mine) linkStarts.delete(id);
      }
    })();
  });

  /** 404 for an id that is neither deployed nor being linked or registered from the editor. */
  const unknownAccount = (res: RedResponse, id: string): void => {
    res.status(404).json({
      error: {
        code: 'NOT_FOUND',
        message: `No Signal account ${id} is deployed, being linked or being registered`,
      },
    });
  };

  /**
   * Whether this request would pass signal-account.write, asked of Node-RED's own permission check
   * (the route itself needs only .read). Without adminAuth everyone may.
   */
  const mayWrite = (req: RedRequest): Promise<boolean> =>
    new Promise((resolve) => {
      const refused = { status: () => ({ end: () => resolve(false), json: () => resolve(false) }) };
      write(req, refused as unknown as RedResponse, () => resolve(true));
    });

  // The link's state is for readers; its URL and QR code only for those who may link (whoever
  // scans them takes the account), so a signal-account.read user gets the state without them.
  RED.httpAdmin.get('/signal-account/:id/link', read, (req: RedRequest, res: RedResponse) => {
    const id = req.params.id ?? '';
    void (async () => {
      const session = sessions.get(id);
      if (session) {
        const visible = publicSession(session);
        if (!(await mayWrite(req))) {
          delete visible.url;
          delete visible.qr;
        }
        return res.json(visible);
      }
      const node = deployed(id);
      if (!node) return unknownAccount(res, id);
      const account = await node.client().then(
        (c) => c.account,
        () => null,
      );
      res.json(account ? { state: 'linked', account: summary(account) } : { state: 'idle' });
    })();
  });

  RED.httpAdmin.delete('/signal-account/:id/link', write, (req: RedRequest, res: RedResponse) => {
    const session = sessions.get(req.params.id ?? '');
    if (!session) return res.status(404).json({ error: 'No link in progress' });
    if (session.state === 'waiting') session.abort.abort();
    res.json({ state: session.state === 'waiting' ? 'cancelled' : session.state });
  });

  RED.httpAdmin.get('/signal-account/:id/status', read, (req: RedRequest, res: RedResponse) => {
    const id = req.params.id ?? '';
    void (async () => {
      let file: string;
      try {
        file = dataFileFor(id);
      } catch (e) {
        res.status(400).json({ error: e instanceof Error ? e.message : String(e) });
        return;
      }
      const node = deployed(id);
      if (node) {
        const client = await node.client().catch(() => null);
        const a = client?.account ?? null;
        res.json({
          linked: Boolean(a),
          connected: client?.state === 'connected',
          // `linked` says an account is stored; `state` says whether Signal still takes it
          // ('unlinked' once its credentials are rejected). 'error': the settings are unusable.
          state: client ? client.state : 'error',
          ...(a ? { number: a.number, aci: a.aci, pni: a.pni, deviceId: a.deviceId } : {}),
        });
        return;
      }
      // Not deployed: no client runs for it, so it is idle whether or not it has an account file
      // (linked from the editor before the first deploy).
      if (fs.existsSync(file)) return res.json({ linked: true, connected: false, state: 'idle' });
      if (sessions.has(id) || registering.has(id))
        return res.json({ linked: false, connected: false, state: 'idle' });
      unknownAccount(res, id);
    })();
  });

  // ------------------------------------------------------------------ rate-limit challenges
  //
  // A send Signal answers 428 fails CHALLENGE_REQUIRED until a captcha is solved and handed back
  // (PUT /v1/challenge). The dialog shows the pending challenge and takes the signalcaptcha:// link.
  // Both routes need signal-account.write: answering one lets the account send again.

  RED.httpAdmin.get('/signal-account/:id/challenge', write, (req: RedRequest, res: RedResponse) => {
    void (async () => {
      try {
        const client = await identityClient(req, res);
        if (!client) return;
        res.json({ pending: client.pendingChallenge });
      } catch (e) {
        sendError(res, e);
      }
    })();
  });

  RED.httpAdmin.post(
    '/signal-account/:id/challenge',
    write,
    (req: RedRequest, res: RedResponse) => {
      void (async () => {
        try {
          const body = bodyOf(req);
          const captcha = stringField(body, 'captcha');
          const token = stringField(body, 'token');
          if (!captcha)
            throw new SignalError('INVALID_INPUT', 'Paste the solved captcha (signalcaptcha://…)');
          const client = await identityClient(req, res);
          if (!client) return;
          await client.submitChallenge({ captcha, ...(token ? { token } : {}) });
          res.json({ state: 'accepted' });
        } catch (e) {
          sendError(res, e);
        }
      })();
    },
  );

  // ------------------------------------------------------------------ changed safety numbers
  //
  // With the `block` identity policy, sends to a contact whose safety number changed fail with
  // IDENTITY_CHANGED until the new identity is approved. These routes list and approve them; they
  // need the deployed node's client (the identities are its store's), so an undeployed id is 404.

  /** The deployed node's client, or null after answering 404 (400 for a malformed id). */
  const identityClient = async (
    req: RedRequest,
    res: RedResponse,
  ): Promise<SignalClient | null> => {
    const id = req.params.id ?? '';
    dataFileFor(id);
    const node = deployed(id);
    const client = node ? await node.client().catch(() => null) : null;
    if (!client) {
      res.status(404).json({
        error: {
          code: 'NOT_LINKED',
          message: node
            ? `The Signal account ${id} could not start (its settings are unusable): fix them and deploy`
            : `No Signal account ${id} is deployed: deploy it first`,
        },
      });
    }
    return client;
  };

  RED.httpAdmin.get('/signal-account/:id/identities', read, (req: RedRequest, res: RedResponse) => {
    void (async () => {
      try {
        const client = await identityClient(req, res);
        if (!client) return;
        // Before linking there is no store of identities, so nothing waits.
        res.json({ pending: client.account ? client.pendingIdentities() : [] });
      } catch (e) {
        sendError(res, e);
      }
    })();
  });

  RED.httpAdmin.post(
    '/signal-account/:id/identities/approve',
    write,
    (req: RedRequest, res: RedResponse) => {
      void (async () => {
        try {
          const serviceId = serviceIdOf(bodyOf(req).serviceId);
          const client = await identityClient(req, res);
          if (!client) return;
          if (!client.account || !client.approveIdentity(serviceId)) {
            res.status(404).json({
              error: {
                code: 'INVALID_INPUT',
                message: `No changed safety number of ${serviceId} waits for approval: there is nothing to approve`,
              },
            });
            return;
          }
          RED.log.info(
            `[signal-account:${req.params.id}] approved the new safety number of ${serviceId}`,
          );
          res.json({ approved: true, serviceId });
        } catch (e) {
          sendError(res, e);
        }
      })();
    },
  );

  // ------------------------------------------------------------------ registration routes
  //
  // Registering a number of its own (issue 7). Like linking, keyed by config node id so that it
  // works before the first deploy: an undeployed id gets a client of its own, kept between start
  // and verify (it holds no socket and no file until the account exists) and closed when the
  // registration ends or after REGISTRATION_IDLE_MS without a call.

  const REGISTRATION_IDLE_MS = 30 * 60_000;
  const registering = new Map<string, { client: SignalClient; timer: NodeJS.Timeout }>();

  // Closing the client gives up its local session only (Registrar.close): a protected claim stays
  // pending for its secret holder in the guard registry.
  const dropTemporary = (id: string) => {
    const entry = registering.get(id);
    if (!entry) return;
    registering.delete(id);
    clearTimeout(entry.timer);
    void entry.client.close().catch(() => undefined);
  };
  const touchTemporary = (id: string, client: SignalClient) => {
    const previous = registering.get(id);
    if (previous) clearTimeout(previous.timer);
    const timer = setTimeout(() => dropTemporary(id), REGISTRATION_IDLE_MS);
    timer.unref();
    registering.set(id, { client, timer });
  };
  /** Keeps a temporary client only while its registration waits for the user. */
  const settleTemporary = (id: string, client: SignalClient) => {
    if (registering.get(id)?.client !== client) return;
    const state = client.registration.state;
    if (state === 'captcha-required' || state === 'code-sent') touchTemporary(id, client);
    else dropTemporary(id);
  };

  const bodyOf = (req: RedRequest): Record<string, unknown> =>
    typeof req.body === 'object' && req.body !== null && !Array.isArray(req.body)
      ? (req.body as Record<string, unknown>)
      : {};

  /** The editor's current server settings, checked as the link route checks them. */
  const settingsOf = (body: Record<string, unknown>): AccountConfig => {
    const c: AccountConfig = {};
    for (const k of [
      'server',
      'serviceUrl',
      'caCert',
      'trustRoots',
      'deviceName',
      'userAgent',
    ] as const) {
      const v = stringField(body, k);
      if (v !== undefined) (c as Record<string, string>)[k] = v;
    }
    if (c.server !== undefined && !['production', 'staging', 'custom'].includes(c.server))
      throw new SignalError('INVALID_INPUT', `Unknown server "${String(c.server)}"`);
    resolveEnvironment(environmentOf(c));
    return c;
  };

  /** The client a registration of `id` runs in: the one it started in, else the deployed node's. */
  const registrationClient = async (id: string): Promise<SignalClient | null> => {
    const entry = registering.get(id);
    if (entry) return entry.client;
    const node = deployed(id);
    return node ? node.client() : null;
  };

  RED.httpAdmin.post('/signal-account/:id/register', write, (req: RedRequest, res: RedResponse) => {
    void (async () => {
      const id = req.params.id ?? '';
      let client: SignalClient | undefined;
      try {
        const file = dataFileFor(id);
        const body = bodyOf(req);
        const settings = settingsOf(body);
        const number = stringField(body, 'number');
        if (!number) {
          throw new SignalError(
            'INVALID_INPUT',
            'Give the number to register, with its country code (e.g. +15551234567)',
          );
        }
        const captcha = stringField(body, 'captcha');
        const transport = stringField(body, 'transport') ?? 'sms';
        const secret = stringField(body, 'secret');
        const registry = await guard();
        const node = deployed(id);
        if (node) {
          dropTemporary(id);
          client = await node.client();
        } else {
          client =
            registering.get(id)?.client ??
            (await SignalClient.open({
              dataFile: file,
              environment: environmentOf(settings),
              deviceName: settings.deviceName || 'Node-RED',
              logger: nodeLogger(RED, id),
            }));
          touchTemporary(id, client);
        }
        const status = await client.startRegistration({
          number,
          transport: transport as 'sms' | 'voice',
          guard: registry,
          ...(captcha ? { captcha } : {}),
          ...(secret ? { secret } : {}),
        });
        res.json(status);
      } catch (e) {
        sendError(res, e);
      } finally {
        if (client) settleTemporary(id, client);
      }
    })();
  });

  RED.httpAdmin.post(
    '/signal-account/:id/register/verify',
    write,
    (req: RedRequest, res: RedResponse) => {
      void (async () => {
        const id = req.params.id ?? '';
        let client: SignalClient | null = null;
        try {
          dataFileFor(id);
          const body = bodyOf(req);
          const code = stringField(body, 'code');
          // A protected registration takes the code only with its ownership secret.
          const secret = stringField(body, 'secret');
          if (!code) {
            throw new SignalError(
              'INVALID_INPUT',
              'Give the verification code from the SMS or voice call',
            );
          }
          client = await registrationClient(id);
          if (!client) {
            throw new RegistrationError(
              'NOT_STARTED',
              'No registration is in progress for this account: start it first.',
            );
          }
          const account = await client.verifyRegistration(code, secret);
          const { reregistration, notice } = client.registration;
          res.json({
            state: 'registered',
            account: summary(account),
            connected: client.state === 'connected',
            // The number was active on another device, which this registration signed out.
            ...(reregistration ? { reregistration: true, notice } : {}),
          });
        } catch (e) {
          sendError(res, e);
        } finally {
          if (client) settleTemporary(id, client);
        }
      })();
    },
  );

  // Every registration route needs signal-account.write, reads included: where a registration stands
  // and which numbers are claimed is for those who may register (issue 7).
  RED.httpAdmin.get('/signal-account/:id/register', write, (req: RedRequest, res: RedResponse) => {
    void (async () => {
      try {
        const id = req.params.id ?? '';
        const file = dataFileFor(id);
        const client = await registrationClient(id);
        if (client) return res.json(client.registration);
        // Nothing in progress: an account registered or linked before its first deploy has a file.
        if (fs.existsSync(file)) return res.json({ state: 'idle' });
        unknownAccount(res, id);
      } catch (e) {
        sendError(res, e);
      }
    })();
  });

  RED.httpAdmin.delete(
    '/signal-account/:id/register',
    write,
    (req: RedRequest, res: RedResponse) => {
      void (async () => {
        const id = req.params.id ?? '';
        let client: SignalClient | null = null;
        try {
          dataFileFor(id);
          const secret = stringField(bodyOf(req), 'secret');
          client = await registrationClient(id);
          if (!client) return unknownAccount(res, id);
          res.json(await client.cancelRegistration(secret));
        } catch (e) {
          sendError(res, e);
        } finally {
          if (client) settleTemporary(id, client);
        }
      })();
    },
  );

  // The guard registry of this Node-RED instance: numbers, states and the audit log, never a
  // secret or hash (GuardRegistry.list and .audit hold none).
  RED.httpAdmin.get('/signal-account/registry', write, (_req: RedRequest, res: RedResponse) => {
    void (async () => {
      try {
        const registry = await guard();
        const [numbers, audit] = await Promise.all([registry.list(), registry.audit()]);
        res.json({ numbers, audit: audit.slice(-50) });
      } catch (e) {
        sendError(res, e);
      }
    })();
  });

  RED.httpAdmin.post(
    '/signal-account/registry/release',
    write,
    (req: RedRequest, res: RedResponse) => {
      void (async () => {
        try {
          const body = bodyOf(req);
          const given = stringField(body, 'number');
          if (!given) throw new SignalError('INVALID_INPUT', 'Give the number to release');
          const number = normalizeNumber(given);
          const secret = stringField(body, 'secret');
          const registry = await guard();
          if (!(await registry.list()).some((e) => e.number === number)) {
            res.status(404).json({
              error: {
                code: 'INVALID_INPUT',
                message: `${number} is not claimed through this Node-RED: there is nothing to release`,
              },
            });
            return;
          }
          await registry.release(number, secret);
          res.json({ released: number });
        } catch (e) {
          sendError(res, e);
        }
      })();
    },
  );
};
