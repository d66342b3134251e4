/**
 * The session bookkeeping of one Maildir (MaildropState): a small JSON file beside new/ and cur/, read and
 * written only by the holder of the maildrop lock, replaced atomically (temporary file, fsync, rename, fsync
 * of the directory) so a crash leaves the old or the new version, never half of one.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../../durable/files.ts';
import type { MaildropState } from '../types.ts';
import { isNotFound, toStorageError } from './fsutil.ts';

export const STATE_FILE = 'postern-state.json';

export async function readState(maildir: string): Promise<MaildropState> {
  let text: string;
  try {
    text = await readFile(join(maildir, STATE_FILE), 'utf8');
  } catch (e) {
    if (isNotFound(e)) return {};
    throw toStorageError(e, 'cannot read the maildrop state');
  }
  try {
    const v = JSON.parse(text) as unknown;
    if (typeof v !== 'object' || v === null) return {};
    const o = v as Record<string, unknown>;
    const state: { lastLogin?: number; retrieved?: Record<string, number> } = {};
    if (typeof o.lastLogin === 'number' && Number.isFinite(o.lastLogin)) state.lastLogin = o.lastLogin;
    if (typeof o.retrieved === 'object' && o.retrieved !== null) {
      const r: Record<string, number> = {};
      for (const [k, t] of Object.entries(o.retrieved)) if (typeof t === 'number' && Number.isFinite(t)) r[k] = t;
      state.retrieved = r;
    }
    return state;
  } catch {
    // A damaged file loses only bookkeeping: start over rather than refuse the login.
    return {};
  }
}

export async function writeState(maildir: string, state: MaildropState): Promise<void> {
  try {
    await writeFileAtomic(join(maildir, STATE_FILE), JSON.stringify(state));
  } catch (e) {
    throw toStorageError(e, 'cannot write the maildrop state');
  }
}
