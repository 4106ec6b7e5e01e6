/**
 * signal-out: sends msg.payload as a Signal message to msg.to (or the node's "To"): one recipient or
 * many. Per-recipient results go on msg.signal; any failure also reaches Catch nodes via done(err).
 */
import { InvalidInputError, SignalError } from '../core/errors';
import { accountOf, linkedClient, NO_ACCOUNT } from './lib/account';
import type { Node, NodeMessage, RED } from './lib/red';
import { recipientsOf, textOf, type SendOutcome } from './lib/msg';
import { errorFields, fail } from './lib/status';
import { serviceIdOf } from './lib/identity';

/** Recipients of one msg sent at the same time. */
const SEND_CONCURRENCY = 8;

interface OutConfig {
  id: string;
  name?: string;
  account?: string;
  to?: string;
}

export = function register(RED: RED): void {
  function SignalOutNode(this: Node, config: OutConfig) {
    RED.nodes.createNode(this, config);
    const node = this;
    const account = accountOf(RED, config.account);
    if (!account) {
      node.status({ fill: 'red', shape: 'ring', text: 'no account' });
      node.error(NO_ACCOUNT);
    } else account.register(node);

    node.on(
      'input',
      (msg: NodeMessage, send: (m: NodeMessage) => void, done: (err?: Error) => void) => {
        void (async () => {
          if (!account) return fail(node, new SignalError('NOT_LINKED', NO_ACCOUNT), msg, done);
          // A flow approves a changed safety number here, where it already names a contact and an
          // account, rather than through a node of its own or an input on signal-in: signal-in
          // only reports, and a property no received msg carries (signal-in never sets it) means
          // that a message from a contact cannot approve anything unless a flow copies it there.
          if (msg.approveIdentity !== undefined) {
            try {
              const serviceId = serviceIdOf(msg.approveIdentity, 'msg.approveIdentity');
              const approved = (await linkedClient(account)).approveIdentity(serviceId);
              msg.signal = { approved, serviceId };
              node.status({
                fill: 'green',
                shape: 'dot',
                text: approved ? 'approved' : 'nothing to approve',
              });
              send(msg);
              return done();
            } catch (e) {
              return fail(node, e, msg, done);
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
              msg.signal = { challenge: 'accepted' };
              node.status({ fill: 'green', shape: 'dot', text: 'challenge accepted' });
              send(msg);
              return done();
            } catch (e) {
              return fail(node, e, msg, done);
            }
          }
          let text: string;
          let recipients: string[];
          let client;
          try {
            // The msg is checked first: a bad msg is an error whatever the account's state.
            text = textOf(msg.payload);
            const opened = await account.client();
            recipients = recipientsOf(msg.to, config.to, opened.options.defaultRegion);
            client = await linkedClient(account);
          } catch (e) {
            return fail(node, e, msg, done);
          }
          // Several recipients go out a few at a time (each send waits for the server's answer; one
          // after another, 100 recipients would take 100 round trips); results stay in input order.
          const results: SendOutcome[] = new Array<SendOutcome>(recipients.length);
          const sendOne = async (to: string): Promise<SendOutcome> => {
            try {
              const r = await client.send(to, text);
              return { to, serviceId: r.serviceId, timestamp: r.timestamp, status: 'sent' };
            } catch (e) {
              return { to, status: 'failed', error: errorFields(e) };
            }
          };
          let next = 0;
          await Promise.all(
            Array.from({ length: Math.min(SEND_CONCURRENCY, recipients.length) }, async () => {
              while (next < recipients.length) {
                const i = next++;
                results[i] = await sendOne(recipients[i] as string);
              }
            }),
          );
          // Each recipient's send carries its own timestamp (results[i].timestamp); msg.signal.timestamp
          // is the first successful one in input order, the id to quote when there is one recipient.
          const timestamp = results.find((r) => r.status === 'sent')?.timestamp;
          msg.signal = { ...(timestamp !== undefined ? { timestamp } : {}), results };
          send(msg);
          const failed = results.filter((r) => r.status === 'failed');
          if (failed.length === 0) {
            node.status({ fill: 'green', shape: 'dot', text: `sent to ${results.length}` });
            return done();
          }
          const first = failed[0]?.error;
          // Node-RED hands a Catch node the error's code, stack and cause only: the typed fields
          // of the first failure (retryAfterSeconds, token, the recipient) ride on msg.error.cause,
          // and every recipient's on msg.signal.results[i].error.
          const err = new SignalError(
            (first?.code as SignalError['code']) ?? 'SERVER',
            failed.length === 1
              ? `Sending to ${failed[0]?.to} failed: ${first?.message}`
              : `Sending failed for ${failed.length} of ${results.length} recipients (first: ${failed[0]?.to}: ${first?.message})`,
            { cause: { to: failed[0]?.to, ...first } },
          );
          fail(node, err, msg, done);
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
