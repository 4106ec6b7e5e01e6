/**
 * The directory of one account: lookups answered from, and recorded into, its contacts table; the
 * contacts sync from its phone and the gate that holds lookups until those contacts came; and
 * recipients as users write them, resolved to service ids.
 */
import type { signalservice } from '../../proto';
import type { Environment } from '../config';
import { NotOnSignalError } from '../errors';
import type { Logger } from '../log';
import type { SignalStore } from '../store';
import type { LookupResult } from '../types';
import type { CdsiBackend, CdsiCredentials } from './cdsi';
import { ContactsSync } from './contacts-sync';
import { Directory, type LookupOptions } from './directory';
import { normalizeNumber } from './number';
import { classifyRecipient, resolveRecipient } from './recipient';

export interface AccountDirectoryOptions {
  environment: Environment;
  /** Fresh CDSI credentials (`GET /v2/directory/auth` on the account's chat socket). */
  auth: () => Promise<CdsiCredentials>;
  cdsi?: CdsiBackend | null;
  /** ISO 3166 country for numbers written without a country code. */
  defaultRegion?: string;
  logger: Logger;
  now: () => number;
  /** Told the number of contacts each time the phone's contacts were stored. */
  onContactsSynced: (count: number) => void;
}

export class AccountDirectory {
  private readonly directory: Directory;
  private readonly contacts: ContactsSync;

  constructor(
    store: SignalStore,
    private readonly opts: AccountDirectoryOptions,
  ) {
    this.contacts = new ContactsSync({
      environment: opts.environment,
      sink: { transaction: (fn) => store.transaction(fn), upsert: (u) => store.contacts.upsert(u) },
      logger: opts.logger,
      onSynced: opts.onContactsSynced,
    });
    this.directory = new Directory({
      environment: opts.environment,
      auth: opts.auth,
      contacts: {
        findByNumbers: (e164s) => store.contacts.findByNumbers(e164s),
        // With a contact's access key CDSI also answers for an ACI that hides its number (§8).
        withProfileKeys: () => store.contacts.withProfileKeys(),
        recordLookup: (results) =>
          store.transaction(() => {
            for (const r of results)
              store.contacts.upsert({
                e164: r.number,
                ...(r.aci ? { aci: r.aci } : {}),
                ...(r.pni ? { pni: r.pni } : {}),
                source: 'cdsi',
              });
          }),
      },
      ...(opts.cdsi !== undefined ? { cdsi: opts.cdsi } : {}),
      logger: opts.logger,
      now: opts.now,
    });
  }

  /** A recipient with the default region applied to national numbers; service ids unchanged. */
  recipientForm(to: string): string {
    const target = classifyRecipient(to);
    return 'serviceId' in target
      ? target.serviceId
      : normalizeNumber(target.number, this.opts.defaultRegion);
  }

  /** E.164 numbers, looked up once the phone's contacts came if they are awaited. */
  async lookup(numbers: string[], options: LookupOptions = {}): Promise<LookupResult[]> {
    await this.contacts.arrival;
    return this.directory.lookup(numbers, options);
  }

  /**
   * The service id to send to: `recipient` as recipientForm() gives it; a number is looked up
   * (after the phone's contacts, if they are awaited).
   */
  async resolve(recipient: string): Promise<string> {
    if (recipient.startsWith('+')) await this.contacts.arrival;
    return resolveRecipient(this.directory, recipient);
  }

  /** A send found `recipient`'s account gone: a number must not keep resolving from the cache. */
  noteFailure(recipient: string, serviceId: string, e: unknown): void {
    if (e instanceof NotOnSignalError && recipient !== serviceId)
      this.directory.forget([recipient]);
  }

  /** The phone's contacts were asked for: lookups wait for them from now on (bounded). */
  expectContacts(): void {
    this.contacts.expect();
  }

  /** A contacts blob from our primary: downloaded, verified and stored (§7), failures logged. */
  applyContacts(blob: signalservice.IAttachmentPointer): void {
    void this.contacts
      .apply(blob)
      .catch((e: unknown) => this.opts.logger.warn('contacts sync failed', e));
  }

  close(): void {
    this.contacts.close();
    this.directory.close();
  }
}
