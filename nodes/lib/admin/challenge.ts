/**
 * Rate-limit challenges. A send Signal answers 428 fails CHALLENGE_REQUIRED until a captcha is
 * solved and handed back (PUT /v1/challenge). The dialog shows the pending challenge and takes the
 * signalcaptcha:// link. Both routes need signal-account.write: answering one lets the account send
 * again.
 */
import { SignalError } from '../../../core/errors';
import type { RedRequest, RedResponse } from '../red';
import { stringField } from '../registration';
import { bodyOf, deployedClient, route, type AdminContext } from './context';

export function installChallengeRoutes(ctx: AdminContext): void {
  const { RED, write } = ctx;

  RED.httpAdmin.get(
    '/signal-account/:id/challenge',
    write,
    route(async (req: RedRequest, res: RedResponse) => {
      const client = await deployedClient(ctx, req, res);
      if (!client) return;
      res.json({ pending: client.pendingChallenge });
    }),
  );

  RED.httpAdmin.post(
    '/signal-account/:id/challenge',
    write,
    route(async (req: RedRequest, res: RedResponse) => {
      const body = bodyOf(req);
      const captcha = stringField(body, 'captcha');
      const token = stringField(body, 'token');
      if (!captcha)
        throw new SignalError('INVALID_INPUT', 'Paste the solved captcha (signalcaptcha://…)');
      const client = await deployedClient(ctx, req, res);
      if (!client) return;
      await client.submitChallenge({ captcha, ...(token ? { token } : {}) });
      res.json({ state: 'accepted' });
    }),
  );
}
