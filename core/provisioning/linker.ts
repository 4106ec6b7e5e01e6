/**
 * Linking as a secondary device (PROTOCOL.md §3), as a small state machine driven by an AbortSignal:
 *
 *   waiting (provisioning socket open, `sgnl://linkdevice` URL shown)
 *     → the phone scans → ProvisionEnvelope → decrypt → linking (PUT /v1/devices/link)
 *     → saving (account + keys in one transaction) → uploading one-time keys → linked
 *
 * The provisioning socket is reopened (with a fresh URL) if it closes before a scan. Nothing is
 * written to disk until the server has accepted the link, so cancelling leaves no account behind.
 * Once PUT /v1/devices/link succeeded the phone lists the device: from then on the link is completed
 * even if cancelled, rather than leaving a device on the phone that no local account backs.
 */
import { EventEmitter } from 'node:events';
import { PrivateKey } from '@signalapp/libsignal-client';
import { ProvisionEnvelope, ProvisioningAddress, type ProvisionMessage } from '../../proto';
import { CancelledError, ProtocolError, SignalError } from '../errors';
import type { Logger } from '../log';
import type { IncomingRequestHandler } from '../net/types';
import type { AccountInfo } from '../types';

export type LinkState = 'idle' | 'waiting' | 'linking' | 'linked' | 'failed' | 'cancelled';

/** One provisioning socket lifetime. `closed` settles when the socket closes for any reason. */
export interface ProvisioningSocket {
  closed: Promise<void>;
  close(): void;
}

export interface ProvisioningPorts {
  /** Opens `/v1/websocket/provisioning/` (unauthenticated) with the given push handler. */
  openProvisioningSocket(handler: IncomingRequestHandler): Promise<ProvisioningSocket>;
  decrypt(ephemeral: PrivateKey, envelope: ProvisionEnvelope): ProvisionMessage;
  /**
   * Generates keys, links the device on the server, stores the account and uploads one-time keys;
   * see client.ts. Receives the decrypted message; returns the linked account.
   */
  complete(message: ProvisionMessage): Promise<AccountInfo>;
}

export interface LinkOptions {
  signal?: AbortSignal;
  logger: Logger;
  /** Delay before reopening a provisioning socket that closed before the scan. */
  reopenDelayMs?: number;
  /** Give up after this many socket reopenings without a scan (a server that keeps failing). */
  maxReopens?: number;
}

export function provisioningUrl(address: string, publicKey: Uint8Array): string {
  // URL-encode both: standard base64 contains '+' and '/', and an unencoded '+' reaches the phone as
  // a space, which it rejects (§3 step 2).
  const pub = Buffer.from(publicKey).toString('base64');
  return `sgnl://linkdevice?uuid=${encodeURIComponent(address)}&pub_key=${encodeURIComponent(pub)}`;
}

/** The identifier fields of a ProvisionMessage; the string ones are older phones' (§3 step 4). */
export interface ProvisionedIdentifierFields {
  aciBinary?: Uint8Array | null;
  pniBinary?: Uint8Array | null;
  aci?: string | null;
  pni?: string | null;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function uuidFromBytes(bytes: Uint8Array, what: string): string {
  if (bytes.length !== 16) throw new ProtocolError(`The phone sent a malformed ${what}`);
  const hex = Buffer.from(bytes).toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

function uuidFromString(value: string, what: string, prefix?: string): string {
  let v = value.trim();
  if (prefix && v.toUpperCase().startsWith(prefix)) v = v.slice(prefix.length);
  if (!UUID.test(v)) throw new ProtocolError(`The phone sent a malformed ${what}`);
  return v.toLowerCase();
}

/**
 * The account's ACI and PNI as bare lower-case UUIDs. Current phones send the 16-byte
 * `aciBinary`/`pniBinary`; the string fields may be absent (PROTOCOL.md §3 step 4) but are what an
 * older phone sends, so either form is accepted, the binary one first.
 */
export function provisionedIdentifiers(message: ProvisionedIdentifierFields): {
  aci: string;
  pni: string;
} {
  const aci = message.aciBinary?.length
    ? uuidFromBytes(message.aciBinary, 'ACI')
    : message.aci
      ? uuidFromString(message.aci, 'ACI')
      : undefined;
  const pni = message.pniBinary?.length
    ? uuidFromBytes(message.pniBinary, 'PNI')
    : message.pni
      ? uuidFromString(message.pni, 'PNI', 'PNI:')
      : undefined;
  if (!aci || !pni) throw new ProtocolError('The phone sent no account identifiers');
  return { aci, pni };
}

/**
 * Emits 'state' (LinkState) and 'url' (string, a secret: never log it). `run()` resolves with the
 * linked account, or rejects with CancelledError or the failure.
 */
export class Linker extends EventEmitter {
  private stateValue: LinkState = 'idle';
  private urlValue: string | null = null;

  constructor(
    private readonly ports: ProvisioningPorts,
    private readonly opts: LinkOptions,
  ) {
    super();
  }

  get state(): LinkState {
    return this.stateValue;
  }

  /** The current `sgnl://linkdevice` URL while waiting for a scan. */
  get url(): string | null {
    return this.urlValue;
  }

  private setState(s: LinkState): void {
    if (this.stateValue === s) return;
    this.stateValue = s;
    this.emit('state', s);
  }

  async run(): Promise<AccountInfo> {
    const { signal, logger } = this.opts;
    try {
      if (signal?.aborted) throw new CancelledError('Linking');
      const message = await this.waitForScan();
      this.urlValue = null;
      this.setState('linking');
      const account = await this.ports.complete(message);
      this.setState('linked');
      return account;
    } catch (e) {
      this.urlValue = null;
      if (e instanceof CancelledError) {
        this.setState('cancelled');
      } else {
        logger.warn('linking failed', e);
        this.setState('failed');
      }
      throw e;
    }
  }

  /** Keeps a provisioning socket open (reopening it as needed) until a ProvisionMessage arrives. */
  private async waitForScan(): Promise<ProvisionMessage> {
    const { signal, logger } = this.opts;
    const maxReopens = this.opts.maxReopens ?? 20;
    for (let attempt = 0; ; attempt++) {
      if (signal?.aborted) throw new CancelledError('Linking');
      const ephemeral = PrivateKey.generate();
      let resolveEnvelope!: (env: ProvisionEnvelope) => void;
      const envelope = new Promise<ProvisionEnvelope>((resolve) => (resolveEnvelope = resolve));
      const handler: IncomingRequestHandler = (req) => {
        if (req.verb === 'PUT' && req.path === '/v1/address') {
          const { address } = ProvisioningAddress.decode(req.body);
          if (!address) return 400;
          this.urlValue = provisioningUrl(address, ephemeral.getPublicKey().serialize());
          this.setState('waiting');
          this.emit('url', this.urlValue);
          return 200;
        }
        if (req.verb === 'PUT' && req.path === '/v1/message') {
          resolveEnvelope(ProvisionEnvelope.decode(req.body));
          return 200;
        }
        return 404;
      };
      let socket: ProvisioningSocket;
      try {
        socket = await this.ports.openProvisioningSocket(handler);
      } catch (e) {
        if (attempt >= maxReopens) throw e;
        logger.warn('provisioning socket failed to open; retrying', e);
        await this.pause();
        continue;
      }
      // One listener per socket lifetime, removed when it ends: a long wait reopens the socket many
      // times on the same caller's signal, which must not collect a listener per reopen.
      let onAbort: (() => void) | undefined;
      const aborted = new Promise<'aborted'>((resolve) => {
        if (!signal) return;
        if (signal.aborted) return resolve('aborted');
        onAbort = () => resolve('aborted');
        signal.addEventListener('abort', onAbort, { once: true });
      });
      let outcome: { env: ProvisionEnvelope } | 'closed' | 'aborted';
      try {
        outcome = await Promise.race([
          envelope.then((env) => ({ env })),
          socket.closed.then(() => 'closed' as const),
          aborted,
        ]);
      } finally {
        if (onAbort) signal?.removeEventListener('abort', onAbort);
        socket.close();
      }
      if (outcome === 'aborted') throw new CancelledError('Linking');
      if (outcome === 'closed') {
        // The server closes an unused provisioning socket after a while: reopen, show a fresh URL.
        if (attempt >= maxReopens) {
          throw new SignalError(
            'NETWORK',
            'The provisioning connection kept closing before the phone scanned',
          );
        }
        logger.info('provisioning socket closed before a scan; reopening with a fresh link URL');
        this.urlValue = null;
        await this.pause();
        continue;
      }
      try {
        return this.ports.decrypt(ephemeral, outcome.env);
      } catch (e) {
        throw e instanceof SignalError
          ? e
          : new ProtocolError('Could not decrypt the provisioning message', { cause: e });
      }
    }
  }

  private pause(): Promise<void> {
    const ms = this.opts.reopenDelayMs ?? 1000;
    const signal = this.opts.signal;
    return new Promise((resolve) => {
      const onAbort = () => {
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      }, ms);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}
