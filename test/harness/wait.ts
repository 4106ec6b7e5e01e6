/** Waiting in tests: every wait is bounded and says what it was waiting for. */

/** Polls `cond` (sync or async) every `everyMs` until it holds; throws after `ms` naming `what`. */
export async function until(
  cond: () => boolean | Promise<boolean>,
  ms: number,
  what: string,
  everyMs = 10,
): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`${what}: not reached within ${ms} ms`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
