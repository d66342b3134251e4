/**
 * Reading the users file, the one copy the authenticator (passwd.ts) and delivery (delivery/users.ts) share:
 * the bytes and the version stamp come from the same open handle, so the stamp never claims a newer version
 * than what was parsed (a later change then always triggers a re-read). Each caller keeps its own policy for
 * when to re-read and what to do when a read fails.
 */
import type { Stats } from 'node:fs';
import { type FileHandle, open } from 'node:fs/promises';
import { type ParsedPasswd, parsePasswdBytes } from './passwd-format.ts';

/** The identity of one version of the file: a change to its inode, size, mtime or ctime is a new version. */
export function stampOf(s: Stats): string {
  return `${s.dev}:${s.ino}:${s.size}:${s.mtimeMs}:${s.ctimeMs}`;
}

/** The file parsed, with the stamp of the version read; null when the file does not exist. */
export async function readPasswdFile(path: string): Promise<(ParsedPasswd & { readonly stamp: string }) | null> {
  let fh: FileHandle;
  try {
    fh = await open(path, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  let stats: Stats;
  let bytes: Buffer;
  try {
    stats = await fh.stat();
    bytes = await fh.readFile();
  } finally {
    await fh.close();
  }
  return { ...parsePasswdBytes(bytes), stamp: stampOf(stats) };
}
