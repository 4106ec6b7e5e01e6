/**
 * signal-lookup: which of these phone numbers are on Signal, and under which ids.
 */
import { CdsiUnavailableError, SignalError } from '../core/errors';
import { accountOf, linkedClient } from './lib/account';
import { lookupSummary, numbersOf } from './lib/msg';
import type { Node, NodeMessage, RED } from './lib/red';
import { mergeSignal } from './lib/signal-prop';
import { fail, noAccountStatus } from './lib/status';

/**
 * A lookup answers all its numbers or fails whole (the engine's choice: on a custom server a number
 * missing from the contacts fails the lookup). The error must name the numbers that could not be
 * resolved, and say that the others were not answered either, so the flow knows what to drop.
 */
function unresolvedNamed(e: unknown, payload: unknown): unknown {
  if (!(e instanceof CdsiUnavailableError) || e.numbers.length === 0) return e;
  const total = Array.isArray(payload) ? payload.length : 1;
  const unnamed = e.numbers.filter((n) => !e.message.includes(n));
  const others = total - e.numbers.length;
  if (unnamed.length === 0 && others <= 0) return e;
  const message =
    (unnamed.length > 0 ? `Could not resolve ${e.numbers.join(', ')}: ${e.message}` : e.message) +
    (others > 0
      ? ` (the lookup answers all its numbers or none: look the other ${others} up without ${e.numbers.length === 1 ? 'it' : 'them'})`
      : '');
  return new CdsiUnavailableError(e.numbers, message, { cause: e });
}

export = function register(RED: RED): void {
  function SignalLookupNode(this: Node, config: { id: string; name?: string; account?: string }) {
    RED.nodes.createNode(this, config);
    const node = this;
    const account = accountOf(RED, config.account);
    if (!account) {
      node.status(noAccountStatus(RED._, node));
      node.error(RED._('signal-lookup.errors.noAccount'));
    } else account.register(node);

    node.on(
      'input',
      (msg: NodeMessage, send: (m: NodeMessage) => void, done: (err?: Error) => void) => {
        void (async () => {
          try {
            if (!account)
              throw new SignalError('NOT_LINKED', RED._('signal-lookup.errors.noAccount'));
            const { numbers, single } = numbersOf(msg.payload);
            const client = await linkedClient(account);
            const results = await client.lookup(numbers);
            const strip = results.map(({ number, aci, pni, registered }) => ({
              number,
              aci,
              pni,
              registered,
            }));
            msg.payload = single ? strip[0] : strip;
            mergeSignal(msg, { lookup: lookupSummary(results) });
            send(msg);
            node.status({
              fill: 'green',
              shape: 'dot',
              text: RED._('signal-lookup.status.found', {
                registered: results.filter((r) => r.registered).length,
                total: results.length,
              }),
            });
            done();
          } catch (e) {
            fail(RED._, node, unresolvedNamed(e, msg.payload), msg, done);
          }
        })();
      },
    );
    node.on('close', (_removed: boolean, done: () => void) => {
      if (account) account.deregister(node, done);
      else done();
    });
  }
  RED.nodes.registerType('signal-lookup', SignalLookupNode);
};
