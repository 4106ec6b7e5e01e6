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
}

export function openDatabase(file: string, options: OpenOptions = {}): Db {
  const dir = path.dirname(file);
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const existed = fs.existsSync(file);
  if (!existed) {
    // Create the file with 0600 before SQLite opens it, so it is never readable by others.
    fs.closeSync(fs.openSync(file, 'wx', 0o600));
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
