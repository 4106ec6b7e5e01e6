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
import { SignalError } from '../core/errors';
import type { Logger } from '../core/log';
import type { AccountInfo, ClientState, IdentityTrust, IncomingEvent } from '../core/types';
import type { AccountNode } from './lib/account';
import type { Node, RED, RedRequest, RedResponse } from './lib/red';
import { statusFor } from './lib/status';

interface AccountConfig {
  name?: string;
  server?: ServerName;
  serviceUrl?: string;
  caCert?: string;
  trustRoots?: string;
  deviceName?: string;
  identityTrust?: IdentityTrust;
}

interface LinkSession {
  state: 'waiting' | 'linked' | 'failed' | 'cancelled';
  url?: string;
  qr?: string;
  account?: { number?: string; aci: string; deviceId: number };
  error?: string;
  abort: AbortController;
}

function environmentOf(c: AccountConfig): EnvironmentOptions {
  const server = c.server ?? 'production';
  return server === 'custom'
    ? {
        server,
        serviceUrl: c.serviceUrl ?? '',
        caCert: c.caCert ?? '',
        trustRoots: c.trustRoots ?? '',
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

  function SignalAccountNode(this: AccountNode, config: AccountConfig & { id: string }) {
    RED.nodes.createNode(this, config);
    const node = this;
    const users = new Map<string, Node>();
    node.events = new EventEmitter();
    node.events.setMaxListeners(0);
    node.state = 'idle';
    let closing = false;
    const logger = nodeLogger(RED, node.id);

    const setState = (state: ClientState | 'error', detail?: string) => {
      node.state = state;
      const status = statusFor(state, detail);
      for (const u of users.values()) u.status(status);
    };

    const opened: Promise<SignalClient> = (async () => {
      const client = await SignalClient.open({
        dataFile: dataFileFor(node.id),
        environment: environmentOf(config),
        deviceName: config.deviceName || 'Node-RED',
        identityTrust: config.identityTrust === 'block' ? 'block' : 'accept',
        logger,
      });
      client.on('state', (s, err) => setState(s, err?.code));
      client.on('event', (ev: IncomingEvent) => node.events.emit('event', ev));
      if (client.account && !closing) {
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
      user.status(statusFor(node.state));
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

  const publicSession = (s: LinkSession) => ({
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
      const previous = sessions.get(id);
      if (previous?.state === 'waiting') previous.abort.abort();
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
      if (client.account) {
        if (temporary) await client.close();
        res
          .status(409)
          .json({ error: 'This account is already linked', account: summary(client.account) });
        return;
      }
      const session: LinkSession = { state: 'waiting', abort: new AbortController() };
      sessions.set(id, session);
      client
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
          },
          (e: unknown) => {
            session.state =
              e instanceof SignalError && e.code === 'CANCELLED' ? 'cancelled' : 'failed';
            session.error = e instanceof Error ? e.message : String(e);
          },
        )
        .finally(() => {
          delete session.url;
          delete session.qr;
          // A client opened just for linking is closed; the deployed node opens the file itself.
          if (temporary) void client.close();
        });
      res.status(202).json(publicSession(session));
    })();
  });

  RED.httpAdmin.get('/signal-account/:id/link', read, (req: RedRequest, res: RedResponse) => {
    const id = req.params.id ?? '';
    const session = sessions.get(id);
    if (session) return res.json(publicSession(session));
    void (async () => {
      const node = deployed(id);
      const account = node
        ? await node.client().then(
            (c) => c.account,
            () => null,
          )
        : null;
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
          ...(a ? { number: a.number, aci: a.aci, pni: a.pni, deviceId: a.deviceId } : {}),
        });
        return;
      }
      if (!fs.existsSync(file)) return res.json({ linked: false, connected: false });
      res.json({ linked: true, connected: false });
    })();
  });
};
