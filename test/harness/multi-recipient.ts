/**
 * Test-only: `PUT /v1/messages/multi_recipient` on the mock's WebSocket (NEXT-WAVE.md §5 Option A).
 * Mock-server 27.0.0 serves multi-recipient sends only over gRPC (`src/server/grpc.js`
 * SendMultiRecipientMessage); Signal-Server also serves the REST form over the chat socket, which
 * is what the engine speaks. The route parses the body with the MOCK's own libsignal copy (its
 * objects must not meet ours), builds the per-device UNIDENTIFIED_SENDER messages as grpc.js does,
 * and lets the mock's public `prepareMultiDeviceMessage` / `handlePreparedMultiDeviceMessage` judge
 * and deliver them; mismatches become Signal-Server's 409/410 JSON (MessageController,
 * AccountMismatchedDevices / AccountStaleDevices), an unknown recipient its 404.
 *
 * The rules Signal-Server enforces and the mock skips (its gRPC route checks no token at all) are
 * checked first, by the strict sandbox (./conformance.ts calls checkMultiRecipient), each a named
 * rule: the content type, exactly one of Group-Send-Token / Unidentified-Access-Key, the token
 * verified for exactly the recipient set (GroupSendFullToken.verify with the server's key pair for
 * the token's expiration), and the XOR of the recipients' access keys (checkAccessKeys: ACIs only).
 * Pinned to mock-server 27.0.0, as sandbox.ts's directory route is.
 */
import type { RuleName } from './conformance';

type MockLibsignal = typeof import('@signalapp/libsignal-client');
type MockZkgroup = typeof import('@signalapp/libsignal-client/dist/zkgroup/index.js');
const mockPaths = { paths: [require.resolve('@signalapp/mock-server')] };
const mockLibsignal = require(
  require.resolve('@signalapp/libsignal-client', mockPaths),
) as MockLibsignal;
type MrmClass =
  typeof import('@signalapp/libsignal-client/dist/SealedSenderMultiRecipientMessage.js').default;
const MockMrm = (
  require(
    require.resolve(
      '@signalapp/libsignal-client/dist/SealedSenderMultiRecipientMessage',
      mockPaths,
    ),
  ) as { default: MrmClass }
).default;
const mockZkgroup = require(
  require.resolve('@signalapp/libsignal-client/zkgroup', mockPaths),
) as MockZkgroup;

export const MRM_CONTENT_TYPE = 'application/vnd.signal-messenger.mrm';

/** What the route saw: every multi-recipient request that reached it, with its answer. */
export interface MultiRecipientRequest {
  status: number;
  /** The recipients' service ids, as the message names them. */
  recipients: string[];
  auth: 'group-send-token' | 'access-key';
}

interface MockDeviceLike {
  deviceId: number;
  accessKey?: Uint8Array;
}

/** The parts of the mock server the route and its checks use (public API plus `zkSecret`). */
interface MockServerLike {
  prepareMultiDeviceMessage(
    source: undefined,
    serviceId: string,
    messages: unknown[],
    timestamp: number,
  ): Promise<
    | { status: 'ok'; targetServiceId: string; result: unknown }
    | { status: 'unknown' }
    | { status: 'incomplete'; missingDevices: number[]; extraDevices: number[] }
    | { status: 'stale'; staleDevices: number[] }
  >;
  handlePreparedMultiDeviceMessage(
    source: undefined,
    serviceId: string,
    prepared: unknown,
  ): Promise<void>;
  getDeviceByServiceId(serviceId: string): Promise<MockDeviceLike | undefined>;
  zkSecret: unknown;
}

const logs = new WeakMap<object, MultiRecipientRequest[]>();

/** The multi-recipient requests `server` answered, in order (the route's own log). */
export function multiRecipientLog(server: object): MultiRecipientRequest[] {
  let log = logs.get(server);
  if (!log) {
    log = [];
    logs.set(server, log);
  }
  return log;
}

/** UNIDENTIFIED_SENDER, as the mock's protos number it. */
const UNIDENTIFIED_SENDER = 6;

function parse(body: Uint8Array): InstanceType<MrmClass> {
  return new MockMrm(new Uint8Array(body));
}

/** A refusal for the strict sandbox to answer with (status, rule, reason). */
export interface MultiRecipientRefusal {
  rule: RuleName;
  status: number;
  message: string;
}

/**
 * Signal-Server's checks before any delivery (MessageController.sendMultiRecipientMessage):
 * null when the request passes. `isOn` says which rules the sandbox has on.
 */
export async function checkMultiRecipient(
  server: object,
  headers: Record<string, string>,
  body: Uint8Array | null | undefined,
  isOn: (rule: RuleName) => boolean,
): Promise<MultiRecipientRefusal | null> {
  const mock = server as MockServerLike;
  const type = (headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase();
  if (isOn('multi-recipient-content-type') && type !== MRM_CONTENT_TYPE)
    return {
      rule: 'multi-recipient-content-type',
      status: 415,
      message: `Content-Type must be ${MRM_CONTENT_TYPE}, not "${type ?? ''}"`,
    };
  const token = headers['group-send-token'];
  const accessKey = headers['unidentified-access-key'];
  if (isOn('multi-recipient-authorization')) {
    if (token === undefined && accessKey === undefined)
      return {
        rule: 'multi-recipient-authorization',
        status: 401,
        message: 'A group send endorsement token or unidentified access key is required',
      };
    if (token !== undefined && accessKey !== undefined)
      return {
        rule: 'multi-recipient-authorization',
        status: 400,
        message:
          'Only one of group send endorsement token and unidentified access key may be given',
      };
  }
  let recipients: string[];
  try {
    recipients = Object.keys(parse(body ?? new Uint8Array()).recipientsByServiceIdString());
  } catch {
    // Signal-Server's MultiRecipientMessageProvider refuses a body libsignal cannot read.
    return null;
  }
  if (token !== undefined && isOn('multi-recipient-group-send-token')) {
    try {
      const full = new mockZkgroup.GroupSendFullToken(new Uint8Array(Buffer.from(token, 'base64')));
      full.verify(
        recipients.map((r) => mockLibsignal.ServiceId.parseFromServiceIdString(r)),
        mockZkgroup.GroupSendDerivedKeyPair.forExpiration(
          full.getExpiration(),
          mock.zkSecret as never,
        ),
      );
    } catch (e) {
      return {
        rule: 'multi-recipient-group-send-token',
        status: 401,
        message: `the group send token does not cover exactly these recipients (${
          e instanceof Error ? e.message : String(e)
        })`,
      };
    }
  }
  if (token === undefined && accessKey !== undefined && isOn('multi-recipient-access-key')) {
    const refuse = (message: string): MultiRecipientRefusal => ({
      rule: 'multi-recipient-access-key',
      status: 401,
      message,
    });
    if (recipients.some((r) => r.startsWith('PNI:')))
      return refuse('Multi-recipient messages must be addressed to ACI service IDs');
    const combined = Buffer.alloc(16);
    for (const r of recipients) {
      const device = await mock.getDeviceByServiceId(r);
      // An unknown recipient is the route's 404, as Signal-Server resolves accounts first.
      if (!device) continue;
      if (!device.accessKey || device.accessKey.length !== 16)
        return refuse(`recipient ${r} has no unidentified access key`);
      for (let i = 0; i < 16; i++) combined[i] = (combined[i] ?? 0) ^ (device.accessKey[i] ?? 0);
    }
    const given = Buffer.from(accessKey, 'base64');
    if (given.length !== 16 || !combined.equals(given))
      return refuse("the combined access key is not the XOR of the recipients' access keys");
  }
  return null;
}

type RouteResult = [number, unknown];

/** The route itself, on one connection's router (the checks above already passed). */
async function multiRecipient(
  server: MockServerLike,
  body: Uint8Array | undefined,
  headers: Record<string, string>,
  query: Record<string, string | string[] | undefined> = {},
): Promise<RouteResult> {
  const log = multiRecipientLog(server);
  const auth = headers['group-send-token'] !== undefined ? 'group-send-token' : 'access-key';
  if (!body) return [400, { error: 'Missing body' }];
  let message: ReturnType<typeof parse>;
  try {
    message = parse(body);
  } catch {
    log.push({ status: 400, recipients: [], auth });
    return [400, { error: 'Invalid multi-recipient message' }];
  }
  const timestamp = Number(query.ts);
  const listByServiceId = new Map<string, unknown[]>();
  const byServiceId = message.recipientsByServiceIdString();
  for (const [serviceId, recipient] of Object.entries(byServiceId)) {
    const content = Buffer.from(message.messageForRecipient(recipient)).toString('base64');
    listByServiceId.set(
      serviceId,
      recipient.deviceIds.map((deviceId, i) => ({
        type: UNIDENTIFIED_SENDER,
        destinationDeviceId: deviceId,
        destinationRegistrationId: recipient.registrationIds[i],
        content,
      })),
    );
  }
  const recipients = [...listByServiceId.keys()];
  const answer = (status: number, json: unknown): RouteResult => {
    log.push({ status, recipients, auth });
    return [status, json];
  };
  if (recipients.length === 0) return answer(400, { error: 'No recipients' });
  const prepared = await Promise.all(
    recipients.map(async (uuid) => ({
      uuid,
      prepared: await server.prepareMultiDeviceMessage(
        undefined,
        uuid,
        listByServiceId.get(uuid) ?? [],
        timestamp,
      ),
    })),
  );
  // MessageController: unknown accounts → 404 (not a story), then 409 for every mismatched
  // account, else 410 for every stale one; only then is anything delivered.
  if (prepared.some((p) => p.prepared.status === 'unknown'))
    return answer(404, { error: 'Not found' });
  const mismatched = prepared.flatMap((p) =>
    p.prepared.status === 'incomplete'
      ? [
          {
            uuid: p.uuid,
            devices: {
              missingDevices: p.prepared.missingDevices,
              extraDevices: p.prepared.extraDevices,
            },
          },
        ]
      : [],
  );
  if (mismatched.length) return answer(409, mismatched);
  const stale = prepared.flatMap((p) =>
    p.prepared.status === 'stale'
      ? [{ uuid: p.uuid, devices: { staleDevices: p.prepared.staleDevices } }]
      : [],
  );
  if (stale.length) return answer(410, stale);
  for (const p of prepared) {
    if (p.prepared.status === 'ok')
      await server.handlePreparedMultiDeviceMessage(
        undefined,
        p.prepared.targetServiceId,
        p.prepared.result,
      );
  }
  return answer(200, { uuids404: [] });
}

let installed = false;

/**
 * Adds the route to every WebSocket connection's router, ahead of the mock's own
 * `/v1/messages/:serviceId` (which would otherwise take `multi_recipient` for a service id).
 */
export function installMultiRecipientRoute(): void {
  if (installed) return;
  installed = true;
  type Handler = (
    params: Record<string, string>,
    body: Uint8Array | undefined,
    headers: Record<string, string>,
    query?: Record<string, string | string[] | undefined>,
  ) => Promise<RouteResult>;
  interface MockConnection {
    server: MockServerLike;
    router: { put(pattern: string, handler: Handler): void; routes: unknown[] };
    __sigflowMultiRecipient?: boolean;
  }
  const { Connection } = require('@signalapp/mock-server/src/server/ws/connection') as {
    Connection: {
      prototype: { handleRequest(this: MockConnection, request: unknown): Promise<unknown> };
    };
  };
  const original = Connection.prototype.handleRequest;
  Connection.prototype.handleRequest = function handleRequest(
    this: MockConnection,
    request: unknown,
  ) {
    if (!this.__sigflowMultiRecipient) {
      this.__sigflowMultiRecipient = true;
      this.router.put('/v1/messages/multi_recipient', (_params, body, headers, query) =>
        multiRecipient(this.server, body, headers, query),
      );
      // First match wins in the mock's router: move ours to the front.
      const route = this.router.routes.pop();
      this.router.routes.unshift(route);
    }
    return original.call(this, request);
  };
}
