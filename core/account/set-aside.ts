/**
 * Setting aside the file of an account that can no longer be used (its credentials are dead, or it
 * belongs to another server): renamed to `<file>.unlinked-<time>`, still 0600, kept for its
 * contacts and logs, so that a new account can be linked or registered in its place.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from '../log';

/** Renames a closed account file (and any WAL side files); resolves with the new name. */
export function setAsideAccountFile(file: string, now: number, logger: Logger): string {
  const aside = `${file}.unlinked-${new Date(now).toISOString().replace(/[:.]/g, '-')}`;
  // Closing checkpointed the WAL into the file; any leftover side file goes along with it.
  fs.renameSync(file, aside);
  for (const side of ['-wal', '-shm'])
    if (fs.existsSync(file + side)) fs.renameSync(file + side, aside + side);
  logger.info(`account set aside as ${path.basename(aside)}; ready to link or register`);
  return aside;
}
