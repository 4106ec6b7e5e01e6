/**
 * GET /signal-account/:id/status: whether an account is stored and connected, for the editor and
 * for flows that check before sending. Readers may ask; it holds no secret.
 */
import fs from 'node:fs';
import type { RedRequest, RedResponse } from '../red';
import { sendError } from '../registration';
import { route, unknownAccount, type AdminContext } from './context';

export function installStatusRoute(ctx: AdminContext): void {
  const { RED, read, sessions, registering, dataFileFor, deployed } = ctx;
  RED.httpAdmin.get(
    '/signal-account/:id/status',
    read,
    route(async (req: RedRequest, res: RedResponse) => {
      const id = req.params.id ?? '';
      let file: string;
      try {
        file = dataFileFor(id);
      } catch (e) {
        return sendError(res, e, 400);
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
    }),
  );
}
