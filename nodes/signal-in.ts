/**
 * signal-in: one msg per received item. msg.to is the sender, or `group:<id>` for a group's item, so
 * signal-in → function → signal-out answers in the same chat with no configuration.
 */
import { accountOf } from './lib/account';
import type { SignalClient } from '../core/client';
import os from 'node:os';
import path from 'node:path';
import type { AttachmentOptions, IncomingEvent } from '../core/types';
import type { Node, RED } from './lib/red';
import { chatFilterOf, passesChats, type ChatFilter } from './lib/chats';
import { messageFor, wantsReadReceipt, IN_TYPES, type InType } from './lib/msg';
import { noAccountStatus } from './lib/status';

interface InConfig {
  id: string;
  name?: string;
  account?: string;
  /** Comma-separated types to emit; messages only by default. */
  types?: string;
  /** Send a read receipt for each message this node emits (what Signal shows as "read"). */
  readReceipts?: boolean;
  /** Received attachments: `files` (save to a folder, default), `buffers`, or `metadata`. */
  attachments?: string;
  /** The folder for `files`; default `<userDir>/signal/attachments/<account id>/`. */
  attachmentsDir?: string;
  /** Which chats: `all` (default), `direct` (1:1 only), `groups` (groups only), `chosen`. */
  chats?: string;
  /** For `chosen`: group ids, separated by commas. */
  groups?: string;
  /** Size cap per attachment, MiB (default 100, Signal's own limit). */
  attachmentsMaxMiB?: number | string;
  /** The folder's quota, MiB (default 1024): the oldest files are pruned past it. */
  attachmentsQuotaMiB?: number | string;
}

const MIB = 1024 * 1024;

/** The engine's attachment options from the node's (the account's client applies the last set). */
function attachmentOptions(RED: RED, config: InConfig): AttachmentOptions {
  const mode =
    config.attachments === 'buffers' || config.attachments === 'metadata'
      ? config.attachments
      : 'files';
  const mib = (v: number | string | undefined, d: number) => {
    const n = Number(v);
    return Number.isFinite(n) && n > 0 ? Math.round(n * MIB) : d * MIB;
  };
  const userDir = RED.settings.userDir ?? path.join(os.homedir(), '.node-red');
  const dir =
    config.attachmentsDir?.trim() ||
    path.join(userDir, 'signal', 'attachments', String(config.account ?? 'default'));
  return {
    mode,
    dir,
    maxBytes: mib(config.attachmentsMaxMiB, 100),
    quotaBytes: mib(config.attachmentsQuotaMiB, 1024),
  };
}

/** Sends the read receipt for one emitted message; a failure is a warning, never a lost msg. */
async function markRead(node: Node, client: SignalClient, ev: IncomingEvent): Promise<void> {
  if (ev.type === 'identity-change') return;
  try {
    await client.markRead(ev.from.aci, [ev.timestamp]);
  } catch (e) {
    node.warn(`read receipt to ${ev.from.aci} failed: ${(e as Error).message}`);
  }
}

export = function register(RED: RED): void {
  function SignalInNode(this: Node, config: InConfig) {
    RED.nodes.createNode(this, config);
    const node = this;
    const wanted = new Set(
      (config.types ?? 'message')
        .split(',')
        .map((t) => t.trim())
        .filter((t): t is InType => (IN_TYPES as string[]).includes(t)),
    );
    if (wanted.size === 0) wanted.add('message');
    let chats: ChatFilter;
    try {
      chats = chatFilterOf(config.chats, config.groups);
    } catch (e) {
      // A node that would emit the wrong chats emits none: the settings are to be fixed.
      node.status({ fill: 'red', shape: 'ring', text: RED._('signal-in.status.badChats') });
      node.error((e as Error).message);
      node.on('close', (_r: boolean, done: () => void) => done());
      return;
    }
    const account = accountOf(RED, config.account);
    if (!account) {
      node.status(noAccountStatus(RED._, node));
      node.error(RED._('signal-in.errors.noAccount'));
      node.on('close', (_r: boolean, done: () => void) => done());
      return;
    }
    account.register(node);
    // Downloads happen in the engine before the message is emitted (the received log keeps the
    // message pending meanwhile): tell the account's client how, as this node is set.
    const attachments = attachmentOptions(RED, config);
    void account
      .client()
      .then((client) => client.setAttachments(attachments))
      .catch(() => undefined);
    const readReceipts = config.readReceipts === true;
    const onEvent = (ev: IncomingEvent) => {
      const { type, msg } = messageFor(ev);
      if (!wanted.has(type) || !passesChats(chats, ev)) return;
      node.send(msg);
      // After the emit, off the receive path: the receipt says the flow has the message.
      if (readReceipts) {
        void account
          .client()
          .then((client) => {
            if (wantsReadReceipt(ev, client.account?.aci)) return markRead(node, client, ev);
            return undefined;
          })
          .catch(() => undefined);
      }
    };
    account.events.on('event', onEvent);
    node.on('close', (_removed: boolean, done: () => void) => {
      account.events.off('event', onEvent);
      account.deregister(node, done);
    });
  }
  RED.nodes.registerType('signal-in', SignalInNode);
};
