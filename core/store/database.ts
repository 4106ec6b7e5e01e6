/**
 * Opening an account database: one SQLite file per account, mode 0600 in a 0700 folder, WAL, a busy
 * timeout, and versioned migrations (`PRAGMA user_version`).
 *
 * synchronous=NORMAL: in WAL mode a committed transaction survives a crash of the process (it is in
 * the WAL before COMMIT returns); only an OS crash or power loss can lose the last commits. Exactly-once
 * delivery needs the former: the ACK follows the commit, and the server redelivers anything not ACKed.
 * FULL would add an fsync per received message for no gain against a process crash.
 */
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { SignalError } from '../errors';
import type { Logger } from '../log';
import { MIGRATIONS } from './migrations';

export type Db = Database.Database;

function tighten(file: string): void {
  for (const f of [file, `${file}-wal`, `${file}-shm`]) {
    try {
      fs.chmodSync(f, 0o600);
    } catch {
      // -wal/-shm may not exist yet
    }
  }
}

export interface OpenOptions {
  /** Run migrations only up to this version (tests of upgrading an older file). */
  targetVersion?: number;
  readonly?: boolean;
  /** Where the warning about a folder others can read goes (default: process.emitWarning). */
  logger?: Logger;
}

/** Folders already warned about: once per folder per process, not once per account or restart. */
const warnedFolders = new Set<string>();

/**
 * A folder we did not create belongs to the user (it may be Node-RED's user dir, shared with other
 * files): we never change its mode, but say once that others can read into it. The file itself is
 * always 0600, so only its name is exposed.
 */
function warnIfShared(dir: string, logger: Logger | undefined): void {
  let mode: number;
  try {
    mode = fs.statSync(dir).mode;
  } catch {
    return;
  }
  const resolved = path.resolve(dir);
  if ((mode & 0o077) === 0 || warnedFolders.has(resolved)) return;
  warnedFolders.add(resolved);
  const message = `The account database folder ${resolved} can be read by other users (mode ${(mode & 0o777).toString(8)}); the database file itself is 0600. Consider chmod 700 on the folder.`;
  if (logger) logger.warn(message);
  else process.emitWarning(message, { code: 'SIGFLOW_STORE_FOLDER' });
}

export function openDatabase(file: string, options: OpenOptions = {}): Db {
  const dir = path.dirname(file);
  // mkdirSync returns the first folder it created; undefined when the folder was already there.
  const created = fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (created === undefined) warnIfShared(dir, options.logger);
  const existed = fs.existsSync(file);
  if (!existed) {
    // Create the file with 0600 before SQLite opens it, so it is never readable by others.
    fs.closeSync(fs.openSync(file, 'wx', 0o600));
  } else if (!options.readonly) {
    // An existing file (copied in, restored from a backup, made by an older version) is tightened
    // before it is opened, not only after the migrations ran.
    tighten(file);
  }
  let db: Db;
  try {
    db = new Database(file, { readonly: options.readonly ?? false });
  } catch (e) {
    throw new SignalError('STORE', `Cannot open the account database ${file}`, { cause: e });
  }
  try {
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    db.pragma('busy_timeout = 5000');
    db.pragma('foreign_keys = ON');
    migrate(db, options.targetVersion ?? MIGRATIONS.length);
  } catch (e) {
    db.close();
    throw e instanceof SignalError
      ? e
      : new SignalError('STORE', `Cannot prepare the account database ${file}`, { cause: e });
  }
  tighten(file);
  return db;
}

export function schemaVersion(db: Db): number {
  return db.pragma('user_version', { simple: true }) as number;
}

export function migrate(db: Db, target = MIGRATIONS.length): void {
  const current = schemaVersion(db);
  if (current > MIGRATIONS.length) {
    throw new SignalError(
      'STORE',
      `The account database is at schema version ${current}, newer than this package knows (${MIGRATIONS.length}); upgrade the package`,
    );
  }
  for (let v = current; v < target; v++) {
    const step = MIGRATIONS[v];
    if (!step) break;
    db.transaction(() => {
      step(db);
      db.pragma(`user_version = ${v + 1}`);
    })();
  }
}
