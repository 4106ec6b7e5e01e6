/**
 * Ports: the parts of an account the engine builds (its store, its chat sockets, its receiver, the
 * REST calls its sender makes), each made through a factory that a caller may replace in
 * `SignalClientOptions.ports`. Production never sets them: the defaults build the real parts.
 * Tests inject them to hold the very parts a client made (to read or patch the store, drop the
 * socket, hand envelopes to the receiver, spy on sends), so that the client carries no test hooks
 * and nothing reaches into its private fields.
 */
import type { GroupStatePort } from '../groups/types';
import { Receiver, type ReceiverOptions } from '../messaging/receiver';
import type { SenderApi } from '../messaging/sender';
import { PersistentChat, type PersistentChatOptions } from '../net/persistent';
import { SignalStore, type SignalStoreOptions } from '../store';

export interface ClientPorts {
  /** Opens the account file (on open(), and when a new account is saved into a fresh client). */
  openStore?: (file: string, options: SignalStoreOptions) => SignalStore;
  /**
   * Makes a chat socket, not yet started: the authenticated one (`options.auth` set) and the
   * unauthenticated one sealed sends go over (made on first use).
   */
  chat?: (options: PersistentChatOptions) => PersistentChat;
  /** Makes the receiver of a session (one per connect after open or after setting an account aside). */
  receiver?: (options: ReceiverOptions) => Receiver;
  /** Wraps the REST calls the sender makes (bundles, message PUTs, sender certificates). */
  senderApi?: (api: SenderApi) => SenderApi;
  /**
   * Where group sends read a group's state (members, profile keys, endorsements). Default: the
   * session's group directory (core/groups/directory.ts); tests may hand in records of their own.
   */
  groups?: GroupStatePort;
}

/** The ports with every default filled in (group state: the session's, unless given). */
export type Ports = Required<Omit<ClientPorts, 'groups'>> & Pick<ClientPorts, 'groups'>;

export function withDefaults(ports: ClientPorts = {}): Ports {
  return {
    openStore: ports.openStore ?? ((file, options) => SignalStore.open(file, options)),
    chat: ports.chat ?? ((options) => new PersistentChat(options)),
    receiver: ports.receiver ?? ((options) => new Receiver(options)),
    senderApi: ports.senderApi ?? ((api) => api),
    ...(ports.groups ? { groups: ports.groups } : {}),
  };
}
