/**
 * Linking as a secondary device from the editor: POST starts (with the editor's current server
 * settings, so it works before the first deploy), GET polls, DELETE cancels. The QR code and its
 * URL go only to signal-account.write: whoever scans them takes the account.
 */
import path from 'node:path';
import QRCode from 'qrcode';
import { SignalClient } from '../../../core/client';
import { resolveEnvironment } from '../../../core/config';
import { SignalError } from '../../../core/errors';
import type { RedRequest, RedResponse } from '../red';
import { errorBody, sendError } from '../registration';
import { environmentOf, nodeLogger, type AccountConfig } from '../settings';
import {
  mayWrite,
  route,
  summary,
  unknownAccount,
  type AdminContext,
  type LinkSession,
} from './context';

const publicSession = (s: LinkSession): Partial<LinkSession> => ({
  state: s.state,
  ...(s.url ? { url: s.url } : {}),
  ...(s.qr ? { qr: s.qr } : {}),
  ...(s.account ? { account: s.account } : {}),
  ...(s.error ? { error: s.error } : {}),
});

export function installLinkRoutes(ctx: AdminContext): void {
  const { RED, read, write, sessions, dataFileFor, deployed, guard } = ctx;
  /** The POST /link start in progress per id (see the route). */
  const linkStarts = new Map<string, Promise<void>>();

  RED.httpAdmin.post(
    '/signal-account/:id/link',
    write,
    route(async (req: RedRequest, res: RedResponse) => {
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
        return sendError(res, e, 400);
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
          return sendError(res, e, 400);
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
            const err = new SignalError(
              'UNAUTHORIZED',
              `Signal no longer accepts this account's credentials, and setting it aside failed (${
                e instanceof Error ? e.message : String(e)
              }): stop Node-RED, delete ${path.basename(file)} from the signal folder, start it and link again`,
            );
            return sendError(res, err, 409, { account: summary(client.account) });
          }
        }
        if (client.account) {
          if (temporary) await client.close();
          res.status(409).json({
            error: { code: 'ALREADY_LINKED', message: 'This account is already linked' },
            account: summary(client.account),
          });
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
              session.error = errorBody(e);
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
    }),
  );

  // The link's state is for readers; its URL and QR code only for those who may link (whoever
  // scans them takes the account), so a signal-account.read user gets the state without them.
  RED.httpAdmin.get(
    '/signal-account/:id/link',
    read,
    route(async (req: RedRequest, res: RedResponse) => {
      const id = req.params.id ?? '';
      const session = sessions.get(id);
      if (session) {
        const visible = publicSession(session);
        if (!(await mayWrite(ctx, req))) {
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
    }),
  );

  RED.httpAdmin.delete('/signal-account/:id/link', write, (req: RedRequest, res: RedResponse) => {
    const session = sessions.get(req.params.id ?? '');
    if (!session)
      return res.status(404).json({ error: { code: 'NOT_FOUND', message: 'No link in progress' } });
    if (session.state === 'waiting') session.abort.abort();
    res.json({ state: session.state === 'waiting' ? 'cancelled' : session.state });
  });
}
