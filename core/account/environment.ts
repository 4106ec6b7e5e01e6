/**
 * An account speaks only to the server that issued its credentials (PROTOCOL.md §12 notes): against
 * any other, the client refuses with ENVIRONMENT_MISMATCH before a socket opens, so changing the
 * config node's server never sends the password (Basic auth) to another host.
 */
import { environmentKey, type Environment } from '../config';
import { EnvironmentMismatchError } from '../errors';
import type { Logger } from '../log';
import type { SignalStore } from '../store';

/**
 * The mismatch between the account in `store` and `environment`, or null when they agree (or the
 * store has no account yet). Files written by sigflow 0.1 recorded a custom server without its
 * URL: the URL configured at the first open after the update is taken as the account's, once.
 */
export function environmentMismatch(
  store: SignalStore,
  environment: Environment,
  logger: Logger,
): EnvironmentMismatchError | null {
  const account = store.account.get();
  const configured = environmentKey(environment);
  if (!account || account.environment === configured) return null;
  if (account.environment === 'custom' && environment.name === 'custom') {
    store.account.update({ environment: configured });
    logger.info(`account's server recorded as ${configured}`);
    return null;
  }
  const mismatch = new EnvironmentMismatchError(account.environment, configured);
  logger.warn(mismatch.message);
  return mismatch;
}
