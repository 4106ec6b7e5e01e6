/**
 * The group send token (`Group-Send-Token`, issue 16) a multi-recipient send to some members of a
 * group carries: from the endorsements the group server gave with the group's state, one per
 * member, combined for exactly the recipients, then made a full token bound to its expiration
 * (Signal-Desktop's groupSendEndorsements: validate the expiration, combine, toFullToken).
 */
import { Aci } from '@signalapp/libsignal-client';
import {
  GroupMasterKey,
  GroupSecretParams,
  GroupSendEndorsement,
  GroupSendEndorsementsResponse,
  ServerPublicParams,
} from '@signalapp/libsignal-client/dist/zkgroup/index.js';
import type { GroupRecord } from './types';

/** A token expiring sooner than this is not used (Desktop refreshes endorsements at 2 h or less). */
export const TOKEN_MARGIN_MS = 2 * 60 * 60 * 1000;

/**
 * The full token for `recipients` (bare ACIs, members of the group other than us), or null when the
 * group has no endorsements, they expire within TOKEN_MARGIN_MS, or they cannot be received (not
 * issued for this member list, or by another server): the caller then uses access keys.
 */
export function groupSendToken(opts: {
  group: GroupRecord;
  selfAci: string;
  recipients: readonly string[];
  serverPublicParams: Uint8Array;
  now: number;
}): Uint8Array | null {
  const e = opts.group.endorsements;
  if (!e || e.expiration - TOKEN_MARGIN_MS <= opts.now || opts.recipients.length === 0) return null;
  try {
    const { byAci, secret, expiration } = receivedEndorsements(opts, e);
    const chosen: GroupSendEndorsement[] = [];
    for (const r of opts.recipients) {
      const endorsement = byAci.get(r);
      if (!endorsement) return null;
      chosen.push(endorsement);
    }
    return GroupSendEndorsement.combine(chosen).toFullToken(secret, expiration).serialize();
  } catch {
    return null;
  }
}

interface Received {
  byAci: Map<string, GroupSendEndorsement>;
  secret: GroupSecretParams;
  expiration: Date;
}

/**
 * Receiving the endorsements verifies a proof per member: done once per group state and kept (a
 * few groups' worth), not again at every send and every 409/410 round of one.
 */
const received = new Map<string, Received>();
const RECEIVED_KEPT = 32;

function receivedEndorsements(
  opts: { group: GroupRecord; selfAci: string; serverPublicParams: Uint8Array; now: number },
  e: NonNullable<GroupRecord['endorsements']>,
): Received {
  const key = `${opts.group.id}:${opts.group.revision}:${e.expiration}:${opts.selfAci}:${Buffer.from(
    opts.serverPublicParams,
  ).toString('base64')}`;
  const kept = received.get(key);
  if (kept) return kept;
  const response = new GroupSendEndorsementsResponse(new Uint8Array(e.response));
  const secret = GroupSecretParams.deriveFromMasterKey(
    new GroupMasterKey(new Uint8Array(opts.group.masterKey)),
  );
  const members = opts.group.members.map((m) => Aci.parseFromServiceIdString(m.aci));
  const out = response.receiveWithServiceIds(
    members,
    Aci.parseFromServiceIdString(opts.selfAci),
    secret,
    new ServerPublicParams(new Uint8Array(opts.serverPublicParams)),
    new Date(opts.now),
  );
  const byAci = new Map<string, GroupSendEndorsement>();
  opts.group.members.forEach((m, i) => {
    const endorsement = out.endorsements[i];
    if (endorsement) byAci.set(m.aci, endorsement);
  });
  const value = { byAci, secret, expiration: response.getExpiration() };
  if (received.size >= RECEIVED_KEPT) received.delete(received.keys().next().value as string);
  received.set(key, value);
  return value;
}
