/**
 * GET /signal-account/:id/groups: the account's Signal groups for the editor's pickers (signal-out's
 * "To", signal-in's chosen groups) and for flows. `?refresh=1` first reads the phone's storage
 * service and refetches every group. Readers may ask: the answer holds no key, only
 * `[{id, title, members: <count>, revision}]`.
 */
import type { RedRequest, RedResponse } from '../red';
import { deployedClient, route, unknownAccount, type AdminContext } from './context';

export function installGroupsRoute(ctx: AdminContext): void {
  const { RED, read } = ctx;
  RED.httpAdmin.get(
    '/signal-account/:id/groups',
    read,
    route(async (req: RedRequest, res: RedResponse) => {
      const id = req.params.id ?? '';
      ctx.dataFileFor(id);
      if (!ctx.deployed(id)) return unknownAccount(res, id);
      const client = await deployedClient(ctx, req, res);
      if (!client) return;
      // Before linking there is no store and so no group.
      if (!client.account) {
        res.json([]);
        return;
      }
      const refresh = ['1', 'true'].includes(String(req.query?.refresh ?? ''));
      const groups = await client.groups({ refresh });
      res.json(
        groups.map((g) => ({
          id: g.id,
          title: g.title,
          members: g.members.length,
          revision: g.revision,
        })),
      );
    }),
  );
}
