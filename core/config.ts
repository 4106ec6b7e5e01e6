/**
 * Signal environments (PROTOCOL.md §1). production and staging are Signal's own services; custom is
 * a self-hosted Signal-Server (or the sandbox's mock server) given by URL, CA and trust roots.
 */
import fs from 'node:fs';
import path from 'node:path';
import { InvalidInputError } from './errors';

export type ServerName = 'production' | 'staging' | 'custom';
/** How the chat WebSocket is carried: HTTP/1.1 upgrade, HTTP/2 extended CONNECT (RFC 8441), or detected. */
export type TransportKind = 'http1' | 'http2' | 'auto';

export interface Environment {
  name: ServerName;
  /** Base URL of the chat service (REST and WebSocket), no trailing slash. */
  chatUrl: string;
  storageUrl: string;
  /** CDN base URLs by CDN number (0, 2, 3). */
  cdnUrls: Record<number, string>;
  /** PEM of the CA the chat and CDN hosts' certificates must chain to. Verification is never off. */
  caCert: string;
  /** Base64 sealed-sender trust roots; a sender certificate signed by any of them is accepted. */
  trustRoots: string[];
  transport: TransportKind;
  /** Which libsignal Net environment reaches CDSI; null where libsignal cannot (custom). */
  cdsi: 'production' | 'staging' | null;
  userAgent: string;
  /**
   * Base64 zkgroup ServerPublicParams (group send tokens check against them); absent: group sends
   * authorize with access keys only.
   */
  serverPublicParams?: string;
}

export interface EnvironmentOptions {
  server: ServerName;
  serviceUrl?: string;
  caCert?: string;
  /** Base64 keys, comma or newline separated, or an array. */
  trustRoots?: string | string[];
  transport?: TransportKind;
  cdnUrls?: Record<number, string>;
  /**
   * User-Agent to send instead of USER_AGENT: only for a custom server (one that asks its clients
   * to name themselves some other way). Signal's own servers always get the honest default.
   */
  userAgent?: string;
  /** A custom server's zkgroup public params (base64), for group send tokens. */
  serverPublicParams?: string;
}

/** The version in the package.json of the package named `name`, found upward from `from`. */
function versionOf(name: string, from: string): string {
  for (let dir = from; ; dir = path.dirname(dir)) {
    const file = path.join(dir, 'package.json');
    if (fs.existsSync(file)) {
      const pkg = JSON.parse(fs.readFileSync(file, 'utf8')) as { name?: string; version?: string };
      if (pkg.name === name && pkg.version) return pkg.version;
    }
    if (path.dirname(dir) === dir) return '0.0.0';
  }
}

/**
 * How the engine names itself to Signal's servers: honestly, as itself and the libsignal it runs.
 * Signal-Server reads `Signal-(Android|Desktop|iOS)/<version>` as one of Signal's own apps and
 * answers 499 to all of it once that version is below its minimum (RemoteDeprecationFilter,
 * PROTOCOL.md §12); any other name is held instead to having the `spqr` capability, which this
 * engine declares (core/account/capabilities.ts).
 */
export const USER_AGENT = `sigflow/${versionOf('@sigflow/node-red-signal', __dirname)} libsignal/${
  (require('@signalapp/libsignal-client/package.json') as { version: string }).version
}`;

/** The value of the X-Signal-Agent header Signal-Server records a linking client's kind from. */
export const SIGNAL_AGENT = 'sigflow';

const FIRST_PARTY_AGENT = /^Signal-(Android|Desktop|iOS)\//i;

function customUserAgent(input: string | undefined): string {
  const ua = (input ?? '').trim();
  if (!ua) return USER_AGENT;
  if (!/^[\x20-\x7e]{1,200}$/.test(ua)) {
    throw new InvalidInputError('The User-Agent must be 1 to 200 printable ASCII characters');
  }
  if (FIRST_PARTY_AGENT.test(ua)) {
    throw new InvalidInputError(
      `The User-Agent "${ua}" names one of Signal's own apps; this client must name itself`,
    );
  }
  return ua;
}

/** Signal's root CA for its own hosts, shipped with the package (core/assets/signal-root-ca.pem). */
export function signalRootCa(): string {
  return fs.readFileSync(path.join(__dirname, 'assets', 'signal-root-ca.pem'), 'utf8');
}

export function parseTrustRoots(input: string | string[] | undefined): string[] {
  const list = Array.isArray(input) ? input : (input ?? '').split(/[\s,]+/);
  const roots = list.map((s) => s.trim()).filter(Boolean);
  for (const r of roots) {
    const bytes = Buffer.from(r, 'base64');
    if (bytes.length !== 33 || bytes.toString('base64') !== r) {
      throw new InvalidInputError(
        `Trust root "${r.slice(0, 12)}…" is not a base64 33-byte public key`,
      );
    }
  }
  return roots;
}

/**
 * What an account file records of the server it belongs to: `production`, `staging`, or
 * `custom <chat URL>`. An account opened against another server would send its password there.
 */
export function environmentKey(env: Environment): string {
  return env.name === 'custom' ? `custom ${env.chatUrl}` : env.name;
}

export function resolveEnvironment(opts: EnvironmentOptions): Environment {
  switch (opts.server) {
    case 'production':
      return {
        name: 'production',
        chatUrl: 'https://chat.signal.org',
        storageUrl: 'https://storage.signal.org',
        cdnUrls: {
          0: 'https://cdn.signal.org',
          2: 'https://cdn2.signal.org',
          3: 'https://cdn3.signal.org',
        },
        caCert: signalRootCa(),
        trustRoots: [
          'BXu6QIKVz5MA8gstzfOgRQGqyLqOwNKHL6INkv3IHWMF',
          'BUkY0I+9+oPgDCn4+Ac6Iu813yvqkDr/ga8DzLxFxuk6',
        ],
        transport: opts.transport ?? 'http1',
        cdsi: 'production',
        userAgent: USER_AGENT,
      };
    case 'staging':
      return {
        name: 'staging',
        chatUrl: 'https://chat.staging.signal.org',
        storageUrl: 'https://storage-staging.signal.org',
        cdnUrls: {
          0: 'https://cdn-staging.signal.org',
          2: 'https://cdn2-staging.signal.org',
          3: 'https://cdn3-staging.signal.org',
        },
        caCert: signalRootCa(),
        trustRoots: [
          'BbqY1DzohE4NUZoVF+L18oUPrK3kILllLEJh2UnPSsEx',
          'BYhU6tPjqP46KGZEzRs1OL4U39V5dlPJ/X09ha4rErkm',
        ],
        transport: opts.transport ?? 'http1',
        cdsi: 'staging',
        userAgent: USER_AGENT,
      };
    case 'custom': {
      const raw = (opts.serviceUrl ?? '').trim();
      let url: URL;
      try {
        url = new URL(raw);
      } catch {
        throw new InvalidInputError(`Server URL "${raw}" is not a valid URL`);
      }
      if (url.protocol !== 'https:') {
        throw new InvalidInputError(`Server URL "${raw}" must use https://`);
      }
      const caCert = (opts.caCert ?? '').trim();
      if (!caCert.includes('-----BEGIN CERTIFICATE-----')) {
        throw new InvalidInputError('A custom server needs its CA certificate as PEM text');
      }
      const trustRoots = parseTrustRoots(opts.trustRoots);
      if (trustRoots.length === 0) {
        throw new InvalidInputError('A custom server needs at least one sealed-sender trust root');
      }
      const base = url.origin;
      return {
        name: 'custom',
        chatUrl: base,
        storageUrl: base,
        // One host for all (Signal-Server serves no CDN itself); CDN 3 under /cdn3, where Signal's mock
        // server serves it (Signal-Desktop's mock tests configure `cdn3: url + '/cdn3'` alike).
        cdnUrls: opts.cdnUrls ?? { 0: base, 2: base, 3: `${base}/cdn3` },
        caCert,
        trustRoots,
        transport: opts.transport ?? 'auto',
        cdsi: null,
        userAgent: customUserAgent(opts.userAgent),
        ...(opts.serverPublicParams ? { serverPublicParams: opts.serverPublicParams } : {}),
      };
    }
    default:
      throw new InvalidInputError(
        `Unknown server "${String((opts as { server: unknown }).server)}"`,
      );
  }
}
