/**
 * Decrypting a group's state (the group server's `Group` proto) with the group's secret params:
 * members' ACIs and profile keys, pending members, the title and timer blobs (GroupAttributeBlob),
 * the revision. Pure: no I/O, no store. A member whose ciphertext does not decrypt is left out and
 * counted, never guessed.
 */
import { Aci, ServiceId } from '@signalapp/libsignal-client';
import {
  ClientZkGroupCipher,
  GroupMasterKey,
  GroupSecretParams,
  ProfileKeyCiphertext,
  UuidCiphertext,
} from '@signalapp/libsignal-client/dist/zkgroup/index.js';
import { InvalidInputError } from '../errors';
import { GroupAttributeBlob, GroupMemberRole, type signalservice } from '../../proto';
import type { GroupMember, GroupRecord } from './types';

export interface GroupKeys {
  id: string;
  masterKey: Uint8Array;
  secretParams: GroupSecretParams;
  /** Serialized GroupPublicParams (the group server's auth username, hex). */
  publicParams: Uint8Array;
}

/** The group's id and params from its 32-byte master key (InvalidInputError when it is not one). */
export function groupKeys(masterKey: Uint8Array): GroupKeys {
  let secretParams: GroupSecretParams;
  try {
    secretParams = GroupSecretParams.deriveFromMasterKey(
      new GroupMasterKey(new Uint8Array(masterKey) as Uint8Array<ArrayBuffer>),
    );
  } catch (e) {
    throw new InvalidInputError('A group master key must be 32 bytes', { cause: e });
  }
  const pub = secretParams.getPublicParams();
  return {
    id: Buffer.from(pub.getGroupIdentifier().serialize()).toString('base64'),
    masterKey: new Uint8Array(masterKey),
    secretParams,
    publicParams: pub.serialize(),
  };
}

/** Whether `id` has the form of a group id: base64 (with padding) of 32 bytes. */
export function isGroupId(id: unknown): id is string {
  if (typeof id !== 'string' || id.length !== 44) return false;
  const bytes = Buffer.from(id, 'base64');
  return bytes.length === 32 && bytes.toString('base64') === id;
}

const asBytes = (b: Uint8Array) => new Uint8Array(b) as Uint8Array<ArrayBuffer>;

function blobOf(cipher: ClientZkGroupCipher, bytes: Uint8Array | null | undefined) {
  if (!bytes || bytes.length === 0) return null;
  try {
    return GroupAttributeBlob.decode(cipher.decryptBlob(asBytes(bytes)));
  } catch {
    return null;
  }
}

export type DecryptedGroup = Omit<GroupRecord, 'endorsements' | 'fetchedAt'> & {
  /** Members and pending members left out because they did not decrypt. */
  undecryptable: number;
};

export function decryptGroup(keys: GroupKeys, group: signalservice.IGroup): DecryptedGroup {
  const cipher = new ClientZkGroupCipher(keys.secretParams);
  let undecryptable = 0;
  const members: GroupMember[] = [];
  for (const m of group.members ?? []) {
    try {
      const sid = cipher.decryptServiceId(
        new UuidCiphertext(asBytes(m.userId ?? new Uint8Array())),
      );
      if (!(sid instanceof Aci)) throw new Error('a member is not an ACI');
      const member: GroupMember = {
        aci: sid.getRawUuid().toLowerCase(),
        role: m.role === GroupMemberRole.ADMINISTRATOR ? 'administrator' : 'member',
      };
      if (m.profileKey && m.profileKey.length > 0) {
        try {
          const key = cipher.decryptProfileKey(
            new ProfileKeyCiphertext(asBytes(m.profileKey)),
            sid,
          );
          member.profileKey = key.serialize();
        } catch {
          // The member stays, without a profile key (sealed sender falls back for them).
        }
      }
      members.push(member);
    } catch {
      undecryptable++;
    }
  }
  const pendingMembers: string[] = [];
  for (const p of group.membersPendingProfileKey ?? []) {
    const userId = p.member?.userId;
    if (!userId || userId.length === 0) continue;
    try {
      const sid: ServiceId = cipher.decryptServiceId(new UuidCiphertext(asBytes(userId)));
      pendingMembers.push(
        sid instanceof Aci ? sid.getRawUuid().toLowerCase() : sid.getServiceIdString(),
      );
    } catch {
      undecryptable++;
    }
  }
  const title = blobOf(cipher, group.title);
  const timer = blobOf(cipher, group.disappearingMessagesTimer);
  return {
    id: keys.id,
    masterKey: keys.masterKey,
    revision: group.version ?? 0,
    title: title?.content === 'title' ? (title.title ?? '') : '',
    timerSeconds:
      timer?.content === 'disappearingMessagesDuration'
        ? (timer.disappearingMessagesDuration ?? 0)
        : 0,
    members,
    pendingMembers,
    undecryptable,
  };
}
