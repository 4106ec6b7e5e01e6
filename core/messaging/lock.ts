/**
 * Serializes work per key (a remote service id). libsignal's encrypt and decrypt each read a session,
 * advance it and write it back: a send and a receive for the same peer running interleaved would lose
 * one of the two updates and break the ratchet. Work for different peers runs concurrently.
 */
export class KeyedLock {
  private readonly tails = new Map<string, Promise<void>>();

  async run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.tails.get(key) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((resolve) => (release = resolve));
    const tail = previous.then(() => mine);
    this.tails.set(key, tail);
    await previous;
    try {
      return await fn();
    } finally {
      release();
      // Forget the key once nobody is queued behind us, so the map does not grow with peers seen.
      if (this.tails.get(key) === tail) this.tails.delete(key);
    }
  }

  get size(): number {
    return this.tails.size;
  }
}
