/**
 * A linked client and several mock phones for group sends (issue 16): Alice's phone linked to the
 * client, her contacts as further phones, groups made by the mock (`createGroup`) and handed to the
 * client as GroupRecords through its `groups` port: members in the group state's order, their
 * profile keys from the phones, endorsements as the mock's group server issues them to Alice.
 */
import assert from 'node:assert/strict';
import type { SignalClient } from '../../core/client';
import type { GroupRecord, GroupStatePort } from '../../core/groups/types';
import { InvalidInputError } from '../../core/errors';
import { linkClient, startSandbox, type PrimaryDevice, type Sandbox } from './helpers';

export type MockGroup = Awaited<ReturnType<PrimaryDevice['createGroup']>>;

export interface GroupWorld {
  sandbox: Sandbox;
  alice: PrimaryDevice;
  /** Alice's contacts, each a phone of its own. */
  phones: PrimaryDevice[];
  client: SignalClient;
  /** What the client's `groups` port answers, by group id: tests put and replace records. */
  records: Map<string, GroupRecord>;
}

export function groupPort(records: Map<string, GroupRecord>): GroupStatePort {
  return {
    get: async (id) => {
      const r = records.get(id);
      if (!r) throw new InvalidInputError(`unknown group ${id}`);
      return r;
    },
  };
}

export async function startGroupWorld(phoneCount: number): Promise<GroupWorld> {
  const sandbox = await startSandbox();
  const phones: PrimaryDevice[] = [];
  for (let i = 0; i < phoneCount; i++)
    phones.push(await sandbox.createPrimary({ profileName: `Member ${i + 1}` }));
  const alice = await sandbox.createPrimary({ profileName: 'Alice', contacts: phones });
  const records = new Map<string, GroupRecord>();
  const { client } = await linkClient(sandbox, alice, { ports: { groups: groupPort(records) } });
  return { sandbox, alice, phones, client, records };
}

/**
 * The GroupRecord of a mock group as the group state would give it. `endorsements: false` leaves
 * them out (the combined access key is used then); `withoutProfileKey` members lack their key.
 */
export async function recordOf(
  world: GroupWorld,
  group: MockGroup,
  opts: { endorsements?: boolean; withoutProfileKey?: PrimaryDevice[] } = {},
): Promise<GroupRecord> {
  const everyone = [world.alice, ...world.phones];
  const byAci = new Map<string, PrimaryDevice>(everyone.map((p) => [p.device.aci, p]));
  // The server's copy holds the members as ciphertexts, in the order it endorses them.
  const serverGroup = (await world.sandbox.server.getGroup(
    group.publicParams.serialize() as never,
  )) as unknown as {
    state: { members: Array<{ userId: Uint8Array }> };
    getGroupSendEndorsementResponse(c: object): Uint8Array | null;
  };
  const members = serverGroup.state.members.map((m) => {
    const aci = group.decryptServiceId(new Uint8Array(m.userId)) as string;
    const phone = byAci.get(aci);
    assert.ok(phone, `member ${aci} is one of the world's phones`);
    const keyless = opts.withoutProfileKey?.includes(phone);
    return {
      aci,
      role: 'administrator' as const,
      ...(keyless ? {} : { profileKey: new Uint8Array(phone.profileKey.serialize()) }),
    };
  });
  let endorsements: GroupRecord['endorsements'];
  if (opts.endorsements !== false) {
    const ours = group.encryptServiceId(world.alice.device.aci);
    const response = serverGroup.getGroupSendEndorsementResponse({ serialize: () => ours });
    assert.ok(response, 'Alice is a member: the server endorses');
    const startOfDay = Math.floor(Date.now() / 86_400_000) * 86_400_000;
    endorsements = { response: new Uint8Array(response), expiration: startOfDay + 2 * 86_400_000 };
  }
  return {
    id: group.id,
    masterKey: new Uint8Array(group.masterKey),
    revision: group.revision,
    title: group.title,
    timerSeconds: 0,
    members,
    pendingMembers: [],
    ...(endorsements ? { endorsements } : {}),
    fetchedAt: Date.now(),
  };
}

/** A group Alice makes with `members` (she is in it), known to the client. */
export async function makeGroup(
  world: GroupWorld,
  members: PrimaryDevice[],
  opts: Parameters<typeof recordOf>[2] = {},
): Promise<{ group: MockGroup; record: GroupRecord; to: string }> {
  const group = await world.alice.createGroup({
    title: `Group ${world.records.size + 1}`,
    members: [world.alice, ...members],
  });
  const record = await recordOf(world, group, opts);
  world.records.set(record.id, record);
  return { group, record, to: `group:${record.id}` };
}
