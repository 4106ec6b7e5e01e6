/**
 * Our sender-key state per group (issue 16; Signal-Desktop's `senderKeyInfo`): the distribution id
 * our sender key goes under, when that key was made, and which member devices have its
 * SenderKeyDistributionMessage (with the registration id they had then). Only core/store runs SQL.
 */
import type { Db } from './database';

export interface GroupSendDevice {
  serviceId: string;
  deviceId: number;
  registrationId: number;
}

export interface GroupSendState {
  groupId: string;
  /** UUID v4 the sender key is distributed under (kept across resets, as Desktop does). */
  distributionId: string;
  /** When the current sender key was made (ms). */
  createdAt: number;
  /** Member devices that hold the current key's SKDM. */
  devices: GroupSendDevice[];
}

export class GroupSendTable {
  private readonly s;

  constructor(
    private readonly db: Db,
    private readonly now: () => number,
  ) {
    this.s = {
      get: db.prepare(
        'SELECT distribution_id, created_at FROM group_send_state WHERE group_id = ?',
      ),
      devices: db.prepare(
        'SELECT service_id, device_id, registration_id FROM group_send_devices WHERE group_id = ? ORDER BY service_id, device_id',
      ),
      insert: db.prepare(
        'INSERT INTO group_send_state (group_id, distribution_id, created_at) VALUES (?, ?, ?)',
      ),
      touch: db.prepare('UPDATE group_send_state SET created_at = ? WHERE group_id = ?'),
      clearDevices: db.prepare('DELETE FROM group_send_devices WHERE group_id = ?'),
      addDevice: db.prepare(
        `INSERT INTO group_send_devices (group_id, service_id, device_id, registration_id) VALUES (?, ?, ?, ?)
         ON CONFLICT DO UPDATE SET registration_id = excluded.registration_id`,
      ),
      dropDevice: db.prepare(
        'DELETE FROM group_send_devices WHERE group_id = ? AND service_id = ? AND device_id = ?',
      ),
      deleteSenderKey: db.prepare(
        'DELETE FROM sender_keys WHERE address = ? AND distribution_id = ?',
      ),
    };
  }

  get(groupId: string): GroupSendState | undefined {
    const row = this.s.get.get(groupId) as
      { distribution_id: string; created_at: number } | undefined;
    if (!row) return undefined;
    const devices = (
      this.s.devices.all(groupId) as Array<{
        service_id: string;
        device_id: number;
        registration_id: number;
      }>
    ).map((d) => ({
      serviceId: d.service_id,
      deviceId: d.device_id,
      registrationId: d.registration_id,
    }));
    return { groupId, distributionId: row.distribution_id, createdAt: row.created_at, devices };
  }

  /** The group's state, made with `distributionId` when there is none yet. */
  getOrCreate(groupId: string, distributionId: string): GroupSendState {
    const existing = this.get(groupId);
    if (existing) return existing;
    this.s.insert.run(groupId, distributionId, this.now());
    return { groupId, distributionId, createdAt: this.now(), devices: [] };
  }

  /**
   * A new sender key (Desktop's reset): the same distribution id, no device has the new key's SKDM,
   * and our own sender key record (`ourAddress` = `<aci>.<device>`) is deleted so that the next
   * SKDM makes a new one.
   */
  reset(groupId: string, ourAddress: string): GroupSendState {
    const state = this.get(groupId);
    if (!state) throw new Error(`no sender-key state for group ${groupId}`);
    const at = this.now();
    this.db.transaction(() => {
      this.s.touch.run(at, groupId);
      this.s.clearDevices.run(groupId);
      this.s.deleteSenderKey.run(ourAddress, state.distributionId);
    })();
    return { ...state, createdAt: at, devices: [] };
  }

  addDevices(groupId: string, devices: GroupSendDevice[]): void {
    this.db.transaction(() => {
      for (const d of devices)
        this.s.addDevice.run(groupId, d.serviceId, d.deviceId, d.registrationId);
    })();
  }

  /** Devices that must get the SKDM again (a 410 named them, or a 409 called them extra). */
  dropDevices(groupId: string, devices: Array<{ serviceId: string; deviceId: number }>): void {
    this.db.transaction(() => {
      for (const d of devices) this.s.dropDevice.run(groupId, d.serviceId, d.deviceId);
    })();
  }
}
