import assert from 'node:assert/strict';
import { DeliveryReceipts } from '../../../core/messaging/receipts';
import { captureLogger } from '../../integration/helpers';

const tick = () => new Promise((r) => setImmediate(r));

describe('messaging: delivery receipt batching', () => {
  it('collects timestamps per sender within the window: one receipt message each, repeats once', async () => {
    const sent: Array<[string, number[]]> = [];
    const r = new DeliveryReceipts({
      send: async (to, ts) => void sent.push([to, ts]),
      logger: captureLogger(),
      windowMs: 30,
    });
    r.add('a', 1);
    r.add('b', 5);
    r.add('a', 2);
    r.add('a', 2);
    await tick();
    assert.deepEqual(sent, [], 'nothing before the window ends');
    await new Promise((res) => setTimeout(res, 60));
    assert.deepEqual(sent.sort(), [
      ['a', [1, 2]],
      ['b', [5]],
    ]);
    assert.equal(r.sent, 2);
    assert.equal(r.pendingCount, 0);
  });

  it('flush() sends at once and clears the timer; a full batch goes without waiting', async () => {
    const sent: Array<[string, number[]]> = [];
    const r = new DeliveryReceipts({
      send: async (to, ts) => void sent.push([to, ts]),
      logger: captureLogger(),
      windowMs: 60_000,
      maxPerMessage: 3,
    });
    for (let t = 1; t <= 7; t++) r.add('a', t);
    await tick();
    assert.deepEqual(sent, [
      ['a', [1, 2, 3]],
      ['a', [4, 5, 6]],
    ]);
    r.flush();
    await tick();
    assert.deepEqual(sent.at(-1), ['a', [7]]);
    assert.equal((r as unknown as { timer: unknown }).timer, null, 'no timer left');
  });

  it('a failed send is logged, never thrown or unhandled; a send that throws synchronously too', async () => {
    const lines: string[] = [];
    let calls = 0;
    const r = new DeliveryReceipts({
      send: (to) => {
        calls++;
        if (to === 'sync') throw new Error('boom at once');
        return Promise.reject(new Error('network down'));
      },
      logger: captureLogger(lines),
      windowMs: 10,
    });
    r.add('async', 1);
    r.add('sync', 2);
    r.flush();
    await tick();
    await tick();
    assert.equal(calls, 2);
    assert.equal(r.failed, 2);
    assert.equal(lines.filter((l) => l.startsWith('warn receipts: could not send')).length, 2);
  });

  it('at most `concurrency` sends at once; the rest wait their turn, none lost', async () => {
    let running = 0;
    let peak = 0;
    const release: Array<() => void> = [];
    const r = new DeliveryReceipts({
      send: () => {
        running++;
        peak = Math.max(peak, running);
        return new Promise<void>((res) =>
          release.push(() => {
            running--;
            res();
          }),
        );
      },
      logger: captureLogger(),
      concurrency: 2,
    });
    for (const to of ['a', 'b', 'c', 'd', 'e']) r.add(to, 1);
    r.flush();
    await tick();
    assert.equal(running, 2);
    while (release.length) {
      release.shift()?.();
      await tick();
      await tick();
    }
    assert.equal(peak, 2);
    assert.equal(r.sent, 5);
  });

  it('close() drops what is pending and leaves no timer; a send failing after it logs at debug', async () => {
    const lines: string[] = [];
    let fail!: (e: Error) => void;
    const sent: string[] = [];
    const r = new DeliveryReceipts({
      send: (to) => {
        sent.push(to);
        return new Promise<void>((_, rej) => (fail = rej));
      },
      logger: captureLogger(lines),
      windowMs: 20,
    });
    r.add('a', 1);
    r.flush();
    await tick();
    r.add('b', 2);
    r.close();
    assert.equal((r as unknown as { timer: unknown }).timer, null);
    fail(new Error('socket closed'));
    await new Promise((res) => setTimeout(res, 40));
    assert.deepEqual(sent, ['a'], "b's receipt was dropped");
    r.add('c', 3);
    r.flush();
    await tick();
    assert.deepEqual(sent, ['a'], 'nothing after close');
    assert.ok(
      lines.some((l) => l.startsWith('debug receipts: could not send')),
      lines.join('\n'),
    );
    assert.ok(!lines.some((l) => l.startsWith('warn')), lines.join('\n'));
  });
});
