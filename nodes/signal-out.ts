/**
 * signal-out: sends msg.payload as a Signal message to msg.to (or the node's "To"): one recipient or
 * many, with attachments (msg.attachments, a Buffer payload: lib/attachments.ts); or, instead, the one kind msg names (a reaction, a receipt, typing, an edit, a delete:
 * lib/rich.ts). Per-recipient results are merged into msg.signal; any failure also reaches Catch nodes via
 * done(err). The sending itself is lib/send.ts; this file maps msg to it and back.
 */
import { InvalidInputError, SignalError } from '../core/errors';
import { accountOf, linkedClient } from './lib/account';
import { resolveAttachments } from './lib/attachments';
import { serviceIdOf } from './lib/identity';
import { recipientsOf } from './lib/msg';
import type { Node, NodeMessage, RED } from './lib/red';
import { actionOf, sendAction, type Action } from './lib/rich';
import { sendFailure, sendResult, sendToAll } from './lib/send';
import { mergeSignal } from './lib/signal-prop';
import { fail, noAccountStatus } from './lib/status';

interface OutConfig {
  id: string;
  name?: string;
  account?: string;
  to?: string;
  /** "styled": markers in the text become Signal's text styles (lib/styles.ts); default plain. */
  textStyle?: 'plain' | 'styled';
}

/** The status key of a successful send of each kind (signal-out.status.*). */
const SENT: Record<Action['kind'], string> = {
  message: 'sent',
  reaction: 'reacted',
  receipt: 'receiptSent',
  typing: 'typingSent',
  edit: 'edited',
  delete: 'deleted',
};

export = function register(RED: RED): void {
  function SignalOutNode(this: Node, config: OutConfig) {
    RED.nodes.createNode(this, config);
    const node = this;
    const account = accountOf(RED, config.account);
    if (!account) {
      node.status(noAccountStatus(RED._, node));
      node.error(RED._('signal-out.errors.noAccount'));
    } else account.register(node);
    // Relative attachment paths resolve as Node-RED's file nodes resolve theirs.
    const workDir = RED.settings.fileWorkingDirectory;
    const fileDir = typeof workDir === 'string' && workDir !== '' ? workDir : process.cwd();

    node.on(
      'input',
      (msg: NodeMessage, send: (m: NodeMessage) => void, done: (err?: Error) => void) => {
        void (async () => {
          if (!account)
            return fail(
              RED._,
              node,
              new SignalError('NOT_LINKED', RED._('signal-out.errors.noAccount')),
              msg,
              done,
            );
          // A flow approves a changed safety number here, where it already names a contact and an
          // account, rather than through a node of its own or an input on signal-in: signal-in
          // only reports, and a property no received msg carries (signal-in never sets it) means
          // that a message from a contact cannot approve anything unless a flow copies it there.
          if (msg.approveIdentity !== undefined) {
            try {
              const serviceId = serviceIdOf(msg.approveIdentity, 'msg.approveIdentity');
              const approved = (await linkedClient(account)).approveIdentity(serviceId);
              mergeSignal(msg, { approved, serviceId });
              node.status({
                fill: 'green',
                shape: 'dot',
                text: RED._(`signal-out.status.${approved ? 'approved' : 'nothingToApprove'}`),
              });
              send(msg);
              return done();
            } catch (e) {
              return fail(RED._, node, e, msg, done);
            }
          }
          // A flow answers a rate-limit challenge (HTTP 428) here: msg.challenge = {captcha, token?}
          // with the signalcaptcha:// link solved at Signal's captcha page; then it retries sends.
          if (msg.challenge !== undefined) {
            try {
              const c = msg.challenge as { captcha?: unknown; token?: unknown } | null;
              if (typeof c !== 'object' || c === null || Array.isArray(c))
                throw new InvalidInputError('msg.challenge must be an object {captcha, token?}');
              if (typeof c.captcha !== 'string')
                throw new InvalidInputError(
                  'msg.challenge.captcha must be the signalcaptcha:// text',
                );
              if (c.token !== undefined && typeof c.token !== 'string')
                throw new InvalidInputError('msg.challenge.token must be text');
              await (
                await linkedClient(account)
              ).submitChallenge({
                captcha: c.captcha,
                ...(c.token !== undefined ? { token: c.token } : {}),
              });
              mergeSignal(msg, { challenge: 'accepted' });
              node.status({
                fill: 'green',
                shape: 'dot',
                text: RED._('signal-out.status.challengeAccepted'),
              });
              send(msg);
              return done();
            } catch (e) {
              return fail(RED._, node, e, msg, done);
            }
          }
          let action: Action;
          let recipients: string[];
          let client;
          try {
            // The msg is checked first: a bad msg is an error whatever the account's state.
            action = actionOf(msg, config.textStyle === 'styled');
            if (action.kind === 'message' && action.attachments.length > 0)
              action.message.attachments = await resolveAttachments(action.attachments, fileDir);
            const opened = await account.client();
            recipients = recipientsOf(msg.to, config.to, opened.options.defaultRegion);
            client = await linkedClient(account);
          } catch (e) {
            return fail(RED._, node, e, msg, done);
          }
          const results = await sendToAll(recipients, sendAction(client, action));
          mergeSignal(msg, sendResult(results));
          send(msg);
          const err = sendFailure(results);
          if (err) return fail(RED._, node, err, msg, done);
          node.status({
            fill: 'green',
            shape: 'dot',
            text: RED._(`signal-out.status.${SENT[action.kind]}`, { count: results.length }),
          });
          done();
        })();
      },
    );

    node.on('close', (_removed: boolean, done: () => void) => {
      if (account) account.deregister(node, done);
      else done();
    });
  }
  RED.nodes.registerType('signal-out', SignalOutNode);
};
