/**
 * What crashes leave in a Maildir, and when it may go (issue 13 #5). Two kinds:
 *
 * - Dead deliveries in tmp/: a writer killed between creating its file and publishing it. The Maildir rule
 *   (Bernstein's maildir(5), which Dovecot and Courier follow) is that a file in tmp/ untouched for 36 hours is
 *   dead. Ours are recognised sooner: a name made by newUniqueBase carries this host's name and the writer's
 *   pid, so a file whose writer no longer exists is removed at once. A file whose writer may still be writing
 *   is never touched: a live pid on this host, this very process (its delivery may be in flight), or another
 *   host's file younger than 36 hours.
 * - Our own temporary files beside new/ and cur/ (`.postern-sizes.PID.HEX.tmp`, `.postern-state.json.PID.HEX.tmp`,
 *   any `[.]postern-*.PID.HEX.tmp`, durable/files.ts temporaryPath): each lives for the few milliseconds
 *   between its write and its rename, so one
 *   whose pid is gone, or that is older than OWN_TEMP_MAX_AGE_MS, is a leftover. So is the `.takeover` mutex of
 *   the earlier lock scheme.
 *
 * A sweep is a readdir of tmp/ and of the Maildir itself plus an lstat per candidate. It runs the first time a
 * process opens or delivers into a Maildir (so after a restart, at once) and then at most every
 * `intervalMs`, never on every login: the login path stays one listing.
 */
import { lstat, readdir, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { forEachLimit, processExists } from './fsutil.ts';

/** Maildir: a file in tmp/ untouched for 36 hours is a dead delivery, whoever wrote it. */
export const TMP_MAX_AGE_MS = 36 * 3600 * 1000;
/** Our temporary files live for milliseconds; one this old is left over whatever its pid says. */
export const OWN_TEMP_MAX_AGE_MS = 15 * 60 * 1000;
/** Default time between two sweeps of one Maildir by one process. */
export const SWEEP_INTERVAL_MS = 3600 * 1000;
/** The takeover mutex of the lock scheme before lock.ts renamed files (a crash could leave one). */
const LEGACY_GUARD = 'postern-pop3.lock.takeover';
const LEGACY_GUARD_MAX_AGE_MS = 10_000;

/** `<sec>.M<usec>P<pid>Q<n>.<host>` as newUniqueBase writes it (flags or size fields may follow in new/). */
const OUR_TMP_NAME = /^\d+\.M\d+P(\d+)Q\d+\.([^,:]+)$/;
/** `[.]postern-<name>.<pid>.<hex>.tmp`: the atomic-replace temporaries of our files beside new/ and cur/. */
const OWN_TEMP_NAME = /^\.?postern-[^/]*\.(\d+)\.[0-9a-f]{6,}\.tmp$/;

export interface SweepOptions {
  /** This host as written in message file names (Maildir-escaped, mail/maildir-name.ts sanitizeHostname). */
  readonly nameHost: string;
  readonly now?: number;
}

export interface SweepResult {
  readonly tmp: number;
  readonly own: number;
}

/** Whether a file in tmp/ is a dead delivery that may be removed. */
export function isDeadDelivery(name: string, mtimeMs: number, opts: SweepOptions): boolean {
  const now = opts.now ?? Date.now();
  // Written on this host by a process that is gone: nobody will ever finish it.
  const m = OUR_TMP_NAME.exec(name);
  if (m !== null && m[2] === opts.nameHost && !processExists(Number(m[1]))) return true;
  // Anything else (another host's, another program's, a live pid's) only by the Maildir rule: a file still being
  // written has a recent mtime.
  return now - mtimeMs > TMP_MAX_AGE_MS;
}

/** Whether a file beside new/ and cur/ is one of our temporaries left over by a crash. */
export function isOwnLeftover(name: string, mtimeMs: number, now = Date.now()): boolean {
  if (name === LEGACY_GUARD) return now - mtimeMs > LEGACY_GUARD_MAX_AGE_MS;
  const m = OWN_TEMP_NAME.exec(name);
  if (m === null) return false;
  return now - mtimeMs > OWN_TEMP_MAX_AGE_MS || !processExists(Number(m[1]));
}

async function sweepFolder(
  dir: string,
  judge: (name: string, mtimeMs: number) => boolean,
  prefilter: (name: string) => boolean = () => true,
): Promise<number> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return 0;
  }
  let removed = 0;
  await forEachLimit(names.filter(prefilter), 8, async (name) => {
    try {
      const st = await lstat(join(dir, name));
      if (st.isFile() && judge(name, st.mtimeMs)) {
        await unlink(join(dir, name));
        removed++;
      }
    } catch {
      // Gone meanwhile, or not ours to remove: a sweep is best effort.
    }
  });
  return removed;
}

/** Removes the leftovers of crashed writers from one Maildir (see above). Best effort; never throws. */
export async function sweepLeftovers(maildir: string, opts: SweepOptions): Promise<SweepResult> {
  const [tmp, own] = await Promise.all([
    sweepFolder(join(maildir, 'tmp'), (name, mtime) => isDeadDelivery(name, mtime, opts)),
    sweepFolder(
      maildir,
      (name, mtime) => isOwnLeftover(name, mtime, opts.now),
      (name) => /^\.?postern-/.test(name) && (name.endsWith('.tmp') || name === LEGACY_GUARD),
    ),
  ]);
  return { tmp, own };
}

/** Decides when a process sweeps each Maildir: the first time it sees it, then every `intervalMs`. */
export class LeftoverSweeper {
  private readonly last = new Map<string, number>();

  constructor(
    private readonly opts: SweepOptions & { readonly intervalMs: number },
    /** Bound on remembered Maildirs (a server may see many); the oldest are forgotten and swept again. */
    private readonly maxRemembered = 100_000,
  ) {}

  /** Sweeps `maildir` when due; resolves when done (quickly when not due). */
  async maybeSweep(maildir: string): Promise<SweepResult | null> {
    const now = Date.now();
    const last = this.last.get(maildir);
    if (last !== undefined && now - last < this.opts.intervalMs) return null;
    this.last.delete(maildir);
    this.last.set(maildir, now);
    if (this.last.size > this.maxRemembered) {
      const oldest = this.last.keys().next().value;
      if (oldest !== undefined) this.last.delete(oldest);
    }
    return sweepLeftovers(maildir, { nameHost: this.opts.nameHost });
  }
}
