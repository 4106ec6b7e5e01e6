/**
 * One process may open the same registry file from several config nodes: operations on one path are
 * serialized process-wide (and each re-reads the file), so no instance overwrites another's change.
 * Two Node-RED processes sharing one file are not coordinated: give each its own file.
 */

const fileLocks = new Map<string, Promise<unknown>>();

/** Runs `fn` after every earlier operation on `file` in this process has settled. */
export function withFileLock<T>(file: string, fn: () => Promise<T>): Promise<T> {
  const prev = fileLocks.get(file) ?? Promise.resolve();
  const run = prev.then(fn, fn);
  const tail = run.catch(() => undefined);
  fileLocks.set(file, tail);
  void tail.then(() => {
    // Drop the entry once idle, so a long-running process does not keep every path it ever saw.
    if (fileLocks.get(file) === tail) fileLocks.delete(file);
  });
  return run;
}
