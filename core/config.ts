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
  /**
   * Base URL of the storage service (the group server's `/v2/groups…` and the storage records'
   * `/v1/storage…`), no trailing slash.
   */
  storageUrl: string;
  /**
   * Base64 zkgroup ServerPublicParams: group auth credentials and endorsements are checked against
   * them. Null for a custom server configured without them (then groups cannot be fetched).
   */
  serverPublicParams: string | null;
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
}

export interface EnvironmentOptions {
  server: ServerName;
  serviceUrl?: string;
  caCert?: string;
  /** Base64 keys, comma or newline separated, or an array. */
  trustRoots?: string | string[];
  transport?: TransportKind;
  cdnUrls?: Record<number, string>;
  /** Custom server only: the storage service's base URL (default: `<serviceUrl>/storageService`, the mock's). */
  storageUrl?: string;
  /** Custom server only: its base64 zkgroup ServerPublicParams (needed for groups). */
  serverPublicParams?: string | null;
  /**
   * User-Agent to send instead of USER_AGENT: only for a custom server (one that asks its clients
   * to name themselves some other way). Signal's own servers always get the honest default.
   */
  userAgent?: string;
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

/** Signal's zkgroup ServerPublicParams (as Signal's apps configure them). */
const SERVER_PUBLIC_PARAMS = {
  production:
    'AMhf5ywVwITZMsff/eCyudZx9JDmkkkbV6PInzG4p8x3VqVJSFiMvnvlEKWuRob/1eaIetR31IYeAbm0NdOuHH8Qi+Rexi1wLlpzIo1gstHWBfZzy1+qHRV5A4TqPp15YzBPm0WSggW6PbSn+F4lf57VCnHF7p8SvzAA2ZZJPYJURt8X7bbg+H3i+PEjH9DXItNEqs2sNcug37xZQDLm7X36nOoGPs54XsEGzPdEV+itQNGUFEjY6X9Uv+Acuks7NpyGvCoKxGwgKgE5XyJ+nNKlyHHOLb6N1NuHyBrZrgtY/JYJHRooo5CEqYKBqdFnmbTVGEkCvJKxLnjwKWf+fEPoWeQFj5ObDjcKMZf2Jm2Ae69x+ikU5gBXsRmoF94GXTLfN0/vLt98KDPnxwAQL9j5V1jGOY8jQl6MLxEs56cwXN0dqCnImzVH3TZT1cJ8SW1BRX6qIVxEzjsSGx3yxF3suAilPMqGRp4ffyopjMD1JXiKR2RwLKzizUe5e8XyGOy9fplzhw3jVzTRyUZTRSZKkMLWcQ/gv0E4aONNqs4P+NameAZYOD12qRkxosQQP5uux6B2nRyZ7sAV54DgFyLiRcq1FvwKw2EPQdk4HDoePrO/RNUbyNddnM/mMgj4FW65xCoT1LmjrIjsv/Ggdlx46ueczhMgtBunx1/w8k8V+l8LVZ8gAT6wkU5J+DPQalQguMg12Jzug3q4TbdHiGCmD9EunCwOmsLuLJkz6EcSYXtrlDEnAM+hicw7iergYLLlMXpfTdGxJCWJmP4zqUFeTTmsmhsjGBt7NiEB/9pFFEB3pSbf4iiUukw63Eo8Aqnf4iwob6X1QviCWuc8t0LUlT9vALgh/f2DPVOOmR0RW6bgRvc7DSF20V/omg+YBw==',
  staging:
    'ABSY21VckQcbSXVNCGRYJcfWHiAMZmpTtTELcDmxgdFbtp/bWsSxZdMKzfCp8rvIs8ocCU3B37fT3r4Mi5qAemeGeR2X+/YmOGR5ofui7tD5mDQfstAI9i+4WpMtIe8KC3wU5w3Inq3uNWVmoGtpKndsNfwJrCg0Hd9zmObhypUnSkfYn2ooMOOnBpfdanRtrvetZUayDMSC5iSRcXKpdlukrpzzsCIvEwjwQlJYVPOQPj4V0F4UXXBdHSLK05uoPBCQG8G9rYIGedYsClJXnbrgGYG3eMTG5hnx4X4ntARBgELuMWWUEEfSK0mjXg+/2lPmWcTZWR9nkqgQQP0tbzuiPm74H2wMO4u1Wafe+UwyIlIT9L7KLS19Aw8r4sPrXZSSsOZ6s7M1+rTJN0bI5CKY2PX29y5Ok3jSWufIKcgKOnWoP67d5b2du2ZVJjpjfibNIHbT/cegy/sBLoFwtHogVYUewANUAXIaMPyCLRArsKhfJ5wBtTminG/PAvuBdJ70Z/bXVPf8TVsR292zQ65xwvWTejROW6AZX6aqucUjlENAErBme1YHmOSpU6tr6doJ66dPzVAWIanmO/5mgjNEDeK7DDqQdB1xd03HT2Qs2TxY3kCK8aAb/0iM0HQiXjxZ9HIgYhbtvGEnDKW5ILSUydqH/KBhW4Pb0jZWnqN/YgbWDKeJxnDbYcUob5ZY5Lt5ZCMKuaGUvCJRrCtuugSMaqjowCGRempsDdJEt+cMaalhZ6gczklJB/IbdwENW9KeVFPoFNFzhxWUIS5ML9riVYhAtE6JE5jX0xiHNVIIPthb458cfA8daR0nYfYAUKogQArm0iBezOO+mPk5vCNWI+wwkyFCqNDXz/qxl1gAntuCJtSfq9OC3NkdhQlgYQ==',
};

function customStorageUrl(input: string | undefined, base: string): string {
  const raw = (input ?? '').trim();
  // Signal's mock server serves the storage service under /storageService of its one host.
  if (!raw) return `${base}/storageService`;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new InvalidInputError(`Storage URL "${raw}" is not a valid URL`);
  }
  if (url.protocol !== 'https:')
    throw new InvalidInputError(`Storage URL "${raw}" must use https://`);
  return `${url.origin}${url.pathname.replace(/\/+$/, '')}`;
}

function customServerParams(input: string | null | undefined): string | null {
  const raw = (input ?? '').trim();
  if (!raw) return null;
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(raw) || Buffer.from(raw, 'base64').length < 100) {
    throw new InvalidInputError(
      'The server public params must be base64 zkgroup ServerPublicParams',
    );
  }
  return raw;
}

export function resolveEnvironment(opts: EnvironmentOptions): Environment {
  switch (opts.server) {
    case 'production':
      return {
        name: 'production',
        chatUrl: 'https://chat.signal.org',
        storageUrl: 'https://storage.signal.org',
        serverPublicParams: SERVER_PUBLIC_PARAMS.production,
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
        serverPublicParams: SERVER_PUBLIC_PARAMS.staging,
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
        storageUrl: customStorageUrl(opts.storageUrl, base),
        serverPublicParams: customServerParams(opts.serverPublicParams),
        // One host for all (Signal-Server serves no CDN itself); CDN 3 under /cdn3, where Signal's mock
        // server serves it (Signal-Desktop's mock tests configure `cdn3: url + '/cdn3'` alike).
        cdnUrls: opts.cdnUrls ?? { 0: base, 2: base, 3: `${base}/cdn3` },
        caCert,
        trustRoots,
        transport: opts.transport ?? 'auto',
        cdsi: null,
        userAgent: customUserAgent(opts.userAgent),
      };
    }
    default:
      throw new InvalidInputError(
        `Unknown server "${String((opts as { server: unknown }).server)}"`,
      );
  }
}
