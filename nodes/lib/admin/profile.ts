/**
 * POST /signal-account/:id/profile {given, family?}: a number registered here sets its Signal
 * profile name (a writer's route). A linked account is refused with what to do instead: its
 * profile is the phone's. Needs the deployed node's connected client.
 */
import { InvalidInputError } from '../../../core/errors';
import type { RedRequest, RedResponse } from '../red';
import { bodyOf, deployedClient, route, type AdminContext } from './context';

export function installProfileRoute(ctx: AdminContext): void {
  const { RED, write } = ctx;
  RED.httpAdmin.post(
    '/signal-account/:id/profile',
    write,
    route(async (req: RedRequest, res: RedResponse) => {
      const body = bodyOf(req);
      const given = body.given;
      const family = body.family ?? undefined;
      if (typeof given !== 'string' || given.trim() === '')
        throw new InvalidInputError('Give a name: "given" is missing or empty');
      if (family !== undefined && typeof family !== 'string')
        throw new InvalidInputError('"family" must be text');
      const client = await deployedClient(ctx, req, res);
      if (!client) return;
      await client.setProfileName(given, family);
      // The name is not a secret, but it is the user's: not in the log.
      RED.log.info(`[signal-account:${req.params.id}] profile name set`);
      res.json({ set: true });
    }),
  );
}
