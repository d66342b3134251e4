/** Shared pieces of the delivery tests: an in-process LMTP listener over a temporary Maildir tree, and swaks. */
import { execFile, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../../src/config/config.ts';
import { DeliveryAgent, type DeliveryHooks } from '../../src/delivery/agent.ts';
import { LmtpListener } from '../../src/delivery/lmtp.ts';
import { UsersFile } from '../../src/delivery/users.ts';
import { silentLogger } from '../../src/observability/log.ts';
import { MaildirStore } from '../../src/storage/maildir/store.ts';
import type { MailStore } from '../../src/storage/types.ts';
import { sortByDelivery } from '../helpers/maildir-order.ts';
import { BIN } from '../helpers/realServer.ts';

export interface SwaksResult {
  code: number;
  out: string;
}

/** Runs swaks (bounded) without blocking the event loop, so an in-process listener can answer it. */
export function swaks(args: string[], timeoutMs = 60_000): Promise<SwaksResult> {
  return new Promise((resolve) => {
    const child = execFile(
      'swaks',
      ['--protocol', 'LMTP', '--helo', 'mta.test', ...args],
      { timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024, encoding: 'utf8' },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
        resolve({ code, out: `${stdout}${stderr}` });
      },
    );
    child.stdin?.end(); // a prompt for a missing option gets end-of-file, not a hang
  });
}

/** The server's reply lines (swaks marks them with "<-" or "<**"), without the markers. */
export function replies(out: string): string[] {
  return out
    .split('\n')
    .filter((l) => /^<(-|\*\*) /.test(l))
    .map((l) => l.replace(/^<(-|\*\*)\s+/, '').trimEnd());
}

export interface TestLmtp {
  dir: string;
  root: string;
  usersFile: string;
  store: MaildirStore;
  listener: LmtpListener;
  port: number;
  /** Messages in a user's new/, oldest first. */
  messages(user: string): Buffer[];
  close(): Promise<void>;
}

export interface TestLmtpOptions {
  /** user → extra fields of the users file line (e.g. ['quota_messages=1']). */
  users: Record<string, string[]>;
  /** Extra TOML for [lmtp] and [quota] (e.g. 'socket = "…"' is not possible here: use `lmtp`). */
  toml?: string;
  /** A store to use instead of the Maildir one (e.g. a MemoryStore with faults). */
  store?: MailStore;
  hooks?: DeliveryHooks;
}

export async function startTestLmtp(opts: TestLmtpOptions): Promise<TestLmtp> {
  const dir = mkdtempSync(join(tmpdir(), 'postern-lmtp-'));
  const root = join(dir, 'mail');
  const usersFile = join(dir, 'users');
  writeFileSync(
    usersFile,
    Object.entries(opts.users)
      .map(([name, extra]) => `${name}:{PLAIN}pw::::::${extra.join(' ')}\n`)
      .join(''),
  );
  const config = parseConfig(`${opts.toml ?? '[lmtp]\nport = 0\n'}`, join(dir, 'postern.toml'));
  if (!config.lmtp) throw new Error('test config has no [lmtp]');
  const store = new MaildirStore({ root });
  const users = new UsersFile(usersFile, config.quota);
  const agent = new DeliveryAgent({
    store: opts.store ?? store,
    users,
    quotas: users,
    rules: { lookup: config.lmtp.recipientLookup, delimiter: config.lmtp.recipientDelimiter },
    hooks: opts.hooks,
  });
  const listener = new LmtpListener({
    agent,
    config: config.lmtp,
    hostname: 'lmtp.test',
    quotaTempfail: config.quota.tempfail,
    logger: silentLogger,
    closeGraceMs: 1000,
  });
  await listener.listen();
  return {
    dir,
    root,
    usersFile,
    store,
    listener,
    port: listener.port ?? 0,
    messages(user) {
      const d = join(root, user, 'Maildir', 'new');
      let names: string[];
      try {
        names = sortByDelivery(readdirSync(d));
      } catch {
        return [];
      }
      return names.map((n) => readFileSync(join(d, n)));
    },
    async close() {
      await listener.close();
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Runs `postern ARGS` asynchronously (bounded), feeding `input`. */
export function run(args: string[], input: string | Buffer = '', timeoutMs = 30_000) {
  return new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => {
    const c = spawn(process.execPath, [BIN, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    c.stdout.on('data', (d) => {
      stdout += d;
    });
    c.stderr.on('data', (d) => {
      stderr += d;
    });
    const t = setTimeout(() => c.kill('SIGKILL'), timeoutMs);
    c.on('close', (status) => {
      clearTimeout(t);
      resolve({ status, stdout, stderr });
    });
    c.stdin.on('error', () => {});
    c.stdin.end(input);
  });
}

/**
 * Makes a directory immutable (chattr +i), so that creating or linking in it fails with EPERM even for root.
 * Returns null when done, or why it cannot be done here (not root, a file system without the attribute).
 */
export function immutable(dir: string): string | null {
  const r = spawnSync('chattr', ['+i', dir], { encoding: 'utf8', timeout: 10_000 });
  if (r.error) return `chattr is not available: ${r.error.message}`;
  return r.status === 0 ? null : `chattr +i refused: ${r.stderr.trim()}`;
}

export function mutable(dir: string): void {
  spawnSync('chattr', ['-i', dir], { timeout: 10_000 });
}
