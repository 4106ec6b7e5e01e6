/**
 * signal-lookup: which of these phone numbers are on Signal, and under which ids.
 */
import { SignalError } from '../core/errors';
import { accountOf, linkedClient, NO_ACCOUNT } from './lib/account';
import type { Node, NodeMessage, RED } from './lib/red';
import { numbersOf } from './lib/msg';
import { fail } from './lib/status';

export = function register(RED: RED): void {
  function SignalLookupNode(this: Node, config: { id: string; name?: string; account?: string }) {
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
          try {
            if (!account) throw new SignalError('NOT_LINKED', NO_ACCOUNT);
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
            const sources = [...new Set(results.map((r) => r.source))];
            msg.signal = {
              ...((msg.signal as object) ?? {}),
              lookup: { source: sources.length === 1 ? sources[0] : sources },
            };
            send(msg);
            node.status({
              fill: 'green',
              shape: 'dot',
              text: `${results.filter((r) => r.registered).length}/${results.length} on Signal`,
            });
            done();
          } catch (e) {
            fail(node, e, msg, done);
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
