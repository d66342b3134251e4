/**
 * Tests that need a peer (Dovecot, curl, swaks, Python's poplib, PostgreSQL, root, a tmpfs) skip with the
 * reason when it is missing, so a developer's run stays useful; but a CI run (CI=true) must never pass by
 * skipping them, so there a missing peer fails the test file with the same reason (issue 13). Every such
 * check in the suite goes through skipUnlessCi.
 */
import { spawnSync } from 'node:child_process';

/** The reason to skip (for `{ skip }`), or false when nothing is missing; throws under CI=true instead. */
export function skipUnlessCi(reason: string | null | undefined | false): string | false {
  if (reason === null || reason === undefined || reason === false) return false;
  if (process.env.CI === 'true') throw new Error(`CI=true: a test peer is missing: ${reason}`);
  return reason;
}

/** True when `command args…` runs and exits 0 (a peer's `--version`, say). */
export function commandWorks(command: string, args: readonly string[]): boolean {
  return spawnSync(command, args, { stdio: 'ignore', timeout: 20_000 }).status === 0;
}
