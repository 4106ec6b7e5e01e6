/**
 * A signal-account's settings as the config node and the editor's admin routes both read them: the
 * environment a client opens against, and the logger that prefixes its lines with the node id.
 */
import type { EnvironmentOptions, ServerName } from '../../core/config';
import type { Logger } from '../../core/log';
import type { IdentityTrust } from '../../core/types';
import type { RED } from './red';

export interface AccountConfig {
  name?: string;
  server?: ServerName;
  serviceUrl?: string;
  caCert?: string;
  trustRoots?: string;
  deviceName?: string;
  identityTrust?: IdentityTrust;
  /** ISO 3166 two-letter country for numbers written without a country code; optional. */
  region?: string;
  /** Custom server only: the User-Agent to send instead of sigflow's own. */
  userAgent?: string;
  /** Custom server only: its base64 zkgroup ServerPublicParams (groups need them). */
  serverPublicParams?: string;
}

export function environmentOf(c: AccountConfig): EnvironmentOptions {
  const server = c.server ?? 'production';
  return server === 'custom'
    ? {
        server,
        serviceUrl: c.serviceUrl ?? '',
        caCert: c.caCert ?? '',
        trustRoots: c.trustRoots ?? '',
        ...(c.userAgent ? { userAgent: c.userAgent } : {}),
        ...(typeof c.serverPublicParams === 'string' && c.serverPublicParams.trim() !== ''
          ? { serverPublicParams: c.serverPublicParams }
          : {}),
      }
    : { server };
}

export function nodeLogger(RED: RED, id: string): Logger {
  const p = `[signal-account:${id}]`;
  return {
    debug: (m) => RED.log.debug(`${p} ${m}`),
    info: (m) => RED.log.info(`${p} ${m}`),
    warn: (m) => RED.log.warn(`${p} ${m}`),
    error: (m) => RED.log.error(`${p} ${m}`),
  };
}
