/**
 * What `postern serve` needs from the machine before it starts: certificate and key files it can read, a
 * users file, a mail root it can write, a directory for the LMTP socket. `check-config` (the systemd unit's
 * ExecStartPre) reports these problems and `serve` refuses to start on them, both naming the config key and
 * the path, so a broken setup fails at start (exit 78, EX_CONFIG) and not at the first login.
 *
 * The checks run as the user who runs the command: under systemd that is the service user.
 */
import { accessSync, constants, statSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Config } from '../config/config.ts';

export interface Problem {
  /** The config key, e.g. `tls.cert`. */
  readonly key: string;
  readonly path: string;
  readonly problem: string;
}

export function formatProblem(p: Problem): string {
  return `${p.key} = "${p.path}": ${p.problem}`;
}

function errnoText(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return 'does not exist';
  if (code === 'EACCES' || code === 'EPERM') return `not accessible to ${whoami()} (${code})`;
  return (err as Error).message;
}

function whoami(): string {
  return process.getuid ? `uid ${process.getuid()}` : 'this user';
}

/** A regular file this process can read, or why not. */
function readableFile(path: string): string | undefined {
  try {
    if (!statSync(path).isFile()) return 'is not a regular file';
    accessSync(path, constants.R_OK);
    return undefined;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EACCES') return `not readable by ${whoami()}`;
    return errnoText(err);
  }
}

/** A directory this process can create entries in: it exists, or its nearest existing ancestor does. */
function writableDir(path: string, create: boolean): string | undefined {
  let dir = path;
  for (;;) {
    let st: ReturnType<typeof statSync>;
    try {
      st = statSync(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') return errnoText(err);
      if (!create) return 'does not exist';
      const parent = dirname(dir);
      if (parent === dir) return 'does not exist';
      dir = parent;
      continue;
    }
    const where = dir === path ? '' : ` (it does not exist and would be created in ${dir})`;
    if (!st.isDirectory()) return `${dir === path ? 'is' : `${dir} is`} not a directory`;
    try {
      accessSync(dir, constants.W_OK | constants.X_OK);
    } catch {
      return `not writable by ${whoami()}${where}`;
    }
    return undefined;
  }
}

/** Everything `serve` with `config` would trip over at start, in config order. */
export function serveProblems(config: Config): Problem[] {
  const out: Problem[] = [];
  const file = (key: string, path: string | undefined) => {
    if (path === undefined) return;
    const problem = readableFile(path);
    if (problem) out.push({ key, path, problem });
  };
  if (config.tls) {
    file('tls.cert', config.tls.cert);
    file('tls.key', config.tls.key);
    file('tls.client_ca', config.tls.clientCa);
  }
  config.certificates.forEach((c, i) => {
    file(`certificate[${i + 1}].cert`, c.cert);
    file(`certificate[${i + 1}].key`, c.key);
  });
  if (config.auth.driver !== 'postgres') file('auth.users_file', config.auth.usersFile);
  if (config.storage.driver === 'maildir') {
    const problem = writableDir(config.storage.root, true);
    if (problem) out.push({ key: 'storage.root', path: config.storage.root, problem });
  }
  if (config.lmtp?.socket !== undefined) {
    const dir = dirname(config.lmtp.socket);
    const problem = writableDir(dir, false);
    if (problem) out.push({ key: 'lmtp.socket', path: config.lmtp.socket, problem: `directory ${dir} ${problem}` });
  }
  return out;
}

/**
 * A users file readable only by root while `serve` will run as someone else cannot be read by the service:
 * `postern user add` run as root creates it so. Checked only when running as root (as the service user the
 * read check above already tells).
 */
export function rootOnlyUsersFile(path: string): boolean {
  if (process.getuid?.() !== 0) return false;
  try {
    const st = statSync(path);
    return st.uid === 0 && (st.mode & 0o044) === 0;
  } catch {
    return false;
  }
}
