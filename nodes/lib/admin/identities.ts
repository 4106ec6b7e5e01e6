/**
 * Changed safety numbers. With the `block` identity policy, sends to a contact whose safety number
 * changed fail with IDENTITY_CHANGED until the new identity is approved. These routes list (read)
 * and approve (write) them; they need the deployed node's client (the identities are its store's),
 * so an undeployed id is 404.
 */
import type { RedRequest, RedResponse } from '../red';
import { serviceIdOf } from '../identity';
import { bodyOf, deployedClient, route, type AdminContext } from './context';

export function installIdentityRoutes(ctx: AdminContext): void {
  const { RED, read, write } = ctx;

  RED.httpAdmin.get(
    '/signal-account/:id/identities',
    read,
    route(async (req: RedRequest, res: RedResponse) => {
      const client = await deployedClient(ctx, req, res);
      if (!client) return;
      // Before linking there is no store of identities, so nothing waits.
      res.json({ pending: client.account ? client.pendingIdentities() : [] });
    }),
  );

  RED.httpAdmin.post(
    '/signal-account/:id/identities/approve',
    write,
    route(async (req: RedRequest, res: RedResponse) => {
      const serviceId = serviceIdOf(bodyOf(req).serviceId);
      const client = await deployedClient(ctx, req, res);
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
    }),
  );
}
