/**
 * Shared pieces of the soak scenarios (test/soak/*.test.ts): how long they run, the real `postern serve`
 * process that they kill and restart, and the checks every scenario makes on a Maildir afterwards.
 *
 * Each scenario runs a few rounds by default (seconds, part of `npm test`) and SOAK_RUNS rounds (default 200)
 * under SOAK=1 (`npm run soak`), and prints one line with its figures (test/helpers/soak.ts).
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before } from 'node:test';
import { BIN, freePort } from '../helpers/realServer.ts';
import { figure, soakScale } from '../helpers/soak.ts';

/** Rounds of a scenario: `quick` in `npm test`, SOAK_RUNS (default 200) under SOAK=1 (`npm run soak`). */
export function rounds(quick: number): number {
  const n = Number(process.env.SOAK_RUNS ?? 200);
  return soakScale(quick, Number.isSafeInteger(n) && n > 0 ? n : 200);
}

/** The one line each scenario prints (test/helpers/soak.ts, shared with the other soak scenarios). */
export function report(name: string, figures: string): void {
  figure(name, figures);
}

/** Spins (µs precision) for `ms`: SIGKILL timing finer than setTimeout's millisecond. */
export function spin(ms: number): void {
  const end = process.hrtime.bigint() + BigInt(Math.round(ms * 1e6));
  while (process.hrtime.bigint() < end) {}
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export interface SoakDir {
  readonly dir: string;
  readonly root: string;
  readonly usersFile: string;
  readonly config: string;
  readonly pop3Port: number;
  readonly lmtpPort: number;
  maildir(user: string): string;
  remove(): void;
}

/**
 * A throwaway config for `postern serve`: POP3 without TLS and LMTP, both on 127.0.0.1, a Maildir root and a
 * users file of {PLAIN} users (written directly: no hashing cost per run).
 */
export async function soakDir(users: Record<string, string>, opts: { root?: string; extra?: string } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'postern-soak-'));
  const root = opts.root ?? join(dir, 'mail');
  mkdirSync(root, { recursive: true });
  const usersFile = join(dir, 'users');
  writeFileSync(
    usersFile,
    Object.entries(users)
      .map(([u, p]) => `${u}:{PLAIN}${p}::::::\n`)
      .join(''),
  );
  const pop3Port = await freePort();
  const lmtpPort = await freePort();
  const config = join(dir, 'postern.toml');
  writeFileSync(
    config,
    `[server]
hostname = "soak.test"
[[listen]]
address = "127.0.0.1"
port = ${pop3Port}
tls = "none"
[storage]
root = "${root}"
[auth]
users_file = "${usersFile}"
[limits]
failed_login_delay = 0
[lmtp]
address = "127.0.0.1"
port = ${lmtpPort}
[log]
level = "warn"
${opts.extra ?? ''}
`,
  );
  const self: SoakDir = {
    dir,
    root,
    usersFile,
    config,
    pop3Port,
    lmtpPort,
    maildir: (user) => join(root, user, 'Maildir'),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
  return self;
}

/**
 * For a suite: a soak dir with `users` and a (not yet started) server process on it listening on the ports
 * `ports` picks, made before the suite's tests and killed and removed after them.
 */
export function soakSuite(
  users: Record<string, string>,
  ports: (d: SoakDir) => readonly number[],
): { readonly d: SoakDir; readonly server: ServerProcess } {
  let d: SoakDir | undefined;
  let server: ServerProcess | undefined;
  before(async () => {
    d = await soakDir(users);
    server = new ServerProcess(d.config, ports(d));
  });
  after(async () => {
    await server?.kill();
    d?.remove();
  });
  const made = <T>(v: T | undefined): T => {
    if (v === undefined) throw new Error('soakSuite: used outside the suite');
    return v;
  };
  return {
    get d() {
      return made(d);
    },
    get server() {
      return made(server);
    },
  };
}

/** The real `postern serve` process, started and SIGKILLed as many times as a scenario wants. */
export class ServerProcess {
  private child: ChildProcess | undefined;
  output = '';

  constructor(
    private readonly config: string,
    /** Ports that accept connections once the server is up. */
    private readonly ports: readonly number[],
    /** Run as this user (uid = gid), as a server that dropped root would. */
    private readonly uid?: number,
  ) {}

  get pid(): number | undefined {
    return this.child?.pid;
  }

  async start(): Promise<void> {
    let out = '';
    const c = spawn(process.execPath, [BIN, 'serve', '--config', this.config], {
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(this.uid === undefined ? {} : { uid: this.uid, gid: this.uid }),
    });
    this.child = c;
    const take = (d: Buffer) => {
      out += d;
      this.output = (this.output + d).slice(-20_000);
    };
    c.stdout?.on('data', take);
    c.stderr?.on('data', take);
    const deadline = Date.now() + 60_000;
    for (const port of this.ports) {
      while (!(await accepts(port))) {
        if (c.exitCode !== null || c.signalCode !== null) throw new Error(`server exited: ${out}`);
        if (Date.now() > deadline) {
          await this.kill(); // never leave a server behind
          throw new Error(`server did not start: ${out}`);
        }
        await sleep(10);
      }
    }
  }

  /** SIGKILL now; resolves once the process is gone (reaped, so its pid no longer exists). */
  async kill(): Promise<void> {
    const c = this.child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const gone = new Promise<void>((r) => c.once('exit', () => r()));
    c.kill('SIGKILL');
    await gone;
  }

  killNow(): void {
    this.child?.kill('SIGKILL');
  }

  async stop(): Promise<void> {
    const c = this.child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    const gone = new Promise<void>((r) => c.once('exit', () => r()));
    c.kill('SIGTERM');
    const t = setTimeout(() => c.kill('SIGKILL'), 15_000);
    await gone;
    clearTimeout(t);
  }
}

/** True when something accepts a TCP connection on 127.0.0.1:port (the connection is closed at once). */
function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

export function sha(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex').slice(0, 16);
}

/** A message whose content proves itself: a token header and a body hash header over the body that follows. */
export function selfCheckingMessage(token: string, bodyBytes: number): Buffer {
  const line = `${token} `.padEnd(76, 'x');
  const lines: string[] = [];
  let n = 0;
  while (n < bodyBytes) {
    lines.push(line);
    n += line.length + 2;
  }
  const body = `${lines.join('\r\n')}\r\n`;
  return Buffer.from(`Subject: ${token}\r\nX-Token: ${token}\r\nX-Body-Sha: ${sha(body)}\r\n\r\n${body}`);
}

export interface MaildirCheck {
  /** Tokens of complete messages, with how many copies of each. */
  readonly tokens: Map<string, number>;
  /** Files in new/ or cur/ that are not a complete message (must be empty). */
  readonly partial: string[];
  readonly tmp: string[];
}

/** Reads every message of a Maildir and checks that each is whole (its body hash matches). */
export function checkMaildir(md: string): MaildirCheck {
  const tokens = new Map<string, number>();
  const partial: string[] = [];
  for (const folder of ['new', 'cur']) {
    let names: string[] = [];
    try {
      names = readdirSync(join(md, folder));
    } catch {}
    for (const name of names) {
      const text = readFileSync(join(md, folder, name), 'latin1');
      const token = /^X-Token: (\S+)$/m.exec(text)?.[1];
      const want = /^X-Body-Sha: (\S+)$/m.exec(text)?.[1];
      const split = text.indexOf('\r\n\r\n') >= 0 ? text.indexOf('\r\n\r\n') + 4 : text.indexOf('\n\n') + 2;
      const s = /,S=(\d+)/.exec(name)?.[1];
      // Line endings may have been converted on the way (LF storage, fetch's local copies): hash with CRLF.
      const body = text.slice(split).replace(/\r?\n/g, '\r\n');
      const whole = token !== undefined && want !== undefined && sha(Buffer.from(body, 'latin1')) === want;
      if (!whole || (s !== undefined && Number(s) !== Buffer.byteLength(text, 'latin1'))) {
        partial.push(`${folder}/${name}`);
        continue;
      }
      tokens.set(token, (tokens.get(token) ?? 0) + 1);
    }
  }
  let tmp: string[] = [];
  try {
    tmp = readdirSync(join(md, 'tmp'));
  } catch {}
  return { tokens, partial, tmp };
}

export function duplicates(tokens: Map<string, number>): string[] {
  return [...tokens].filter(([, n]) => n > 1).map(([t]) => t);
}

export function assertWhole(check: MaildirCheck, what: string): void {
  assert.deepEqual(check.partial, [], `${what}: a partial file is visible in new/ or cur/`);
  assert.deepEqual(duplicates(check.tokens), [], `${what}: a message is there twice`);
}

/** A bare LMTP client (RFC 2033) for the soak scenarios: what the server answered, as it arrived. */
export class LmtpWire {
  private buf = '';
  private waiters: (() => void)[] = [];
  private closed = false;

  private constructor(private readonly socket: import('node:net').Socket) {
    socket.on('data', (d: Buffer) => {
      this.buf += d.toString('latin1');
      this.wake();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('error', () => {});
  }

  static open(port: number): Promise<LmtpWire> {
    return new Promise((resolve, reject) => {
      const s = connect(port, '127.0.0.1');
      s.once('connect', () => resolve(new LmtpWire(s)));
      s.once('error', reject);
    });
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  /** Complete reply lines received so far (continuation lines included). */
  lines(): string[] {
    return this.buf.split('\r\n').slice(0, -1);
  }

  /** Waits (bounded) until `n` final reply lines (`NNN ` rather than `NNN-`) have arrived. */
  async finals(n: number, waitMs = 30_000): Promise<string[]> {
    const deadline = Date.now() + waitMs;
    for (;;) {
      const f = this.lines().filter((l) => /^\d{3} /.test(l));
      if (f.length >= n) return f;
      if (this.closed || Date.now() > deadline) throw new Error(`LMTP: wanted ${n} replies, got: ${this.buf}`);
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 100);
      });
    }
  }

  send(text: string | Buffer): void {
    this.socket.write(text);
  }

  destroy(): void {
    this.socket.destroy();
  }
}
