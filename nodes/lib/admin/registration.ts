/**
 * Registering a number of its own (issue 7). Like linking, keyed by config node id so that it works
 * before the first deploy: an undeployed id gets a client of its own, kept between start and verify
 * (it holds no socket and no file until the account exists) and closed when the registration ends
 * or after REGISTRATION_IDLE_MS without a call. Beside them, the guard registry of claimed numbers.
 *
 * Every registration route needs signal-account.write, reads included: where a registration stands
 * and which numbers are claimed is for those who may register.
 */
import fs from 'node:fs';
import { SignalClient } from '../../../core/client';
import { resolveEnvironment } from '../../../core/config';
import { normalizeNumber } from '../../../core/directory/number';
import { SignalError } from '../../../core/errors';
import { RegistrationError } from '../../../core/registration';
import type { RedRequest, RedResponse } from '../red';
import { stringField } from '../registration';
import { environmentOf, nodeLogger, type AccountConfig } from '../settings';
import { bodyOf, route, summary, unknownAccount, type AdminContext } from './context';

const REGISTRATION_IDLE_MS = 30 * 60_000;

/** The editor's current server settings, checked as the link route checks them. */
function settingsOf(body: Record<string, unknown>): AccountConfig {
  const c: AccountConfig = {};
  for (const k of [
    'server',
    'serviceUrl',
    'caCert',
    'trustRoots',
    'deviceName',
    'userAgent',
    'serverPublicParams',
  ] as const) {
    const v = stringField(body, k);
    if (v !== undefined) (c as Record<string, string>)[k] = v;
  }
  if (c.server !== undefined && !['production', 'staging', 'custom'].includes(c.server))
    throw new SignalError('INVALID_INPUT', `Unknown server "${String(c.server)}"`);
  resolveEnvironment(environmentOf(c));
  return c;
}

export function installRegistrationRoutes(ctx: AdminContext): void {
  const { RED, write, registering, dataFileFor, deployed, guard } = ctx;

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
  /** The client a registration of `id` runs in: the one it started in, else the deployed node's. */
  const registrationClient = async (id: string): Promise<SignalClient | null> => {
    const entry = registering.get(id);
    if (entry) return entry.client;
    const node = deployed(id);
    return node ? node.client() : null;
  };

  /**
   * A route that runs a registration step in a client: whichever client it used is settled when it
   * ends (kept while the registration waits for the user, else closed), whatever the outcome.
   */
  const settlingRoute = (
    step: (
      id: string,
      req: RedRequest,
      res: RedResponse,
      use: (client: SignalClient) => SignalClient,
    ) => Promise<void>,
  ) =>
    route(async (req: RedRequest, res: RedResponse) => {
      const id = req.params.id ?? '';
      const used: { client?: SignalClient } = {};
      try {
        await step(id, req, res, (client) => (used.client = client));
      } finally {
        if (used.client) settleTemporary(id, used.client);
      }
    });

  RED.httpAdmin.post(
    '/signal-account/:id/register',
    write,
    settlingRoute(async (id, req, res, use) => {
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
      let client: SignalClient;
      if (node) {
        dropTemporary(id);
        client = use(await node.client());
      } else {
        client = use(
          registering.get(id)?.client ??
            (await SignalClient.open({
              dataFile: file,
              environment: environmentOf(settings),
              deviceName: settings.deviceName || 'Node-RED',
              logger: nodeLogger(RED, id),
            })),
        );
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
    }),
  );

  RED.httpAdmin.post(
    '/signal-account/:id/register/verify',
    write,
    settlingRoute(async (id, req, res, use) => {
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
      const found = await registrationClient(id);
      if (!found) {
        throw new RegistrationError(
          'NOT_STARTED',
          'No registration is in progress for this account: start it first.',
        );
      }
      const client = use(found);
      const account = await client.verifyRegistration(code, secret);
      const { reregistration, notice } = client.registration;
      res.json({
        state: 'registered',
        account: summary(account),
        connected: client.state === 'connected',
        // The number was active on another device, which this registration signed out.
        ...(reregistration ? { reregistration: true, notice } : {}),
      });
    }),
  );

  RED.httpAdmin.get(
    '/signal-account/:id/register',
    write,
    route(async (req: RedRequest, res: RedResponse) => {
      const id = req.params.id ?? '';
      const file = dataFileFor(id);
      const client = await registrationClient(id);
      if (client) return res.json(client.registration);
      // Nothing in progress: an account registered or linked before its first deploy has a file.
      if (fs.existsSync(file)) return res.json({ state: 'idle' });
      unknownAccount(res, id);
    }),
  );

  RED.httpAdmin.delete(
    '/signal-account/:id/register',
    write,
    settlingRoute(async (id, req, res, use) => {
      dataFileFor(id);
      const secret = stringField(bodyOf(req), 'secret');
      const client = await registrationClient(id);
      if (!client) return unknownAccount(res, id);
      res.json(await use(client).cancelRegistration(secret));
    }),
  );

  // The guard registry of this Node-RED instance: numbers, states and the audit log, never a
  // secret or hash (GuardRegistry.list and .audit hold none).
  RED.httpAdmin.get(
    '/signal-account/registry',
    write,
    route(async (_req: RedRequest, res: RedResponse) => {
      const registry = await guard();
      const [numbers, audit] = await Promise.all([registry.list(), registry.audit()]);
      res.json({ numbers, audit: audit.slice(-50) });
    }),
  );

  RED.httpAdmin.post(
    '/signal-account/registry/release',
    write,
    route(async (req: RedRequest, res: RedResponse) => {
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
    }),
  );
}
