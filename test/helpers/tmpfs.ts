/**
 * A small tmpfs mounted for one test, to make a full disk for real (ENOSPC from the kernel, not a mock).
 * Mounting needs root (CAP_SYS_ADMIN); where it is impossible the caller skips with the reason given, except
 * under CI=true, where a missing capability must fail the run rather than pass it silently.
 */
import { spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface Tmpfs {
  readonly dir: string;
  /** Writes a filler file until the file system refuses (ENOSPC); returns the octets written. */
  fill(): number;
  /** Unmounts and removes the mount point (idempotent). */
  unmount(): void;
}

/** Mounts a tmpfs of `sizeKiB`; returns it, or a string saying why it cannot be done here. */
export function mountTmpfs(sizeKiB: number): Tmpfs | string {
  if (process.getuid?.() !== 0) return 'mounting a tmpfs needs root';
  const dir = mkdtempSync(join(tmpdir(), 'postern-tmpfs-'));
  const r = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeKiB}k,mode=0755`, 'tmpfs', dir], {
    encoding: 'utf8',
    timeout: 10_000,
  });
  if (r.error || r.status !== 0) {
    rmSync(dir, { recursive: true, force: true });
    return `cannot mount a tmpfs: ${r.error?.message ?? r.stderr.trim()}`;
  }
  let mounted = true;
  return {
    dir,
    fill() {
      const fd = openSync(join(dir, `filler-${Date.now()}`), 'w');
      const chunk = Buffer.alloc(4096, 0x66);
      let total = 0;
      try {
        for (;;) {
          let n = 0;
          try {
            n = writeSync(fd, chunk);
          } catch (e) {
            if ((e as NodeJS.ErrnoException).code === 'ENOSPC') break;
            throw e;
          }
          if (n === 0) break;
          total += n;
        }
      } finally {
        closeSync(fd);
      }
      return total;
    },
    unmount() {
      if (!mounted) return;
      mounted = false;
      spawnSync('umount', ['-l', dir], { timeout: 10_000 });
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** For tests: the reason to skip, or null when the peer or capability is there (CI=true never skips). */
export { skipUnlessCi } from './peers.ts';
