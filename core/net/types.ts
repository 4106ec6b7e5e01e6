/**
 * The contract between the chat socket (core/net) and everything that talks to the server through it
 * (core/api, provisioning, messaging). Only core/net implements it; everything else depends on this.
 */
export type HttpVerb = 'GET' | 'PUT' | 'POST' | 'DELETE' | 'PATCH';

export interface ChatRequest {
  verb: HttpVerb;
  /** Path with query string, e.g. `/v2/keys?identity=pni`. */
  path: string;
  /** Raw bytes, or a value serialized as JSON (then `content-type: application/json` is added). */
  body?: Uint8Array | object;
  /** Extra headers, e.g. `{ 'Unidentified-Access-Key': '…' }`. */
  headers?: Record<string, string>;
  /** Per-request timeout; the socket's default applies when absent. */
  timeoutMs?: number;
}

export interface ChatResponse {
  status: number;
  message: string;
  /** Lower-cased header names. */
  headers: Record<string, string>;
  body: Uint8Array;
}

/** Anything that can carry a REST request to the chat server and return its response. */
export interface ChatRequester {
  request(req: ChatRequest): Promise<ChatResponse>;
}

/** A request the server pushed to us (`PUT /api/v1/message`, `PUT /api/v1/queue/empty`, …). */
export interface IncomingRequest {
  verb: string;
  path: string;
  body: Uint8Array;
  headers: Record<string, string>;
}

/**
 * Decides the ACK for a server-pushed request. The returned status is sent back only after the
 * promise settles; a rejection is answered 500 so the server keeps (and later redelivers) the item.
 */
export type IncomingRequestHandler = (req: IncomingRequest) => Promise<number> | number;
