/**
 * Group auth credentials (`GET /v1/certificate/auth/group`): one per UTC day, requested for today …
 * today+6 days as Signal-Desktop does (the server refuses more than a week ahead), received with
 * zkgroup against the environment's ServerPublicParams, and kept by day. Today's is used; when it is
 * missing (a new day past the week, a first use) the week is fetched again.
 */
import { Aci, Pni } from '@signalapp/libsignal-client';
import {
  AuthCredentialWithPniResponse,
  ClientZkAuthOperations,
  type AuthCredentialWithPni,
  type ServerPublicParams,
} from '@signalapp/libsignal-client/dist/zkgroup/index.js';
import type { GroupCredentialsAnswer } from '../api';
import { ProtocolError } from '../errors';

export const DAY_SECONDS = 24 * 60 * 60;
/** Days after today asked for (Desktop: today + 6). */
export const CREDENTIAL_DAYS_AHEAD = 6;

/** The start of the UTC day `ms` falls in, in epoch seconds (a credential's redemption time). */
export function dayOf(ms: number): number {
  const seconds = Math.floor(ms / 1000);
  return seconds - (seconds % DAY_SECONDS);
}

/** The redemption range to ask for at `ms`: today … today + 6 days. */
export function credentialRange(ms: number): { start: number; end: number } {
  const start = dayOf(ms);
  return { start, end: start + CREDENTIAL_DAYS_AHEAD * DAY_SECONDS };
}

export interface GroupCredentialOptions {
  serverParams: ServerPublicParams;
  /** Our ACI and PNI (bare uuids). */
  aci: string;
  pni: string;
  fetch: (start: number, end: number) => Promise<GroupCredentialsAnswer>;
  now: () => number;
}

export class GroupCredentials {
  private readonly byDay = new Map<number, AuthCredentialWithPni>();
  private fetching: Promise<void> | null = null;
  private readonly auth: ClientZkAuthOperations;

  constructor(private readonly opts: GroupCredentialOptions) {
    this.auth = new ClientZkAuthOperations(opts.serverParams);
  }

  /** Today's credential (UTC, by the injected clock), fetching the week when it is missing. */
  async today(): Promise<AuthCredentialWithPni> {
    const day = dayOf(this.opts.now());
    const held = this.byDay.get(day);
    if (held) return held;
    this.fetching ??= this.fetchWeek().finally(() => (this.fetching = null));
    await this.fetching;
    const fetched = this.byDay.get(day);
    if (!fetched) throw new ProtocolError('The server sent no group credential for today');
    return fetched;
  }

  /** Days held now (epoch seconds), oldest first: for tests and diagnostics. */
  heldDays(): number[] {
    return [...this.byDay.keys()].sort((a, b) => a - b);
  }

  /** Forgets every credential (e.g. after the server refused one). */
  clear(): void {
    this.byDay.clear();
  }

  private async fetchWeek(): Promise<void> {
    const { start, end } = credentialRange(this.opts.now());
    const answer = await this.opts.fetch(start, end);
    const aci = Aci.fromUuid(this.opts.aci);
    const pni = Pni.fromUuid(answer.pni ?? this.opts.pni);
    for (const day of [...this.byDay.keys()]) if (day < start) this.byDay.delete(day);
    for (const c of answer.credentials) {
      if (c.redemptionTime < start || c.redemptionTime > end) continue;
      if (c.redemptionTime % DAY_SECONDS !== 0) continue;
      try {
        const credential = this.auth.receiveAuthCredentialWithPniAsServiceId(
          aci,
          pni,
          c.redemptionTime,
          new AuthCredentialWithPniResponse(Buffer.from(c.credential) as Uint8Array<ArrayBuffer>),
        );
        this.byDay.set(c.redemptionTime, credential);
      } catch (e) {
        throw new ProtocolError('A group credential from the server does not verify', {
          cause: e,
        });
      }
    }
  }
}
