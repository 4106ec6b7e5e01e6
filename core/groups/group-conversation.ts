/**
 * A group as RichMessages sends to it (issue 16): every kind RichMessages builds (text with quote,
 * mentions and styles, reactions, edits, deletes for everyone, typing) goes to the group's members
 * through the GroupSender, its DataMessage carrying `groupV2{masterKey, revision}` (typing: the
 * group's id), then one sync transcript to our own devices (no destination, one
 * `unidentifiedStatus` per member it reached).
 */
import { ContentHint } from '@signalapp/libsignal-client';
import type { Logger } from '../log';
import type { GroupRecipientResult, SendResult } from '../types';
import type { signalservice } from '../../proto';
import { sentTranscript } from '../messaging/compose';
import { RichMessages, richStorePort, type RichSender, type UploaderPort } from '../messaging/rich';
import type { SignalStore } from '../store';
import type { SendOptions, Sender } from '../messaging/sender';
import type { GroupSender } from './group-sender';
import type { GroupRecord } from './types';

/**
 * RichMessages for one group: every kind sent through its GroupConversation, addressed (sent log,
 * results) as `group:<id>`, with the group's own timer.
 */
export function groupRichMessages(opts: {
  group: GroupRecord;
  session: { groupSender: Pick<GroupSender, 'send'>; sender: Sender; uploads?: UploaderPort };
  store: SignalStore;
  self: { aci: string; profileKey: Uint8Array | null };
  now: () => number;
  logger: Logger;
}): { rich: RichMessages; target: string } {
  const conversation = new GroupConversation({
    group: opts.group,
    groupSender: opts.session.groupSender,
    sender: opts.session.sender,
    self: { aci: opts.self.aci },
    logger: opts.logger,
  });
  const rich = new RichMessages({
    sender: conversation,
    self: opts.self,
    uploader: opts.session.uploads,
    now: opts.now,
    store: richStorePort(opts.store, opts.group.timerSeconds),
  });
  return { rich, target: conversation.target };
}

export class GroupConversation implements RichSender {
  constructor(
    private readonly opts: {
      group: GroupRecord;
      groupSender: Pick<GroupSender, 'send'>;
      sender: Pick<Sender, 'nextTimestamp' | 'sendContent'>;
      self: { aci: string };
      logger: Logger;
    },
  ) {}

  /** What RichMessages addresses this conversation as: the sent log and results name it so. */
  get target(): string {
    return `group:${this.opts.group.id}`;
  }

  nextTimestamp(): number {
    return this.opts.sender.nextTimestamp();
  }

  private get context(): signalservice.IGroupContextV2 {
    return { masterKey: this.opts.group.masterKey, revision: this.opts.group.revision };
  }

  async sendWithTranscript(
    _to: string,
    content:
      { dataMessage: signalservice.IDataMessage } | { editMessage: signalservice.IEditMessage },
    timestamp: number,
    options: { urgent: boolean },
  ): Promise<SendResult> {
    const grouped: typeof content =
      'dataMessage' in content
        ? { dataMessage: { ...content.dataMessage, groupV2: this.context } }
        : {
            editMessage: {
              ...content.editMessage,
              dataMessage: { ...content.editMessage.dataMessage, groupV2: this.context },
            },
          };
    const result = await this.deliver(grouped, timestamp, {
      urgent: options.urgent,
      hint: ContentHint.Resendable,
    });
    const reached = (result.recipients ?? []).filter((r) => !r.error);
    try {
      await this.opts.sender.sendContent(
        this.opts.self.aci,
        sentTranscript({
          timestamp,
          message: 'editMessage' in grouped ? grouped : grouped.dataMessage,
          group: reached.map((r) => ({ serviceId: r.serviceId, unidentified: r.sealed })),
        }),
        timestamp,
        { urgent: false, sealed: false },
      );
    } catch (e) {
      this.opts.logger.warn('group send: sync transcript failed', e);
    }
    return result;
  }

  /** Typing (the only plain Content RichMessages sends to a conversation): with the group's id. */
  async sendContent(
    _to: string,
    content: signalservice.IContent,
    timestamp: number,
    options: SendOptions,
  ): Promise<SendResult> {
    const typing = content.typingMessage
      ? {
          ...content,
          typingMessage: {
            ...content.typingMessage,
            groupId: new Uint8Array(Buffer.from(this.opts.group.id, 'base64')),
          },
        }
      : content;
    return this.deliver(typing, timestamp, {
      urgent: options.urgent,
      ...(options.online ? { online: true } : {}),
      hint: content.typingMessage ? ContentHint.Implicit : ContentHint.Resendable,
      log: options.log !== false,
    });
  }

  private async deliver(
    content: signalservice.IContent,
    timestamp: number,
    opts: { urgent: boolean; online?: boolean; hint: ContentHint; log?: boolean },
  ): Promise<SendResult> {
    const { results, errors } = await this.opts.groupSender.send({
      group: this.opts.group,
      content,
      timestamp,
      ...opts,
    });
    const failed = results.filter((r) => r.error);
    if (results.length > 0 && failed.length === results.length) throw errors[0] ?? failure(failed);
    if (failed.length > 0)
      this.opts.logger.warn(
        `group send: ${failed.length} of ${results.length} member(s) did not get message ${timestamp}: ` +
          failed.map((r) => r.error?.code).join(', '),
      );
    return {
      timestamp,
      serviceId: this.target,
      devices: [],
      sealed: reached(results).length > 0 && reached(results).every((r) => r.sealed),
      recipients: results,
    };
  }
}

function reached(results: GroupRecipientResult[]): GroupRecipientResult[] {
  return results.filter((r) => !r.error);
}

function failure(failed: GroupRecipientResult[]): Error {
  return new Error(failed.map((r) => `${r.serviceId}: ${r.error?.message ?? 'failed'}`).join('; '));
}
