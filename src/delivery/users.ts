/**
 * The users file as delivery sees it: who exists (and their mailbox id) and each user's quota, from the
 * `quota_bytes=` / `quota_messages=` extra fields (quota.ts). No password is ever looked at, so
 * `postern deliver` starts fast and a user who may not log in (blocked, no password) still gets mail, as with
 * the authenticator's lookup().
 *
 * The file is re-read when it changes (a stat before each lookup, as PasswdFileAuthenticator does), so
 * `postern user add` and edits apply at once. A file that cannot be read keeps the last good version; a
 * missing file means no users.
 */
import type { Stats } from 'node:fs';
import { stat } from 'node:fs/promises';
import { readPasswdFile, stampOf } from '../auth/passwd-file.ts';
import type { PasswdEntry } from '../auth/passwd-format.ts';
import type { Principal } from '../auth/types.ts';
import type { Quota, QuotaSource } from '../storage/types.ts';
import { userQuota } from './quota.ts';

export class UsersFile implements QuotaSource {
  private users: ReadonlyMap<string, PasswdEntry> = new Map();
  private quotas = new Map<string, Quota>();
  private stamp: string | null = null;
  private inflight: Promise<void> | null = null;

  constructor(
    readonly path: string,
    readonly defaults: Quota,
    private readonly warn: (msg: string) => void = () => {},
  ) {}

  async lookup(user: string): Promise<Principal | null> {
    await this.refresh();
    const entry = this.users.get(user);
    return entry && entry.mailboxId !== null ? { user: entry.name, mailboxId: entry.mailboxId } : null;
  }

  async quotaOf(user: string): Promise<Quota> {
    await this.refresh();
    return this.quotas.get(user) ?? this.defaults;
  }

  /** Re-reads the file when it changed; concurrent callers share one stat and one read. */
  refresh(): Promise<void> {
    this.inflight ??= this.refreshNow().finally(() => {
      this.inflight = null;
    });
    return this.inflight;
  }

  private async refreshNow(): Promise<void> {
    let st: Stats;
    try {
      st = await stat(this.path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        this.users = new Map();
        this.quotas = new Map();
        this.stamp = null;
        return;
      }
      throw err;
    }
    if (stampOf(st) === this.stamp) return;
    let parsed: Awaited<ReturnType<typeof readPasswdFile>>;
    try {
      // A line that is not UTF-8 is skipped (and reported by the server and check-config), not fatal.
      parsed = await readPasswdFile(this.path);
    } catch (err) {
      if (this.stamp === null) throw err;
      this.warn(`${this.path}: cannot be read (${(err as Error).message}); keeping the previous users`);
      return;
    }
    if (parsed === null) {
      // Removed between the stat and the read.
      this.users = new Map();
      this.quotas = new Map();
      this.stamp = null;
      return;
    }
    const quotas = new Map<string, Quota>();
    for (const [name, entry] of parsed.users) {
      for (const p of entry.settingProblems) {
        if (p.field.startsWith('quota_')) this.warn(`${this.path}: user ${name}: ${p.message}`);
      }
      if (entry.settings?.quota) quotas.set(name, userQuota(entry.settings, this.defaults));
    }
    this.users = parsed.users;
    this.quotas = quotas;
    this.stamp = parsed.stamp;
  }
}
