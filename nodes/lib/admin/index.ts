/**
 * The editor's admin routes of signal-account, one file per resource, all sharing one context
 * (the data folder, the link attempts and registrations in progress). Installed once, when the
 * node type is registered; the config node gets back what it needs of them.
 */
import type { RED } from '../red';
import { installChallengeRoutes } from './challenge';
import { createContext } from './context';
import { installGroupsRoute } from './groups';
import { installIdentityRoutes } from './identities';
import { installLinkRoutes } from './link';
import { installProfileRoute } from './profile';
import { installRegistrationRoutes } from './registration';
import { installStatusRoute } from './status';

export interface AdminRoutes {
  dataFileFor(id: string): string;
  /** Aborts the editor's link attempt for this id if one still waits (the node is closing). */
  abortLink(id: string): void;
}

export function installAdminRoutes(RED: RED): AdminRoutes {
  const ctx = createContext(RED);
  installLinkRoutes(ctx);
  installStatusRoute(ctx);
  installChallengeRoutes(ctx);
  installIdentityRoutes(ctx);
  installGroupsRoute(ctx);
  installRegistrationRoutes(ctx);
  installProfileRoute(ctx);
  return {
    dataFileFor: ctx.dataFileFor,
    abortLink: (id) => {
      const session = ctx.sessions.get(id);
      if (session?.state === 'waiting') session.abort.abort();
    },
  };
}
