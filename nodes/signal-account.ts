/**
 * signal-account: the config node that owns one SignalClient (one Signal account). Flow nodes
 * register with it (Node-RED's MQTT-broker pattern); it pushes its status to them and forwards
 * received events. The editor's admin routes for linking and registering are in lib/admin/, keyed
 * by node id so that they work before the first deploy.
 */
import { EventEmitter } from 'node:events';
import { SignalClient } from '../core/client';
import { SignalError } from '../core/errors';
import type { ClientState, IncomingEvent } from '../core/types';
import { regionOf, type AccountNode } from './lib/account';
import { installAdminRoutes } from './lib/admin';
import type { Node, RED } from './lib/red';
import { environmentOf, nodeLogger, type AccountConfig } from './lib/settings';
import { statusFor } from './lib/status';

export = function register(RED: RED): void {
  const admin = installAdminRoutes(RED);

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
      const status = statusFor(RED._, state, detail);
      for (const u of users.values()) u.status(status);
    };

    const opened: Promise<SignalClient> = (async () => {
      const defaultRegion = regionOf(config.region);
      const client = await SignalClient.open({
        dataFile: admin.dataFileFor(node.id),
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
      node.error(RED._('signal-account.errors.unusable', { error: msg }));
      setState('error', e instanceof SignalError ? e.code.toLowerCase() : 'settings');
    });

    node.client = () => opened;
    node.register = (user: Node) => {
      users.set(user.id, user);
      user.status(statusFor(RED._, node.state, stateDetail));
    };
    node.deregister = (user: Node, done: () => void) => {
      users.delete(user.id);
      done();
    };

    node.on('close', (_removed: boolean, done: () => void) => {
      closing = true;
      node.events.removeAllListeners();
      admin.abortLink(node.id);
      // Node-RED allows 15 s; the client closes sockets and the store well within that.
      const timeout = new Promise((r) => setTimeout(r, 10_000).unref());
      void Promise.race([opened.then((c) => c.close()).catch(() => undefined), timeout]).then(() =>
        done(),
      );
    });
  }

  RED.nodes.registerType('signal-account', SignalAccountNode);
};
