/** Temporary directories of the tests and of the peers they start (Dovecot, Postfix). */
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * A fresh directory `postern-<name>-XXXXXX` under the system's temp dir. `reachable`: mode 0755, so a peer's
 * unprivileged processes (Dovecot's dovenull, Postfix's pipe user) can reach what is inside.
 */
export function tempDir(name: string, opts: { reachable?: boolean } = {}): string {
  const dir = mkdtempSync(join(tmpdir(), `postern-${name}-`));
  if (opts.reachable) chmodSync(dir, 0o755);
  return dir;
}

/** Removes a directory tree, whatever is in it; a missing one is fine. */
export function removeTempDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}
