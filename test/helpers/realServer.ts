/**
 * Runs the real `postern` command (bin/postern.cjs) as a separate process on 127.0.0.1 with a throwaway
 * config, user file, Maildir tree and certificate, for interop tests with clients nobody here wrote.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { folderConfig } from '../../src/cli/folder-config.ts';
import { testCert } from './server.ts';

export const BIN = resolve(import.meta.dirname, '../../bin/postern.cjs');

/** Can a listener bind `port` on 127.0.0.1 right now? */
function canBind(port: number): Promise<boolean> {
  return new Promise((res) => {
    const s = createServer();
    s.once('error', () => res(false));
    s.listen(port, '127.0.0.1', () => s.close(() => res(true)));
  });
}

/** The first port of the kernel's ephemeral range, where port 0 and outgoing connections take theirs. */
function ephemeralStart(): number {
  try {
    const first = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    if (Number.isInteger(first) && first > 12_000) return first;
  } catch {}
  return 32_768;
}

const handedOut = new Set<number>();

/** Claims of ports by the test processes of this machine: one file per port, holding the claimant's pid. */
const claims = join(tmpdir(), 'postern-test-ports');

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Claims `port` for this process across every test process on the machine (test files run in parallel, and
 * so may other checkouts' test runs): the claim file is created exclusively; one left by a process that has
 * exited is taken over. Claims are removed when this process exits.
 */
function claim(port: number): boolean {
  mkdirSync(claims, { recursive: true });
  const file = join(claims, String(port));
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(file, String(process.pid), { flag: 'wx' });
      claimed.push(file);
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    let holder = 0;
    try {
      holder = Number(readFileSync(file, 'utf8'));
    } catch {}
    if (holder > 0 && alive(holder)) return false;
    // A claim whose holder is gone (or a file half written): remove and try once more; a racing taker
    // that removes and creates first wins the exclusive create.
    rmSync(file, { force: true });
  }
  return false;
}

const claimed: string[] = [];
process.once('exit', () => {
  for (const file of claimed) {
    try {
      if (readFileSync(file, 'utf8') === String(process.pid)) rmSync(file, { force: true });
    } catch {}
  }
});

/**
 * A free port for a server a test starts (it binds the port itself, later). Not port 0: the kernel picks that
 * from the ephemeral range, the range every outgoing connection of a test run (PostgreSQL clients, LMTP and
 * soak connections) takes its local port from, so between this check and the server's bind an outgoing socket
 * could take it (seen in CI as EADDRINUSE). Below that range only listeners bind: a random pick among some
 * 20 000 ports, never the same twice in a process and claimed across the machine's test processes (two test
 * files once picked the same port between check and bind), so no two tests wait to bind one port.
 */
export async function freePort(): Promise<number> {
  const low = 10_000;
  const high = ephemeralStart();
  for (let i = 0; i < 100; i++) {
    const port = low + Math.floor(Math.random() * (high - low));
    if (handedOut.has(port)) continue;
    if (!claim(port)) continue;
    handedOut.add(port);
    if (await canBind(port)) return port;
  }
  throw new Error(`no free port found in ${low}-${high - 1}`);
}

export interface RealServer {
  dir: string;
  config: string;
  port: number;
  tlsPort: number;
  maildir(user: string): string;
  logs(): string;
  addUser(name: string, password: string, extra?: string[]): void;
  /** Starts the server process; add users first (the user file is read at start). */
  start(): Promise<void>;
  /** Sends a signal to the server process (e.g. SIGHUP to reload). */
  signal(sig: NodeJS.Signals): void;
  stop(): Promise<number | null>;
}

/** Runs `postern ARGS` to completion (bounded), feeding `input` on stdin. */
export function postern(args: string[], input = '', timeoutMs = 30_000) {
  const r = spawnSync(process.execPath, [BIN, ...args], { input, encoding: 'utf8', timeout: timeoutMs });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

export async function startRealServer(
  opts: {
    extraConfig?: string;
    server?: string;
    limits?: string;
    logLevel?: string;
    /** Run the server process as this user (the test runs as root); its whole directory is chowned to it. */
    runAs?: { uid: number; gid: number };
    /** Run the server with this file descriptor limit (soft and hard), through prlimit(1). */
    nofile?: number;
  } = {},
): Promise<RealServer> {
  const dir = mkdtempSync(join(tmpdir(), 'postern-real-'));
  mkdirSync(join(dir, 'tls'));
  const { cert, key } = await testCert();
  writeFileSync(join(dir, 'tls', 'cert.pem'), cert);
  writeFileSync(join(dir, 'tls', 'key.pem'), key, { mode: 0o600 });
  const port = await freePort();
  const tlsPort = await freePort();
  const config = join(dir, 'postern.toml');
  writeFileSync(
    config,
    folderConfig({
      port,
      tlsPort,
      server: `hostname = "postern.test"\n${opts.server ?? ''}`,
      tail: `
[limits]
failed_login_delay = 0
${opts.limits ?? ''}

[log]
level = "${opts.logLevel ?? 'debug'}"
${opts.extraConfig ?? ''}
`,
    }),
  );
  let out = '';
  let child: ChildProcess | undefined;
  const self: RealServer = {
    dir,
    config,
    port,
    tlsPort,
    maildir: (user) => join(dir, 'mail', user, 'Maildir'),
    logs: () => out,
    addUser(name, password, extra = []) {
      const r = postern(['user', 'add', name, '--config', config, ...extra], `${password}\n`);
      if (r.status !== 0) throw new Error(`user add failed: ${r.stderr}`);
    },
    start,
    signal(sig) {
      child?.kill(sig);
    },
    async stop() {
      if (!child || child.exitCode !== null) return child?.exitCode ?? null;
      const c = child;
      const exited = new Promise<number | null>((r) => c.once('exit', (code) => r(code)));
      c.kill('SIGTERM');
      const t = setTimeout(() => c.kill('SIGKILL'), 15_000);
      const code = await exited;
      clearTimeout(t);
      rmSync(dir, { recursive: true, force: true });
      return code;
    },
  };
  return self;

  async function start(): Promise<void> {
    if (opts.runAs) {
      chmodSync(dir, 0o755);
      const r = spawnSync('chown', ['-R', `${opts.runAs.uid}:${opts.runAs.gid}`, dir]);
      if (r.status !== 0) throw new Error(`chown failed: ${r.stderr}`);
    }
    const argv = [process.execPath, BIN, 'serve', '--config', config];
    if (opts.nofile !== undefined) argv.unshift('prlimit', `--nofile=${opts.nofile}:${opts.nofile}`, '--');
    const c = spawn(argv[0], argv.slice(1), {
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(opts.runAs ?? {}),
    });
    child = c;
    c.stdout?.on('data', (d) => {
      out += d;
    });
    c.stderr?.on('data', (d) => {
      out += d;
    });
    const deadline = Date.now() + 30_000;
    while ((out.match(/"msg":"listening"/g) ?? []).length < 2) {
      if (c.exitCode !== null) throw new Error(`server exited: ${out}`);
      if (Date.now() > deadline) throw new Error(`server did not start: ${out}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

/** Writes a message into new/ the way Postfix's local(8) does: LF line endings, no ,S= in the name. */
export function dropPostfixStyle(maildir: string, name: string, content: string): void {
  for (const d of ['new', 'cur', 'tmp']) mkdirSync(join(maildir, d), { recursive: true });
  writeFileSync(join(maildir, 'new', name), content);
}
