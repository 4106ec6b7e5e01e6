/**
 * The group-send benchmark (issue 16): one message to a group of GROUP_SIZE members (us and
 * GROUP_SIZE - 1 mock phones), sent with our sender key as one multi-recipient sealed-sender message
 * versus one sealed 1:1 message per member (the fallback), in messages per second and server
 * requests per message (every request our client makes on its chat sockets, the sync transcript
 * included). The first sender-key message (sessions from bundles, the SKDM to every member) is
 * reported on its own; the steady state excludes it. Every phone's queue is checked afterwards:
 * each message reached each member.
 */
import { SignalClient } from '../core/client';
import type { EnvironmentOptions } from '../core/config';
import type { GroupRecord } from '../core/groups/types';
import { PersistentChat } from '../core/net/persistent';
import { SignalStore } from '../core/store';
import type { Logger } from '../core/log';

const now = () => Number(process.hrtime.bigint()) / 1e6;

interface PeerLike {
  call<T = null>(command: object): Promise<T>;
}

export async function groupBench(opts: {
  peer: PeerLike;
  environment: EnvironmentOptions;
  dataFile: string;
  logger: Logger;
  size: number;
  messages: number;
  results: Record<string, unknown>;
}): Promise<void> {
  const { peer, results } = opts;
  const others = opts.size - 1;
  console.log(`group send: creating ${others} member phones…`);
  const members = await peer.call<string[]>({ cmd: 'members', prefix: 'member', count: others });
  const created = await peer.call<{ id: string; masterKey: string }>({
    cmd: 'group',
    owner: 'alice',
    members,
  });
  let requests = 0;
  let store: SignalStore | null = null;
  const override = new Map<string, GroupRecord>();
  const client = await SignalClient.open({
    dataFile: opts.dataFile,
    environment: opts.environment,
    logger: opts.logger,
    ports: {
      openStore: (file, o) => (store = SignalStore.open(file, o)),
      chat: (o) => {
        const chat = new PersistentChat(o);
        const request = chat.request.bind(chat);
        chat.request = (req) => {
          requests++;
          return request(req);
        };
        return chat;
      },
      groups: {
        get: async (id) => {
          const r = override.get(id) ?? (store ? store.groups.get(id) : undefined);
          if (!r) throw new Error(`group ${id} unknown`);
          return r;
        },
      },
    },
  });
  try {
    await client.connect();
    // The group's real state from the mock's group server (members, profile keys, endorsements).
    const record = await client
      .groupDirectory()
      .fetch(new Uint8Array(Buffer.from(created.masterKey, 'base64')));
    const to = `group:${record.id}`;
    const time = async (count: number, text: string) => {
      const r0 = requests;
      const t0 = now();
      for (let i = 0; i < count; i++) await client.send(to, { text: `${text} ${i}` });
      return { ms: now() - t0, requests: requests - r0 };
    };

    console.log(`group send: ${opts.messages} messages to ${opts.size} members with sender keys…`);
    const first = await time(1, 'first');
    const keyed = await time(opts.messages, 'sender key');
    const mrm = await peer.call<number>({ cmd: 'multi-recipient-count' });
    const keyedDelivered = await peer.call<number>({ cmd: 'queue-sizes', who: members });
    if (mrm !== opts.messages + 1 || keyedDelivered !== others * (opts.messages + 1))
      throw new Error(
        `sender-key phase: ${mrm} multi-recipient sends, ${keyedDelivered} deliveries`,
      );

    // The fallback: the members' profile keys as contacts (so each 1:1 send is sealed, as the
    // fallback's are), the group without endorsements or profile keys, so no member can take the
    // sender-key path.
    const s = store as SignalStore | null;
    if (!s) throw new Error('no store');
    s.transaction(() => {
      for (const m of record.members)
        if (m.profileKey)
          s.contacts.upsert({ aci: m.aci, profileKey: m.profileKey, source: 'sync' });
    });
    const { endorsements: _e, ...bare } = record;
    override.set(record.id, {
      ...bare,
      members: record.members.map(({ profileKey: _p, ...m }) => m),
    });
    console.log(`group send: ${opts.messages} messages to ${opts.size} members, 1:1 each…`);
    const fanOut = await time(opts.messages, 'fan-out');
    const fanDelivered = await peer.call<number>({ cmd: 'queue-sizes', who: members });
    if (fanDelivered !== others * opts.messages)
      throw new Error(`fan-out phase: ${fanDelivered} deliveries`);

    results.group_members = opts.size;
    results.group_first_message_requests = first.requests;
    results.group_first_message_ms = Math.round(first.ms);
    results.group_sender_key_msgs_per_s = round2(opts.messages / (keyed.ms / 1000));
    results.group_sender_key_requests_per_msg = round2(keyed.requests / opts.messages);
    results.group_fan_out_msgs_per_s = round2(opts.messages / (fanOut.ms / 1000));
    results.group_fan_out_requests_per_msg = round2(fanOut.requests / opts.messages);
    results.group_sender_key_speedup = round2(fanOut.ms / keyed.ms);
  } finally {
    await client.close();
  }
}

const round2 = (v: number) => Math.round(v * 100) / 100;
