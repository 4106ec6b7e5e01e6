/**
 * What every admin route of signal-account shares: the data folder and its files, the maps of link
 * attempts and registrations in progress (keyed by config node id, so that both work before the
 * first deploy), the permission checks, and the helpers that answer the common cases.
 */
import os from 'node:os';
import path from 'node:path';
import type { SignalClient } from '../../../core/client';
import { SignalError } from '../../../core/errors';
import type { GuardRegistry } from '../../../core/registration';
import type { AccountInfo } from '../../../core/types';
import type { AccountNode } from '../account';
import type { RED, RedRequest, RedResponse } from '../red';
import { guardRegistry, sendError, type ErrorBody } from '../registration';

type Handler = ReturnType<RED['auth']['needsPermission']>;

export interface LinkSession {
  state: 'waiting' | 'linked' | 'failed' | 'cancelled';
  url?: string;
  qr?: string;
  account?: AccountSummary;
  /** Why the attempt failed or was cancelled, in the shape of every admin error body. */
  error?: ErrorBody;
  abort: AbortController;
  /** Settles once the link attempt has ended and its client is free for another. */
  ended?: Promise<void>;
}

export interface AccountSummary {
  number?: string;
  aci: string;
  deviceId: number;
}

export interface AdminContext {
  RED: RED;
  read: Handler;
  write: Handler;
  /** `<config node id>.db` in the signal data folder; INVALID_INPUT for an id unsafe as a name. */
  dataFileFor(id: string): string;
  /** The deployed signal-account node of this id, or null. */
  deployed(id: string): AccountNode | null;
  /** The guard registry of claimed numbers (one per Node-RED instance). */
  guard: () => Promise<GuardRegistry>;
  /** Link attempts from the editor, the last one per id. */
  sessions: Map<string, LinkSession>;
  /** Clients opened only for registering an undeployed id (see registration.ts). */
  registering: Map<string, { client: SignalClient; timer: NodeJS.Timeout }>;
}

export function createContext(RED: RED): AdminContext {
  const dataDir = (): string =>
    (RED.settings.signalAccountDataDir as string | undefined) ??
    path.join(RED.settings.userDir ?? path.join(os.homedir(), '.node-red'), 'signal');
  return {
    RED,
    read: RED.auth.needsPermission('signal-account.read'),
    write: RED.auth.needsPermission('signal-account.write'),
    dataFileFor: (id) => {
      if (!/^[A-Za-z0-9._-]+$/.test(id))
        throw new SignalError('INVALID_INPUT', `Invalid node id "${id}"`);
      return path.join(dataDir(), `${id}.db`);
    },
    deployed: (id) => {
      const n = RED.nodes.getNode(id) as AccountNode | null;
      return n && n.type === 'signal-account' ? n : null;
    },
    guard: guardRegistry(RED, dataDir),
    sessions: new Map(),
    registering: new Map(),
  };
}

/** 404 for an id that is neither deployed nor being linked or registered from the editor. */
export function unknownAccount(res: RedResponse, id: string): void {
  res.status(404).json({
    error: {
      code: 'NOT_FOUND',
      message: `No Signal account ${id} is deployed, being linked or being registered`,
    },
  });
}

/**
 * Whether this request would pass signal-account.write, asked of Node-RED's own permission check
 * (for routes that themselves need only .read). Without adminAuth everyone may.
 */
export function mayWrite(ctx: AdminContext, req: RedRequest): Promise<boolean> {
  return new Promise((resolve) => {
    const refused = { status: () => ({ end: () => resolve(false), json: () => resolve(false) }) };
    ctx.write(req, refused as unknown as RedResponse, () => resolve(true));
  });
}

/** The JSON body when it is an object, else an empty one (a field missing is then named). */
export function bodyOf(req: RedRequest): Record<string, unknown> {
  return typeof req.body === 'object' && req.body !== null && !Array.isArray(req.body)
    ? (req.body as Record<string, unknown>)
    : {};
}

/** The account as the editor shows it: no keys, no password. */
export function summary(a: AccountInfo | null): AccountSummary | undefined {
  return a
    ? { aci: a.aci, deviceId: a.deviceId, ...(a.number ? { number: a.number } : {}) }
    : undefined;
}

/** An admin route's async body; a throw nobody caught becomes a 500 in the usual shape. */
export function route(
  fn: (req: RedRequest, res: RedResponse) => Promise<void>,
): (req: RedRequest, res: RedResponse) => void {
  return (req, res) => {
    void fn(req, res).catch((e: unknown) => sendErrorOnce(res, e));
  };
}

function sendErrorOnce(res: RedResponse, e: unknown): void {
  try {
    sendError(res, e);
  } catch {
    // The answer was already sent: nothing more to say to this request.
  }
}

/**
 * The deployed node's client, or null after answering 404 NOT_LINKED (400 for a malformed id):
 * for routes on what lives in the running account's store (identities, challenges).
 */
export async function deployedClient(
  ctx: AdminContext,
  req: RedRequest,
  res: RedResponse,
): Promise<SignalClient | null> {
  const id = req.params.id ?? '';
  ctx.dataFileFor(id);
  const node = ctx.deployed(id);
  const client = node ? await node.client().catch(() => null) : null;
  if (!client) {
    res.status(404).json({
      error: {
        code: 'NOT_LINKED',
        message: node
          ? `The Signal account ${id} could not start (its settings are unusable): fix them and deploy`
          : `No Signal account ${id} is deployed: deploy it first`,
      },
    });
  }
  return client;
}
