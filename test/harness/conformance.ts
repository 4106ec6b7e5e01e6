/**
 * The strict sandbox: a layer around `@signalapp/mock-server` 27.0.0 that makes it refuse what
 * production Signal-Server refuses (PROTOCOL.md §12). The mock accepts old User-Agents, devices
 * without `spqr`, links that drop capabilities and malformed bodies; a client that passes the
 * integration tests against the bare mock can still be turned away by Signal. Every rule here
 * follows a named class of Signal-Server (service/src/main/java/org/whispersystems/textsecuregcm/,
 * read in its snapshot of 2026-08), written anew from what it does, except the one rule marked as
 * the sandbox's own.
 *
 * Where it hooks in (pinned to mock-server 27.0.0, as sandbox.ts's directory route is):
 * - the HTTP/2 server's `connect` listeners (the chat and provisioning WebSocket upgrades, RFC 8441
 *   extended CONNECT, api/server.js `listen()`), replaced by one that checks first and answers
 *   `:status 499` itself, so the mock never sees a refused upgrade;
 * - its `request` listeners (the mock's plain HTTP routes), likewise;
 * - `Connection.prototype.handleRequest` (server/ws/connection.js), for each request on a socket:
 *   checked before the mock's router runs, and, for the routes that set capabilities, watched after.
 *
 * A rule that fires prints `[strict sandbox] rule <name> refused <VERB> <path>: <reason>` to stderr,
 * names itself in the error body (`{code, message, rule}`), and is logged in `fired`.
 */
import { KEMPublicKey, PublicKey } from '@signalapp/libsignal-client';
import type { Http2ServerRequest, Http2ServerResponse, Http2SecureServer } from 'node:http2';
import { URL } from 'node:url';
import { checkMultiRecipient } from './multi-recipient';
import { encryptedAttachmentSize } from '../../core/crypto/attachment-encrypt';

// ---- rules ----

export const RULES = [
  /** RemoteDeprecationFilter + UserAgentUtil: a Signal app below its platform's minimum → 499. */
  'user-agent-first-party-too-old',
  /** RemoteDeprecationFilter (requireSpqr): another client whose device lacks `spqr` → 499. */
  'spqr-required',
  /** DeviceController.isCapabilityDowngrade: a link missing a required or kept capability → 409. */
  'link-capabilities',
  /** LinkDeviceRequest / DeviceAttributes / DeviceActivationRequest, DeviceController.linkDevice. */
  'link-request-shape',
  /** SetKeysRequest / ECPreKey / ECSignedPreKey / KEMSignedPreKey, KeysController.setKeys. */
  'keys-request-shape',
  /** IncomingMessageList / IncomingMessage, MessageController.sendMessage, MessageSender. */
  'messages-request-shape',
  /** RegistrationRequest / AccountAttributes / PhoneVerificationRequest, RegistrationController. */
  'registration-request-shape',
  /** RegistrationController.register: capabilities without a `requireForNewDevices` one → 499. */
  'registration-capabilities',
  /** CertificateController.getDeliveryCertificate: `includeE164`, when given, is a boolean. */
  'certificate-e164',
  /**
   * CertificateController.getGroupAuthenticationCredentials: both redemption times UTC midnights,
   * start ≤ end, start not before today, end at most 7 days ahead → else 400 (the mock checks the
   * range only, as a 500, and not the alignment).
   */
  'group-credentials-range',
  /**
   * AttachmentControllerV4.getAttachmentUploadForm: authenticated (401), `uploadLength` a positive
   * integer (400) and at most the server's maximum (413). Signal-Server takes a missing
   * `uploadLength` as the maximum; this client always states it, so here it is required.
   */
  'attachment-form-request-shape',
  /**
   * NOT Signal-Server's: the sandbox's own privacy rule. Signal-Server defaults `includeE164` to
   * true; this client never puts the account's number into sealed-sender certificates, so here a
   * request that does not say `includeE164=false` is refused.
   */
  'sandbox-only-privacy-certificate-without-e164',
  /** MessageController.sendMultiRecipientMessage @Consumes(MultiRecipientMessageProvider) → 415. */
  'multi-recipient-content-type',
  /** sendMultiRecipientMessage: neither Group-Send-Token nor Unidentified-Access-Key → 401, both → 400. */
  'multi-recipient-authorization',
  /** checkGroupSendToken: GroupSendFullToken.verify for exactly the recipients fails → 401. */
  'multi-recipient-group-send-token',
  /** checkAccessKeys: a PNI recipient, or not the XOR of the recipients' access keys → 401. */
  'multi-recipient-access-key',
] as const;

export type RuleName = (typeof RULES)[number];
export type Platform = 'android' | 'desktop' | 'ios';

export interface FiredRule {
  rule: RuleName;
  status: number;
  verb: string;
  /** Path without its query. */
  path: string;
  reason: string;
  where: 'upgrade' | 'websocket' | 'http';
}

export interface ConformanceOptions {
  /**
   * Minimum version per Signal app (RemoteDeprecationFilter's `minimumVersions`, which production
   * sets from its dynamic configuration). Defaults: DEFAULT_MINIMUM_VERSIONS.
   */
  minimumVersions?: Partial<Record<Platform, string>>;
  /** DynamicRemoteDeprecationConfiguration.requireSpqr (default true, as production has it now). */
  requireSpqr?: boolean;
  /** Rules to leave off, for a test that deliberately drives old behaviour. */
  disable?: RuleName[];
  /** Where the one-line report of a fired rule goes (default stderr). */
  report?: (line: string) => void;
}

/** Current-ish minimums: a Signal app release of 2024 (7.0.0) is long expired. */
export const DEFAULT_MINIMUM_VERSIONS: Readonly<Record<Platform, string>> = Object.freeze({
  android: '7.40.0',
  desktop: '7.60.0',
  ios: '7.60.0',
});

/**
 * storage/DeviceCapability: the capabilities that gate linking. Both are ALL_DEVICES (the account
 * has one iff every device does) and `preventDowngrade`; `spqr` is also `requireForNewDevices`.
 */
const PREVENT_DOWNGRADE = ['spqr', 'usernameChangeSyncMessage'] as const;
const REQUIRED_FOR_NEW_DEVICES = ['spqr'] as const;
/**
 * What a device the sandbox did not see declare capabilities has: the mock's simulated phones
 * (and its createSecondaryDevice()) stand for today's Signal apps, which declare both.
 */
const MODERN_DEVICE_CAPABILITIES: ReadonlySet<string> = new Set(PREVENT_DOWNGRADE);

/** util/ua/UserAgentUtil.STANDARD_UA_PATTERN. */
const FIRST_PARTY_UA = /^Signal-(Android|Desktop|iOS)\/([^ ]+)( (.+))?$/i;
/** semver.org's grammar, which semver4j's strict parse (UserAgentUtil's `new Semver`) follows. */
const SEMVER =
  /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+[0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*)?$/;

interface Semver {
  core: [number, number, number];
  pre: string[];
}

function parseSemver(v: string): Semver | null {
  const m = SEMVER.exec(v);
  if (!m) return null;
  return { core: [Number(m[1]), Number(m[2]), Number(m[3])], pre: m[4] ? m[4].split('.') : [] };
}

/** Semver precedence: negative when a < b (a pre-release sorts before its release). */
export function compareSemver(a: string, b: string): number {
  const x = parseSemver(a);
  const y = parseSemver(b);
  if (!x || !y) throw new Error(`not a semantic version: ${x ? b : a}`);
  for (let i = 0; i < 3; i++) {
    const d = (x.core[i] ?? 0) - (y.core[i] ?? 0);
    if (d) return d;
  }
  if (!x.pre.length || !y.pre.length) return y.pre.length - x.pre.length;
  for (let i = 0; i < Math.max(x.pre.length, y.pre.length); i++) {
    const p = x.pre[i];
    const q = y.pre[i];
    if (p === undefined) return -1;
    if (q === undefined) return 1;
    if (p === q) continue;
    const pn = /^\d+$/.test(p);
    const qn = /^\d+$/.test(q);
    if (pn && qn) return Number(p) - Number(q);
    if (pn !== qn) return pn ? -1 : 1;
    return p < q ? -1 : 1;
  }
  return 0;
}

/**
 * UserAgentUtil.parseUserAgentString: a Signal app and its version, or null for anything else (a
 * blank header, another client, or a Signal name whose version is not strict semver).
 */
export function parseFirstPartyUserAgent(
  ua: string | undefined,
): { platform: Platform; version: string } | null {
  if (!ua || !ua.trim()) return null;
  const m = FIRST_PARTY_UA.exec(ua);
  if (!m || !m[1] || !m[2] || !parseSemver(m[2])) return null;
  return { platform: m[1].toLowerCase() as Platform, version: m[2] };
}

// ---- mock-server internals this layer touches (27.0.0) ----

interface MockDevice {
  aci: string;
  pni?: string;
  deviceId: number;
  getIdentityKey(kind?: 'ACI' | 'PNI'): Promise<{ serialize(): Uint8Array }>;
}

interface MockServerInternals {
  https?: Http2SecureServer;
  auth(username: string, password: string): Promise<MockDevice | undefined>;
  getDeviceByServiceId(serviceId: string, deviceId?: number): Promise<MockDevice | undefined>;
  getAllDevicesByServiceId(serviceId: string): Promise<MockDevice[]>;
}

interface WsRequest {
  id?: unknown;
  verb?: string | null;
  path?: string | null;
  body?: Uint8Array | null;
  headers?: string[] | null;
}

interface WsResponse {
  id?: unknown;
  status: number;
  message?: string | null;
  headers?: string[] | null;
  body?: Uint8Array | null;
}

interface MockConnection {
  server: unknown;
  device?: MockDevice;
  request: { headers: Record<string, string | string[] | undefined> };
}

/** One conformance state per mock server; connections find theirs through `this.server`. */
const byServer = new WeakMap<object, Conformance>();
let connectionHookInstalled = false;

// ---- refusals and body checks ----

class Refusal extends Error {
  constructor(
    readonly rule: RuleName,
    readonly status: number,
    reason: string,
  ) {
    super(reason);
  }
}

/**
 * A body Signal-Server cannot map onto its request class. Jackson's JsonMappingException (wrong
 * types, bad base64, keys libsignal cannot read: property deserializers' errors are wrapped into
 * it) and bean validation both answer 422 (mappers/JsonMappingExceptionMapper, Dropwizard's
 * constraint violation mapper); only text that is not JSON at all is Dropwizard's 400.
 */
class Malformed extends Error {
  constructor(
    message: string,
    readonly status = 422,
  ) {
    super(message);
  }
}

type Json = Record<string, unknown>;

function parseJson(body: Uint8Array | null | undefined): unknown {
  // Jersey hands an empty entity to Jackson as null, which @NotNull then refuses (422).
  if (!body || body.length === 0) throw new Malformed('the request has no body');
  try {
    return JSON.parse(Buffer.from(body).toString('utf8'));
  } catch {
    throw new Malformed('the body is not JSON (Unable to process JSON)', 400);
  }
}

function object(v: unknown, at: string): Json {
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    throw new Malformed(`${at} must be an object`);
  return v as Json;
}

const absent = (v: unknown) => v === undefined || v === null;

/**
 * A Java int/long/byte field. Jackson would also coerce a numeric string or truncate a fraction;
 * the sandbox does not, since a client that sends either has a bug Signal merely tolerates.
 * `optional` means the Java field is a primitive (absent → 0/false) or a nullable wrapper.
 */
function integer(
  v: unknown,
  at: string,
  range: { min: number; max: number },
  optional = false,
): number | undefined {
  if (absent(v)) {
    if (optional) return undefined;
    throw new Malformed(`${at} is required`);
  }
  if (typeof v !== 'number' || !Number.isInteger(v))
    throw new Malformed(`${at} must be an integer`);
  if (v < range.min || v > range.max)
    throw new Malformed(`${at} must be in ${range.min}..${range.max} (was ${v})`);
  return v;
}

function boolean(v: unknown, at: string): boolean | undefined {
  if (absent(v)) return undefined;
  if (typeof v !== 'boolean') throw new Malformed(`${at} must be true or false`);
  return v;
}

function string(v: unknown, at: string): string | undefined {
  if (absent(v)) return undefined;
  if (typeof v !== 'string') throw new Malformed(`${at} must be a string`);
  return v;
}

/** java.util.Base64.getDecoder() (ByteArrayAdapter, the key adapters): padding optional. */
function base64(v: unknown, at: string): Uint8Array | undefined {
  const s = string(v, at);
  if (s === undefined) return undefined;
  const valid =
    /^[A-Za-z0-9+/]*={0,2}$/.test(s) && (s.endsWith('=') ? s.length % 4 === 0 : s.length % 4 !== 1);
  if (!valid) throw new Malformed(`${at} is not base64`);
  return new Uint8Array(Buffer.from(s, 'base64'));
}

/** An unannotated byte[] (Jackson): a base64 string or an array of numbers -128..255. */
function jacksonBytes(v: unknown, at: string): Uint8Array | undefined {
  if (Array.isArray(v)) {
    return Uint8Array.from(
      v.map((b, i) => integer(b, `${at}[${i}]`, { min: -128, max: 255 }) ?? 0),
    );
  }
  return base64(v, at);
}

const KEY_ID = { min: 0, max: 2 ** 31 - 1 }; // storage/KeyIdUtil MIN_KEY_ID..MAX_KEY_ID
const REGISTRATION_ID = { min: 1, max: 0x3fff }; // util/RegistrationIdValidator, Device.MAX_REGISTRATION_ID
const INT = { min: -(2 ** 31), max: 2 ** 31 - 1 };

interface CheckedKey {
  publicKey: Uint8Array;
  signature?: Uint8Array;
  at: string;
}

/**
 * ECPreKey / ECSignedPreKey / KEMSignedPreKey: keyId in KeyIdUtil's range, a public key libsignal
 * reads (ECPublicKeyAdapter / KEMPublicKeyAdapter), and for signed ones a signature.
 */
function preKey(v: unknown, at: string, kind: 'ec' | 'kem', signed: boolean): CheckedKey {
  const key = object(v, at);
  integer(key.keyId, `${at}.keyId`, KEY_ID);
  const publicKey = base64(key.publicKey, `${at}.publicKey`);
  if (!publicKey || publicKey.length === 0) throw new Malformed(`${at}.publicKey is required`);
  try {
    if (kind === 'ec') PublicKey.deserialize(publicKey as Uint8Array<ArrayBuffer>);
    else KEMPublicKey.deserialize(publicKey as Uint8Array<ArrayBuffer>);
  } catch {
    throw new Malformed(`${at}.publicKey is not a ${kind === 'ec' ? 'Curve25519' : 'Kyber'} key`);
  }
  if (!signed) return { publicKey, at };
  const signature = base64(key.signature, `${at}.signature`);
  if (!signature || signature.length === 0) throw new Malformed(`${at}.signature is required`);
  return { publicKey, signature, at };
}

/** PreKeySignatureValidator: each signed key is signed by the identity key it is uploaded for. */
function verifySignatures(identityKey: Uint8Array | undefined, keys: CheckedKey[]): void {
  if (!identityKey) return;
  let identity: PublicKey;
  try {
    identity = PublicKey.deserialize(identityKey as Uint8Array<ArrayBuffer>);
  } catch {
    return;
  }
  for (const k of keys) {
    if (!k.signature) continue;
    const ok = (() => {
      try {
        return identity.verify(
          k.publicKey as Uint8Array<ArrayBuffer>,
          k.signature as Uint8Array<ArrayBuffer>,
        );
      } catch {
        return false;
      }
    })();
    if (!ok) throw new Malformed(`${k.at}.signature does not verify (Invalid signature)`);
  }
}

/**
 * DeviceAttributes (link's `accountAttributes`, and the device part of registration's
 * AccountAttributes): registration ids valid (isEachRegistrationIdValid), `name` base64 of at most
 * 225 bytes, `capabilities` a map of booleans (DeviceCapabilityAdapter). Returns the capability
 * names set to true, or null when the map is absent.
 */
function deviceAttributes(v: unknown, at: string): { fetches: boolean; caps: Set<string> | null } {
  const a = object(v, at);
  const fetches = boolean(a.fetchesMessages, `${at}.fetchesMessages`) ?? false;
  // A primitive int: absent reads as 0, which isEachRegistrationIdValid refuses.
  const registrationId = integer(a.registrationId, `${at}.registrationId`, INT, true) ?? 0;
  if (registrationId < REGISTRATION_ID.min || registrationId > REGISTRATION_ID.max)
    throw new Malformed(`${at}.registrationId must be in 1..16383 (was ${registrationId})`);
  integer(a.pniRegistrationId, `${at}.pniRegistrationId`, REGISTRATION_ID, true);
  const name = base64(a.name, `${at}.name`);
  if (name && name.length > 225) throw new Malformed(`${at}.name is over 225 bytes`);
  if (absent(a.capabilities)) return { fetches, caps: null };
  const map = object(a.capabilities, `${at}.capabilities`);
  const caps = new Set<string>();
  for (const [k, on] of Object.entries(map)) {
    if (boolean(on, `${at}.capabilities.${k}`)) caps.add(k);
  }
  return { fetches, caps };
}

/** LinkDeviceRequest / RegistrationRequest.isExactlyOneMessageDeliveryChannel. */
function oneDeliveryChannel(body: Json, fetches: boolean): void {
  const apn = !absent(body.apnToken);
  const gcm = !absent(body.gcmToken);
  if (apn) object(body.apnToken, 'apnToken');
  if (gcm) object(body.gcmToken, 'gcmToken');
  if (fetches ? apn || gcm : apn === gcm)
    throw new Malformed(
      'exactly one of fetchesMessages, apnToken and gcmToken must say how messages arrive',
    );
}

// ---- the layer ----

function headerMap(lines: string[] | null | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of lines ?? []) {
    const i = line.indexOf(':');
    if (i > 0) out[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
  }
  return out;
}

function firstHeader(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
}

function basicCredentials(
  header: string | undefined,
): { username: string; password: string } | null {
  const m = /^Basic\s+(\S+)$/i.exec(header ?? '');
  if (!m || !m[1]) return null;
  const decoded = Buffer.from(m[1], 'base64').toString('utf8');
  const i = decoded.indexOf(':');
  if (i <= 0) return null;
  return { username: decoded.slice(0, i), password: decoded.slice(i + 1) };
}

/**
 * CDN downloads: Signal's CDNs are storage buckets, not Signal-Server, so no User-Agent rule applies.
 * The mock's other HTTP routes (storage, groups, calling: Signal's other services in production) are
 * held to RemoteDeprecationFilter's rules all the same, a little stricter than production may be.
 */
const NOT_CHAT = /^\/(cdn\d*|attachments|stickers|updates2)\//;

/** Throws on options that name no rule or a minimum that is not a semantic version. */
export function checkConformanceOptions(opts: ConformanceOptions = {}): void {
  for (const [p, v] of Object.entries(opts.minimumVersions ?? {})) {
    if (typeof v !== 'string' || !parseSemver(v))
      throw new Error(`strict sandbox: minimum ${p} version "${String(v)}" is not semver`);
  }
  const unknown = (opts.disable ?? []).filter((r) => !(RULES as readonly string[]).includes(r));
  if (unknown.length) throw new Error(`strict sandbox: no rule named ${unknown.join(', ')}`);
}

export class Conformance {
  /** Every rule that fired, in order. */
  readonly fired: FiredRule[] = [];
  private readonly minimums: Record<Platform, string>;
  private readonly disabled: ReadonlySet<RuleName>;
  /** Capabilities the sandbox saw each device declare (link, registration, PUT capabilities). */
  private readonly capabilities = new WeakMap<object, Set<string>>();

  constructor(
    private readonly server: MockServerInternals,
    private readonly opts: ConformanceOptions = {},
  ) {
    checkConformanceOptions(opts);
    this.minimums = { ...DEFAULT_MINIMUM_VERSIONS, ...opts.minimumVersions };
    this.disabled = new Set(opts.disable ?? []);
  }

  /** The names of the rules that fired, in order (for a test's assertion). */
  get firedRules(): RuleName[] {
    return this.fired.map((f) => f.rule);
  }

  isOn(rule: RuleName): boolean {
    if (rule === 'spqr-required' && this.opts.requireSpqr === false) return false;
    return !this.disabled.has(rule);
  }

  /** The capabilities a device has as far as Signal-Server would know. */
  capabilitiesOf(device: object): ReadonlySet<string> {
    return this.capabilities.get(device) ?? MODERN_DEVICE_CAPABILITIES;
  }

  private fire(r: Refusal, verb: string, path: string, where: FiredRule['where']): FiredRule {
    const entry: FiredRule = {
      rule: r.rule,
      status: r.status,
      verb,
      path,
      reason: r.message,
      where,
    };
    this.fired.push(entry);
    const line = `[strict sandbox] rule ${r.rule} refused ${verb} ${path}: ${r.message}`;
    if (this.opts.report) this.opts.report(line);
    else process.stderr.write(`${line}\n`);
    return entry;
  }

  private static errorBody(r: Refusal): Buffer {
    // Dropwizard's error entity ({code, message}), plus the rule, so the client's log names it.
    return Buffer.from(
      JSON.stringify({
        code: r.status,
        message: `${r.message} [strict sandbox: ${r.rule}]`,
        rule: r.rule,
      }),
    );
  }

  /**
   * RemoteDeprecationFilter.shouldBlock: a Signal app is held to its platform's minimum version;
   * anything else, when SPQR is required, to its device having `spqr` (isMissingSpqrCapability:
   * only a device that authenticates, so no credentials or wrong ones pass).
   */
  private async checkAgent(
    userAgent: string | undefined,
    authorization: string | undefined,
    checkSpqr = true,
  ): Promise<void> {
    const app = parseFirstPartyUserAgent(userAgent);
    if (app) {
      const minimum = this.minimums[app.platform];
      if (this.isOn('user-agent-first-party-too-old') && compareSemver(app.version, minimum) < 0)
        throw new Refusal(
          'user-agent-first-party-too-old',
          499,
          `User-Agent "${userAgent}" is Signal ${app.platform} ${app.version}, below the minimum ${minimum}: this client must be updated`,
        );
      return;
    }
    if (!checkSpqr || !this.isOn('spqr-required')) return;
    const creds = basicCredentials(authorization);
    const who = creds ? await this.server.auth(creds.username, creds.password) : undefined;
    if (who && !this.capabilitiesOf(who).has('spqr'))
      throw new Refusal(
        'spqr-required',
        499,
        `User-Agent "${userAgent ?? ''}" is not a Signal app and device ${who.aci}.${who.deviceId} lacks the spqr capability`,
      );
  }

  // ---- hooks ----

  /** The WebSocket upgrade (HTTP/2 extended CONNECT): null to let the mock have it. */
  async checkUpgrade(req: Http2ServerRequest): Promise<Refusal | null> {
    try {
      await this.checkAgent(
        firstHeader(req.headers['user-agent']),
        firstHeader(req.headers.authorization),
      );
      return null;
    } catch (e) {
      if (e instanceof Refusal) {
        this.fire(e, 'GET', new URL(req.url, 'http://x').pathname, 'upgrade');
        return e;
      }
      throw e;
    }
  }

  /** A plain HTTP request to the mock: the User-Agent rules, for everything but CDN downloads. */
  async checkHttp(req: Http2ServerRequest): Promise<Refusal | null> {
    const path = new URL(req.url, 'http://x').pathname;
    if (NOT_CHAT.test(path)) return null;
    try {
      await this.checkAgent(
        firstHeader(req.headers['user-agent']),
        firstHeader(req.headers.authorization),
      );
      return null;
    } catch (e) {
      if (e instanceof Refusal) {
        this.fire(e, req.method, path, 'http');
        return e;
      }
      throw e;
    }
  }

  /** A request on a WebSocket: a refusal's response, or null to let the mock's router have it. */
  async checkWsRequest(conn: MockConnection, request: WsRequest): Promise<WsResponse | null> {
    const verb = request.verb ?? '';
    const url = new URL(request.path ?? '', 'http://x');
    const headers = headerMap(request.headers);
    try {
      // RemoteDeprecationFilter is a servlet filter: Signal-Server applies it to the upgrade, not
      // to each request on the socket. Here a request's own User-Agent (else its socket's, which
      // passed already) is still held to the minimum versions; `spqr` is not re-checked, so a
      // device that changes its capabilities keeps its socket until it reconnects, as on Signal.
      await this.checkAgent(
        headers['user-agent'] ?? firstHeader(conn.request.headers['user-agent']),
        undefined,
        false,
      );
      await this.checkBody(verb, url, headers, request.body, conn.device);
      return null;
    } catch (e) {
      if (!(e instanceof Refusal)) throw e;
      this.fire(e, verb, url.pathname, 'websocket');
      return {
        id: request.id,
        status: e.status,
        message: null,
        headers: ['Content-Type:application/json'],
        body: Conformance.errorBody(e),
      };
    }
  }

  /** After the mock answered: remember the capabilities a device declared. */
  async afterWsResponse(
    conn: MockConnection,
    request: WsRequest,
    response: WsResponse,
  ): Promise<void> {
    if (response.status !== 200) return;
    const verb = request.verb ?? '';
    const path = new URL(request.path ?? '', 'http://x').pathname;
    const declared = (v: unknown): Set<string> | null => {
      try {
        return deviceAttributes(v, 'accountAttributes').caps;
      } catch {
        return null;
      }
    };
    try {
      if (verb === 'PUT' && path === '/v1/devices/link') {
        const body = JSON.parse(Buffer.from(request.body ?? []).toString()) as Json;
        const out = JSON.parse(Buffer.from(response.body ?? []).toString()) as Json;
        const device = await this.server.getDeviceByServiceId(
          String(out.uuid),
          Number(out.deviceId),
        );
        if (device) this.capabilities.set(device, declared(body.accountAttributes) ?? new Set());
      } else if (verb === 'POST' && path === '/v1/registration') {
        const body = JSON.parse(Buffer.from(request.body ?? []).toString()) as Json;
        const out = JSON.parse(Buffer.from(response.body ?? []).toString()) as Json;
        const device = await this.server.getDeviceByServiceId(String(out.uuid), 1);
        if (device) this.capabilities.set(device, declared(body.accountAttributes) ?? new Set());
      } else if (verb === 'PUT' && path === '/v1/devices/capabilities' && conn.device) {
        // DeviceController.setCapabilities replaces the device's set with the names set to true.
        const body = JSON.parse(Buffer.from(request.body ?? []).toString()) as unknown;
        this.capabilities.set(
          conn.device,
          declared({ registrationId: 1, capabilities: body }) ?? new Set(),
        );
      }
    } catch {
      // The mock accepted something the sandbox cannot read back: nothing to remember.
    }
  }

  private async checkBody(
    verb: string,
    url: URL,
    headers: Record<string, string>,
    body: Uint8Array | null | undefined,
    device: MockDevice | undefined,
  ): Promise<void> {
    const path = url.pathname;
    const shape = async (rule: RuleName, check: () => Promise<void> | void) => {
      if (!this.isOn(rule)) return;
      try {
        await check();
      } catch (e) {
        if (e instanceof Malformed) throw new Refusal(rule, e.status, e.message);
        throw e;
      }
    };
    if (verb === 'PUT' && path === '/v1/devices/link') {
      let caps: Set<string> | null = null;
      let aci: string | undefined;
      await shape('link-request-shape', async () => {
        aci = basicCredentials(headers.authorization)?.username;
        caps = await this.checkLink(parseJson(body), aci);
      });
      if (caps && aci) await this.checkLinkCapabilities(caps, aci);
    } else if (verb === 'PUT' && path === '/v2/keys') {
      await shape('keys-request-shape', () => this.checkKeys(parseJson(body), url, device));
    } else if (
      verb === 'PUT' &&
      /^\/v1\/messages\/[^/]+$/.test(path) &&
      path !== '/v1/messages/multi_recipient'
    ) {
      await shape('messages-request-shape', () => checkMessages(parseJson(body)));
    } else if (verb === 'POST' && path === '/v1/registration') {
      let caps: Set<string> | null = null;
      await shape('registration-request-shape', () => {
        caps = checkRegistration(parseJson(body));
      });
      const have: Set<string> = caps ?? new Set();
      const missing = REQUIRED_FOR_NEW_DEVICES.filter((c) => !have.has(c));
      if (missing.length && this.isOn('registration-capabilities'))
        throw new Refusal(
          'registration-capabilities',
          499,
          `the new account's capabilities lack ${missing.join(', ')} (Missing required device capability)`,
        );
    } else if (verb === 'GET' && path === '/v1/certificate/delivery') {
      this.checkCertificate(url);
    } else if (verb === 'PUT' && path === '/v1/messages/multi_recipient') {
      const refusal = await checkMultiRecipient(this.server, headers, body, (r) => this.isOn(r));
      if (refusal) throw new Refusal(refusal.rule, refusal.status, refusal.message);
    } else if (verb === 'GET' && path === '/v1/certificate/auth/group') {
      this.checkGroupCredentials(url);
    } else if (verb === 'GET' && path === '/v4/attachments/form/upload') {
      if (this.isOn('attachment-form-request-shape')) checkUploadForm(url, device);
    }
  }

  /** CertificateController.getGroupAuthenticationCredentials' range check (Jersey `long`s). */
  private checkGroupCredentials(url: URL): void {
    if (!this.isOn('group-credentials-range')) return;
    const DAY = 86_400;
    const read = (name: string) => {
      const v = url.searchParams.get(name);
      // Jersey gives a missing `long` query parameter its default, 0; a non-number is a 404 there.
      if (v === null || v === '') return 0;
      if (!/^-?\d+$/.test(v))
        throw new Refusal('group-credentials-range', 404, `${name}=${v} is not a number`);
      return Number(v);
    };
    const start = read('redemptionStartSeconds');
    const end = read('redemptionEndSeconds');
    const now = Math.floor(Date.now() / 1000);
    const today = now - (now % DAY);
    const problem =
      start > end
        ? 'the start is after the end'
        : start < today
          ? 'the start is before today (UTC)'
          : end > today + 7 * DAY
            ? 'the end is more than 7 days ahead'
            : start % DAY !== 0 || end % DAY !== 0
              ? 'a redemption time is not a UTC midnight'
              : null;
    if (problem)
      throw new Refusal(
        'group-credentials-range',
        400,
        `redemption range ${start}..${end}: ${problem}`,
      );
  }

  /** LinkDeviceRequest, DeviceController.linkDevice: its 422s. Returns the declared capabilities. */
  private async checkLink(v: unknown, aci: string | undefined): Promise<Set<string>> {
    const body = object(v, 'the body');
    if (!string(body.verificationCode, 'verificationCode')?.trim())
      throw new Malformed('verificationCode must not be blank');
    if (absent(body.accountAttributes)) throw new Malformed('accountAttributes is required');
    const attrs = deviceAttributes(body.accountAttributes, 'accountAttributes');
    oneDeliveryChannel(body, attrs.fetches);
    const aciKeys = [
      preKey(body.aciSignedPreKey, 'aciSignedPreKey', 'ec', true),
      preKey(body.aciPqLastResortPreKey, 'aciPqLastResortPreKey', 'kem', true),
    ];
    const pniGiven = [body.pniSignedPreKey, body.pniPqLastResortPreKey].map((k) => !absent(k));
    const primary = aci ? await this.server.getDeviceByServiceId(aci) : undefined;
    // An account with a phone number needs both PNI keys; one without, neither.
    const needPni = primary ? primary.pni != null : pniGiven[0] || pniGiven[1];
    if (pniGiven[0] !== needPni || pniGiven[1] !== needPni)
      throw new Malformed(
        needPni
          ? 'pniSignedPreKey and pniPqLastResortPreKey are required for an account with a phone number'
          : 'pniSignedPreKey and pniPqLastResortPreKey must be absent for an account without one',
      );
    const pniKeys = needPni
      ? [
          preKey(body.pniSignedPreKey, 'pniSignedPreKey', 'ec', true),
          preKey(body.pniPqLastResortPreKey, 'pniPqLastResortPreKey', 'kem', true),
        ]
      : [];
    if (primary) {
      verifySignatures(await identityKey(primary, 'ACI'), aciKeys);
      if (pniKeys.length) verifySignatures(await identityKey(primary, 'PNI'), pniKeys);
    }
    // DeviceController: a null capability set is "Missing device capabilities" (422).
    if (!attrs.caps) throw new Malformed('accountAttributes.capabilities is required');
    return attrs.caps;
  }

  /**
   * DeviceController.isCapabilityDowngrade: every `requireForNewDevices` capability, and every
   * `preventDowngrade` one the account has (ALL_DEVICES: each of its devices has it), or 409.
   */
  private async checkLinkCapabilities(caps: Set<string>, aci: string): Promise<void> {
    if (!this.isOn('link-capabilities')) return;
    const devices = await this.server.getAllDevicesByServiceId(aci);
    const kept = PREVENT_DOWNGRADE.filter(
      (c) => devices.length > 0 && devices.every((d) => this.capabilitiesOf(d).has(c)),
    );
    const missing = [...new Set([...REQUIRED_FOR_NEW_DEVICES, ...kept])].filter(
      (c) => !caps.has(c),
    );
    if (missing.length)
      throw new Refusal(
        'link-capabilities',
        409,
        `the new device's capabilities lack ${missing.join(', ')}, which ${
          missing.every((c) => (REQUIRED_FOR_NEW_DEVICES as readonly string[]).includes(c))
            ? 'every new device must have'
            : 'every device of the account has'
        }`,
      );
  }

  /** SetKeysRequest, KeysController.setKeys. */
  private async checkKeys(v: unknown, url: URL, device: MockDevice | undefined): Promise<void> {
    const body = object(v, 'the body');
    const signed: CheckedKey[] = [];
    for (const [field, kind, isSigned] of [
      ['preKeys', 'ec', false],
      ['pqPreKeys', 'kem', true],
    ] as const) {
      // Absent is an empty list (the record's compact constructor); @Size(max = 100).
      if (absent(body[field])) continue;
      const list = body[field];
      if (!Array.isArray(list)) throw new Malformed(`${field} must be a list`);
      if (list.length > 100) throw new Malformed(`${field} has ${list.length} keys, over 100`);
      list.forEach((k, i) => {
        if (absent(k)) throw new Malformed(`${field}[${i}] must not be null`);
        const key = preKey(k, `${field}[${i}]`, kind, isSigned);
        if (isSigned) signed.push(key);
      });
    }
    if (!absent(body.signedPreKey))
      signed.push(preKey(body.signedPreKey, 'signedPreKey', 'ec', true));
    if (!absent(body.pqLastResortPreKey))
      signed.push(preKey(body.pqLastResortPreKey, 'pqLastResortPreKey', 'kem', true));
    // The identity the keys are for: the account's ACI or PNI identity key, held by its primary.
    const identity = url.searchParams.get('identity')?.toLowerCase() === 'pni' ? 'PNI' : 'ACI';
    if (device) {
      const primary = await this.server.getDeviceByServiceId(device.aci);
      if (primary) verifySignatures(await identityKey(primary, identity), signed);
    }
  }

  /** CertificateController.getDeliveryCertificate's `@QueryParam("includeE164")`. */
  private checkCertificate(url: URL): void {
    const given = url.searchParams.getAll('includeE164');
    const value = given[0];
    if (
      value !== undefined &&
      value !== '' &&
      !/^(true|false)$/i.test(value) &&
      this.isOn('certificate-e164')
    )
      // Jersey reads a boolean with Boolean.valueOf, so Signal-Server takes any word but "true" as
      // false (and an empty value as the default, true). The sandbox refuses the word instead of
      // guessing for the client: one that sends "0" or "no" does not know what it asked for.
      throw new Refusal('certificate-e164', 400, `includeE164=${value} is not true or false`);
    const includes = value === undefined || value === '' || value.toLowerCase() === 'true';
    if (includes && this.isOn('sandbox-only-privacy-certificate-without-e164'))
      throw new Refusal(
        'sandbox-only-privacy-certificate-without-e164',
        400,
        `${value === undefined ? 'without includeE164=false' : `with includeE164=${value}`} Signal-Server would put the account's phone number into the sealed-sender certificate; this client never shares it (a sandbox rule, not Signal-Server's)`,
      );
  }
}

/**
 * The largest `uploadLength` the sandbox grants: the encrypted size of a 100 MiB file (Signal's
 * attachment limit; production sets `global.attachments.maxBytes` in its configuration).
 */
export const MAX_UPLOAD_LENGTH = encryptedAttachmentSize(100 * 1024 * 1024);

/** AttachmentControllerV4.getAttachmentUploadForm's `@Auth` and `@QueryParam("uploadLength")`. */
function checkUploadForm(url: URL, device: MockDevice | undefined): void {
  const rule = 'attachment-form-request-shape';
  if (!device) throw new Refusal(rule, 401, 'an upload form needs an authenticated device');
  const given = url.searchParams.getAll('uploadLength');
  if (given.length === 0)
    throw new Refusal(rule, 400, 'uploadLength is missing (this client always states it)');
  const value = given[0] ?? '';
  // Jersey's Optional<@Positive Long>: digits only, no sign, no fraction, above zero.
  if (!/^\d+$/.test(value) || Number(value) <= 0 || !Number.isSafeInteger(Number(value)))
    throw new Refusal(rule, 400, `uploadLength=${value} is not a positive integer`);
  if (Number(value) > MAX_UPLOAD_LENGTH)
    throw new Refusal(
      rule,
      413,
      `uploadLength=${value} exceeds the maximum of ${MAX_UPLOAD_LENGTH} (exceeded maximum uploadLength)`,
    );
}

async function identityKey(
  device: MockDevice,
  kind: 'ACI' | 'PNI',
): Promise<Uint8Array | undefined> {
  try {
    return (await device.getIdentityKey(kind)).serialize();
  } catch {
    return undefined;
  }
}

/** Envelope.Type values IncomingMessage.isValidEnvelopeType accepts (TextSecure.proto). */
const ENVELOPE_TYPES = new Set([0, 1, 3, 6, 8]);
/** MessageController.MAX_TIMESTAMP. */
const MAX_TIMESTAMP = 86_400_000 * 100_000_000;
/** push/MessageSender.MAX_MESSAGE_SIZE (96 KiB), answered 413. */
const MAX_MESSAGE_SIZE = 96 * 1024;

/** IncomingMessageList / IncomingMessage (MessageController.sendMessage). */
function checkMessages(v: unknown): void {
  const body = object(v, 'the body');
  if (!Array.isArray(body.messages) || body.messages.length === 0)
    throw new Malformed('messages must be a non-empty list');
  boolean(body.online, 'online');
  boolean(body.urgent, 'urgent'); // a Boolean: absent or null means true
  integer(body.timestamp, 'timestamp', { min: 0, max: MAX_TIMESTAMP }, true);
  const devices = new Set<number>();
  const sizes: number[] = [];
  body.messages.forEach((m, i) => {
    const at = `messages[${i}]`;
    if (absent(m)) throw new Malformed(`${at} must not be null`);
    const msg = object(m, at);
    const type = integer(msg.type, `${at}.type`, INT, true) ?? 0;
    if (!ENVELOPE_TYPES.has(type))
      throw new Malformed(`${at}.type ${type} is not an envelope type a client may send`);
    // A Java byte: Jackson takes -128..255 (and wraps the upper half).
    devices.add(
      integer(
        msg.destinationDeviceId,
        `${at}.destinationDeviceId`,
        { min: -128, max: 255 },
        true,
      ) ?? 0,
    );
    integer(msg.destinationRegistrationId, `${at}.destinationRegistrationId`, INT, true);
    const content = base64(msg.content, `${at}.content`);
    if (!content || content.length === 0) throw new Malformed(`${at}.content must not be empty`);
    sizes.push(content.length);
  });
  if (devices.size !== body.messages.length)
    throw new Malformed('two messages are for the same destinationDeviceId');
  // Checked after the body's validation, by MessageSender.validateContentLength.
  const over = sizes.findIndex((n) => n > MAX_MESSAGE_SIZE);
  if (over >= 0)
    throw new Malformed(
      `messages[${over}].content is ${sizes[over]} bytes, over ${MAX_MESSAGE_SIZE}`,
      413,
    );
}

/** RegistrationRequest / AccountAttributes / PhoneVerificationRequest; returns the capabilities. */
function checkRegistration(v: unknown): Set<string> | null {
  const body = object(v, 'the body');
  const session = string(body.sessionId, 'sessionId');
  const recovery = base64(body.recoveryPassword, 'recoveryPassword');
  const receipt = base64(body.receiptCredentialPresentation, 'receiptCredentialPresentation');
  const ways = [!!session?.trim(), !!recovery?.length, !!receipt?.length].filter(Boolean).length;
  if (ways !== 1)
    throw new Malformed(
      'exactly one of sessionId, recoveryPassword and receiptCredentialPresentation must be given',
    );
  integer(body.totp, 'totp', { min: 0, max: INT.max }, true);
  boolean(body.skipDeviceTransfer, 'skipDeviceTransfer');
  if (absent(body.accountAttributes)) throw new Malformed('accountAttributes is required');
  const attrs = deviceAttributes(body.accountAttributes, 'accountAttributes');
  const a = object(body.accountAttributes, 'accountAttributes');
  const lock = string(a.registrationLock, 'accountAttributes.registrationLock');
  if (lock !== undefined && lock.length !== 0 && lock.length !== 64)
    throw new Malformed('accountAttributes.registrationLock must be 0 or 64 characters');
  const uak = jacksonBytes(a.unidentifiedAccessKey, 'accountAttributes.unidentifiedAccessKey');
  if (uak && uak.length !== 0 && uak.length !== 16)
    throw new Malformed('accountAttributes.unidentifiedAccessKey must be 0 or 16 bytes');
  const unrestricted = boolean(
    a.unrestrictedUnidentifiedAccess,
    'accountAttributes.unrestrictedUnidentifiedAccess',
  );
  if (!unrestricted && uak?.length !== 16)
    throw new Malformed(
      'accountAttributes.unidentifiedAccessKey (16 bytes) is required unless access is unrestricted',
    );
  boolean(a.discoverableByPhoneNumber, 'accountAttributes.discoverableByPhoneNumber');
  const rp = base64(a.recoveryPassword, 'accountAttributes.recoveryPassword');
  if (rp && rp.length !== 0 && rp.length !== 32)
    throw new Malformed('accountAttributes.recoveryPassword must be 0 or 32 bytes');
  oneDeliveryChannel(body, attrs.fetches);

  const identity = (field: string) => {
    const key = base64(body[field], field);
    if (!key) return undefined;
    try {
      PublicKey.deserialize(key as Uint8Array<ArrayBuffer>);
    } catch {
      throw new Malformed(`${field} is not a Curve25519 key`);
    }
    return key;
  };
  const aciIdentity = identity('aciIdentityKey');
  if (!aciIdentity) throw new Malformed('aciIdentityKey is required');
  const pniIdentity = identity('pniIdentityKey');
  // isEverySignedKeyValid: the ACI keys are required and signed by the ACI identity key.
  for (const f of ['aciSignedPreKey', 'aciPqLastResortPreKey']) {
    if (absent(body[f])) throw new Malformed(`${f} is required`);
  }
  const aciKeys = [
    preKey(body.aciSignedPreKey, 'aciSignedPreKey', 'ec', true),
    preKey(body.aciPqLastResortPreKey, 'aciPqLastResortPreKey', 'kem', true),
  ];
  // isAllOrNoPhoneNumberInformationProvided; a registration by number needs them all
  // (RegistrationController.registerAccountWithNumber: "PNI keys and registration ID must be provided").
  const pniParts = [
    pniIdentity !== undefined,
    !absent(a.pniRegistrationId),
    !absent(body.pniSignedPreKey),
    !absent(body.pniPqLastResortPreKey),
  ];
  if (pniParts.some((p) => p !== pniParts[0]))
    throw new Malformed(
      'pniIdentityKey, accountAttributes.pniRegistrationId, pniSignedPreKey and pniPqLastResortPreKey come all together or not at all',
    );
  if (!recovery && !receipt && !pniIdentity)
    throw new Malformed('PNI keys and registration ID must be provided');
  verifySignatures(aciIdentity, aciKeys);
  if (pniIdentity)
    verifySignatures(pniIdentity, [
      preKey(body.pniSignedPreKey, 'pniSignedPreKey', 'ec', true),
      preKey(body.pniPqLastResortPreKey, 'pniPqLastResortPreKey', 'kem', true),
    ]);
  return attrs.caps;
}

// ---- installing it ----

function installConnectionHook(): void {
  if (connectionHookInstalled) return;
  connectionHookInstalled = true;
  const { Connection } = require('@signalapp/mock-server/src/server/ws/connection') as {
    Connection: {
      prototype: { handleRequest(this: MockConnection, request: WsRequest): Promise<WsResponse> };
    };
  };
  const original = Connection.prototype.handleRequest;
  Connection.prototype.handleRequest = async function handleRequest(
    this: MockConnection,
    request: WsRequest,
  ) {
    const conformance = byServer.get(this.server as object);
    // A mock server the sandbox did not start (a unit test's own) stays as lax as it was.
    if (!conformance) return original.call(this, request);
    const refusal = await conformance.checkWsRequest(this, request);
    if (refusal) return refusal;
    const response = await original.call(this, request);
    await conformance.afterWsResponse(this, request, response);
    return response;
  };
}

type Listener = (req: Http2ServerRequest, res: Http2ServerResponse) => void;

/**
 * Puts `check` in front of the server's listeners for `event`: a refusal is answered here
 * (`:status 499` on an upgrade stream ends it before the mock writes its 200), else the mock's own
 * listeners run as they would have.
 */
function guard(
  https: Http2SecureServer,
  event: 'connect' | 'request',
  check: (req: Http2ServerRequest) => Promise<Refusal | null>,
): void {
  const originals = https.listeners(event) as Listener[];
  https.removeAllListeners(event);
  https.on(event, (req: Http2ServerRequest, res: Http2ServerResponse) => {
    check(req).then(
      (refusal) => {
        if (!refusal) {
          for (const fn of originals) fn.call(https, req, res);
          return;
        }
        const body = JSON.stringify({
          code: refusal.status,
          message: `${refusal.message} [strict sandbox: ${refusal.rule}]`,
          rule: refusal.rule,
        });
        res.writeHead(refusal.status, { 'content-type': 'application/json' });
        res.end(body);
      },
      (err: unknown) => {
        res.writeHead(500, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ code: 500, message: `strict sandbox: ${String(err)}` }));
      },
    );
  });
}

/**
 * Makes a listening mock server strict. Call after `server.listen()` (its HTTP/2 server exists only
 * then) and before any client connects.
 */
export function installConformance(server: object, opts: ConformanceOptions = {}): Conformance {
  const internals = server as MockServerInternals;
  const https = internals.https;
  if (!https) throw new Error('strict sandbox: install it after the mock server listens');
  const conformance = new Conformance(internals, opts);
  byServer.set(server, conformance);
  installConnectionHook();
  guard(https, 'connect', (req) => conformance.checkUpgrade(req));
  guard(https, 'request', (req) => conformance.checkHttp(req));
  return conformance;
}
