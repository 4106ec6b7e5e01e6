/** The groups table (migration v8): group state as core/groups decrypted it. Only core/store runs SQL. */
import type { Db } from './database';

/** A stored group; the same shape as core/groups' GroupRecord (which store/ may not import). */
export interface StoredGroup {
  id: string;
  masterKey: Uint8Array;
  revision: number;
  title: string;
  timerSeconds: number;
  members: Array<{ aci: string; profileKey?: Uint8Array; role: 'member' | 'administrator' }>;
  pendingMembers: string[];
  endorsements?: { response: Uint8Array; expiration: number };
  fetchedAt: number;
}

interface GroupRow {
  id: string;
  master_key: Buffer;
  revision: number;
  title: string;
  timer_seconds: number;
  members: string;
  pending_members: string;
  endorsements: Buffer | null;
  endorsements_expiration: number | null;
  fetched_at: number;
}

interface MemberJson {
  aci: string;
  profileKey?: string;
  role: 'member' | 'administrator';
}

function fromRow(r: GroupRow): StoredGroup {
  const members = (JSON.parse(r.members) as MemberJson[]).map((m) => ({
    aci: m.aci,
    ...(m.profileKey ? { profileKey: new Uint8Array(Buffer.from(m.profileKey, 'base64')) } : {}),
    role: m.role,
  }));
  return {
    id: r.id,
    masterKey: new Uint8Array(r.master_key),
    revision: r.revision,
    title: r.title,
    timerSeconds: r.timer_seconds,
    members,
    pendingMembers: JSON.parse(r.pending_members) as string[],
    ...(r.endorsements && r.endorsements_expiration !== null
      ? {
          endorsements: {
            response: new Uint8Array(r.endorsements),
            expiration: r.endorsements_expiration,
          },
        }
      : {}),
    fetchedAt: r.fetched_at,
  };
}

export class GroupsTable {
  private readonly s;

  constructor(db: Db) {
    this.s = {
      get: db.prepare('SELECT * FROM groups WHERE id = ?'),
      summary: db.prepare('SELECT title, revision FROM groups WHERE id = ?'),
      all: db.prepare('SELECT * FROM groups ORDER BY title COLLATE NOCASE, id'),
      save: db.prepare(
        `INSERT INTO groups (id, master_key, revision, title, timer_seconds, members, pending_members,
           endorsements, endorsements_expiration, fetched_at)
         VALUES (@id, @masterKey, @revision, @title, @timerSeconds, @members, @pendingMembers,
           @endorsements, @endorsementsExpiration, @fetchedAt)
         ON CONFLICT (id) DO UPDATE SET master_key = excluded.master_key, revision = excluded.revision,
           title = excluded.title, timer_seconds = excluded.timer_seconds, members = excluded.members,
           pending_members = excluded.pending_members, endorsements = excluded.endorsements,
           endorsements_expiration = excluded.endorsements_expiration, fetched_at = excluded.fetched_at`,
      ),
      delete: db.prepare('DELETE FROM groups WHERE id = ?'),
    };
  }

  get(id: string): StoredGroup | undefined {
    const r = this.s.get.get(id) as GroupRow | undefined;
    return r ? fromRow(r) : undefined;
  }

  /** A group's title and revision alone (the receive path's read: no members parsed). */
  summary(id: string): { title: string; revision: number } | undefined {
    return this.s.summary.get(id) as { title: string; revision: number } | undefined;
  }

  /** Every stored group, by title. */
  all(): StoredGroup[] {
    return (this.s.all.all() as GroupRow[]).map(fromRow);
  }

  /** Saves (inserts or replaces) a group's state. */
  save(g: StoredGroup): void {
    const members: MemberJson[] = g.members.map((m) => ({
      aci: m.aci,
      ...(m.profileKey ? { profileKey: Buffer.from(m.profileKey).toString('base64') } : {}),
      role: m.role,
    }));
    this.s.save.run({
      id: g.id,
      masterKey: Buffer.from(g.masterKey),
      revision: g.revision,
      title: g.title,
      timerSeconds: g.timerSeconds,
      members: JSON.stringify(members),
      pendingMembers: JSON.stringify(g.pendingMembers),
      endorsements: g.endorsements ? Buffer.from(g.endorsements.response) : null,
      endorsementsExpiration: g.endorsements ? g.endorsements.expiration : null,
      fetchedAt: g.fetchedAt,
    });
  }

  /** Forgets a group (we are no longer in it). True if there was one. */
  delete(id: string): boolean {
    return this.s.delete.run(id).changes === 1;
  }
}
