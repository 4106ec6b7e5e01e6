/**
 * Delivery receipts (the second tick on the sender's phone). Signal's apps answer every data message
 * (and edit) they show with `Content{receiptMessage{type: DELIVERY, timestamp: [sent timestamps]}}`
 * to its sender, batched: Signal-Desktop collects them for half a second, at most 100 per batch. So
 * does this queue, per sender, and it runs apart from the receive path: adding is synchronous and
 * never waits; the sends happen later, a few at a time, and a failure is logged, never thrown.
 * Receipts are best effort in Signal (nothing resends a lost one), so close() drops what is pending.
 */
import type { Logger } from '../log';

/**
 * The most receipt messages waiting for a send slot. Sends end (each request has its timeout), but
 * while the network stalls a busy account would pile them up: past this the oldest are dropped.
 */
const MAX_WAITING = 256;

export interface DeliveryReceiptOptions {
  /** Sends one receipt message to `to` (a bare ACI) naming these sent timestamps. */
  send: (to: string, timestamps: number[]) => Promise<void>;
  logger: Logger;
  /** How long the first timestamp of a batch waits for others (default 1000 ms). */
  windowMs?: number;
  /** The most timestamps in one receipt message (default 100, as Signal-Desktop's batcher). */
  maxPerMessage?: number;
  /** How many receipt messages may be on the network at once (default 4). */
  concurrency?: number;
}

export class DeliveryReceipts {
  /** Per sender, the timestamps not yet handed to a send, in arrival order (no repeats). */
  private pending = new Map<string, Set<number>>();
  /** Receipt messages waiting for a free send slot. */
  private readonly ready: Array<{ to: string; timestamps: number[] }> = [];
  private timer: NodeJS.Timeout | null = null;
  private sending = 0;
  private closed = false;
  private readonly windowMs: number;
  private readonly max: number;
  private readonly concurrency: number;
  /** Receipt messages sent, and failed (tests and observability). */
  sent = 0;
  failed = 0;

  constructor(private readonly opts: DeliveryReceiptOptions) {
    this.windowMs = opts.windowMs ?? 1000;
    this.max = Math.max(1, opts.maxPerMessage ?? 100);
    this.concurrency = Math.max(1, opts.concurrency ?? 4);
  }

  /** Queues a receipt for the message `to` sent at `timestamp`. Never blocks, never throws. */
  add(to: string, timestamp: number): void {
    if (this.closed) return;
    let set = this.pending.get(to);
    if (!set) {
      set = new Set();
      this.pending.set(to, set);
    }
    set.add(timestamp);
    if (set.size >= this.max) {
      // A full batch goes at once: the list stays bounded, however long the burst.
      this.pending.delete(to);
      this.enqueue(to, [...set]);
    }
    if (this.pending.size > 0 && !this.timer) {
      this.timer = setTimeout(() => {
        this.timer = null;
        this.flush();
      }, this.windowMs);
      // A pending receipt must not keep the process alive.
      this.timer.unref();
    }
  }

  /** Sends everything pending now (the server's queue is drained: no more will come soon). */
  flush(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    if (this.closed) return;
    const batches = this.pending;
    this.pending = new Map();
    for (const [to, set] of batches) this.enqueue(to, [...set]);
  }

  /** Drops what is pending and stops sending; sends already on the network end by themselves. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const dropped = [...this.pending.values()].reduce((n, s) => n + s.size, 0) + this.ready.length;
    this.pending.clear();
    this.ready.length = 0;
    if (dropped > 0) this.opts.logger.debug(`receipts: dropped ${dropped} pending on close`);
  }

  /** Timestamps waiting (tests). */
  get pendingCount(): number {
    let n = 0;
    for (const s of this.pending.values()) n += s.size;
    for (const r of this.ready) n += r.timestamps.length;
    return n;
  }

  private enqueue(to: string, timestamps: number[]): void {
    this.ready.push({ to, timestamps });
    if (this.ready.length > MAX_WAITING) {
      const dropped = this.ready.shift();
      this.failed++;
      this.opts.logger.debug(
        `receipts: too many waiting; dropped a receipt to ${dropped?.to} (${dropped?.timestamps.length} message(s))`,
      );
    }
    this.pump();
  }

  private pump(): void {
    while (!this.closed && this.sending < this.concurrency) {
      const next = this.ready.shift();
      if (!next) return;
      this.sending++;
      // Called on a later turn, so a send that throws synchronously is caught like a rejection.
      void Promise.resolve()
        .then(() => this.opts.send(next.to, next.timestamps))
        .then(
          () => {
            this.sent++;
          },
          (e: unknown) => {
            this.failed++;
            // After close() a failure is the socket going away: expected, so only at debug level.
            const line = `receipts: could not send a delivery receipt to ${next.to} (${next.timestamps.length} message(s))`;
            try {
              if (this.closed) this.opts.logger.debug(line, e);
              else this.opts.logger.warn(line, e);
            } catch {
              // A logger that throws must not become an unhandled rejection.
            }
          },
        )
        .finally(() => {
          this.sending--;
          this.pump();
        });
    }
  }
}
