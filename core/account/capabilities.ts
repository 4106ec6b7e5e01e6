/**
 * The device capabilities this engine declares, in one place, for linking (`PUT /v1/devices/link`)
 * and for registering (`POST /v1/registration`) alike.
 *
 * A capability is a promise to Signal-Server and to the account's other devices (PROTOCOL.md §12):
 * claim only what the engine does.
 * - `spqr`: sessions made by libsignal 0.103 run the sparse post-quantum ratchet. Signal-Server
 *   requires it of every new device (`requireForNewDevices`): a link without it is answered 409 and
 *   a registration 499.
 * - `usernameChangeSyncMessage`: a device with it accepts the sync message telling it that the
 *   account's username changed. The engine keeps no username state, so accepting that message (the
 *   receiver ignores sync kinds it has nothing to do with, and never fails on them) is all it needs.
 *   Signal-Server marks it `preventDowngrade`: once every device of an account has it, a device
 *   linking without it is answered 409, so a phone of today could not link us without it.
 *
 * Not claimed, because the engine does not implement them: `attachmentBackfill` (answering a linked
 * device's request for attachments, a primary's duty), `deleteSync`, `versionedExpirationTimer`,
 * `storageServiceEncryptionV2Capability` / `ssre2` (storage-service records).
 */
export const DEVICE_CAPABILITIES: Readonly<Record<string, boolean>> = Object.freeze({
  spqr: true,
  usernameChangeSyncMessage: true,
  // Said as false rather than left out: Signal-Server counts only the names set to true, and the
  // mock server's registration schema insists that this key be present.
  attachmentBackfill: false,
});

/** A fresh copy for a request body (callers may not share the frozen object with a JSON encoder). */
export function deviceCapabilities(): Record<string, boolean> {
  return { ...DEVICE_CAPABILITIES };
}
