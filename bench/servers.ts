/**
 * The servers under test, each started as a child process on 127.0.0.1 and stopped by its own pid:
 *   - Postern: `node bin/postern.cjs serve --config FILE` (plain POP3 listener, no TLS);
 *   - Dovecot: a private instance, `dovecot -F -c FILE`, with its own base_dir/state_dir, on another port,
 *     serving the same Maildir tree (indexes and dovecot-uidlist kept outside it, so Postern never sees them),
 *     in the high-performance configuration an operator with load runs ("tuned"), or with stock settings.
 * Each is started under `taskset -c CPU` when a CPU is given, so it and every process or thread it starts
 * share one core. Plus the memory figures read from /proc for a server and all its descendants.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { join, resolve } from 'node:path';

export const POSTERN_BIN = resolve(import.meta.dirname, '../bin/postern.cjs');
/** Preloaded into Postern: SIGUSR2 collects garbage (for the memory measurement; see the file). */
const GC_PRELOAD = resolve(import.meta.dirname, 'gc-signal.mjs');
export const DOVECOT_BIN = '/usr/sbin/dovecot';
export const HOST = '127.0.0.1';

/** `Postern PG ×N`: Postern on the PostgreSQL store with N frontend processes (`--store postgres`). */
export type ServerName = 'Postern' | 'Dovecot' | 'Dovecot stock' | `Postern PG ×${number}`;

export interface ServerHandle {
  readonly name: ServerName;
  readonly port: number;
  readonly pid: number;
  readonly logPath: string;
  stop(): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, HOST, () => {
      const a = s.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      s.close(() => res(port));
    });
  });
}

/** Waits (bounded) until a POP3 greeting can be read on the port. */
async function waitForGreeting(port: number, child: ChildProcess, logPath: string, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`server exited with ${child.exitCode}; log: ${tail(logPath)}`);
    const ok = await new Promise<boolean>((r) => {
      const s = connect({ host: HOST, port });
      const t = setTimeout(() => {
        s.destroy();
        r(false);
      }, 1000);
      s.once('data', (d) => {
        clearTimeout(t);
        s.destroy();
        r(d.toString('latin1').startsWith('+OK'));
      });
      s.once('error', () => {
        clearTimeout(t);
        r(false);
      });
    });
    if (ok) return;
    await sleep(100);
  }
  throw new Error(`no greeting on port ${port} within ${timeoutMs} ms; log: ${tail(logPath)}`);
}

function tail(path: string): string {
  try {
    return readFileSync(path, 'utf8').slice(-2000);
  } catch {
    return '(no log)';
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** SIGTERM the pid we started, SIGKILL it (and the descendants it left) after a grace period. */
async function stopChild(child: ChildProcess, graceMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  const pid = child.pid;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const kids = descendants(pid);
  child.kill('SIGTERM');
  const timer = setTimeout(() => {
    child.kill('SIGKILL');
    for (const k of kids) {
      try {
        process.kill(k, 'SIGKILL');
      } catch {}
    }
  }, graceMs);
  await exited;
  clearTimeout(timer);
}

/** `taskset -c CPU cmd args…` when a CPU is given (and taskset exists), else the command itself. */
function pinned(cpu: string | undefined, cmd: string, args: string[]): [string, string[]] {
  return cpu !== undefined && hasTaskset() ? ['taskset', ['-c', cpu, cmd, ...args]] : [cmd, args];
}

let tasksetFound: boolean | undefined;
export function hasTaskset(): boolean {
  tasksetFound ??= spawnSync('taskset', ['-p', String(process.pid)]).status === 0;
  return tasksetFound;
}

export async function startPostern(opts: {
  dir: string;
  mailRoot: string;
  usersFile: string;
  workers: number;
  cpu?: string;
  /** A PostgreSQL store at this URL instead of the Maildir tree (the users file stays). */
  pgUrl?: string;
  name?: ServerName;
  /** Another checkout's bin/postern.cjs (A/B of two versions, bench/pg-session-cost.ts); default this one. */
  bin?: string;
  /** [storage] pool_size for the PostgreSQL store (default 10). */
  poolSize?: number;
  /** Extra node options, e.g. --cpu-prof (which NODE_OPTIONS does not take). */
  nodeArgs?: string[];
}): Promise<ServerHandle> {
  const port = await freePort();
  const config = join(opts.dir, 'postern.toml');
  const pg = opts.pgUrl ? `driver = "postgres"\nurl = "${opts.pgUrl}"\npool_size = ${opts.poolSize ?? 10}\n` : '';
  const logPath = join(opts.dir, 'postern.log');
  writeFileSync(
    config,
    `[server]
hostname = "bench.localhost"
workers = ${opts.workers}

[[listen]]
address = "${HOST}"
port = ${port}
tls = "none"

[storage]
${pg}root = "${opts.mailRoot}"
layout = "%u/Maildir"

[auth]
users_file = "${opts.usersFile}"

[limits]
failed_login_delay = 0
max_connections = 10000
max_connections_per_address = 10000

[log]
level = "info"
`,
  );
  const fd = openSync(logPath, 'a');
  const [cmd, args] = pinned(opts.cpu, process.execPath, [
    ...(opts.nodeArgs ?? []),
    opts.bin ?? POSTERN_BIN,
    'serve',
    '--config',
    config,
  ]);
  const nodeOptions = [process.env.NODE_OPTIONS, '--expose-gc', `--import=${GC_PRELOAD}`].filter(Boolean).join(' ');
  const env = { ...process.env, NODE_OPTIONS: nodeOptions };
  const child = spawn(cmd, args, { stdio: ['ignore', fd, fd], cwd: opts.dir, env });
  closeSync(fd);
  try {
    await waitForGreeting(port, child, logPath);
  } catch (e) {
    await stopChild(child, 5_000);
    throw e;
  }
  return {
    name: opts.name ?? 'Postern',
    port,
    pid: child.pid!,
    logPath,
    stop: () => stopChild(child, 15_000),
  };
}

export const hasDovecot = (): boolean => existsSync(DOVECOT_BIN);

/**
 * The settings Dovecot's documentation calls high-performance mode, as an operator with load runs it: a few
 * long-lived login processes that each serve many connections, pop3 processes reused for 100 sessions and
 * kept ready, an auth cache, and no flag updates (so POP3 sessions do not rename files).
 */
const DOVECOT_TUNED = {
  global: 'auth_cache_size = 16M\npop3_no_flag_updates = yes\n',
  login: '  service_count = 0\n  process_min_avail = 2\n',
  pop3: '  service_count = 100\n  process_min_avail = 4\n',
};

/**
 * A private Dovecot: own instance name, base_dir, state_dir, log, users file and port; no TLS. Mail is read as
 * `nobody` (Dovecot refuses to serve mail as root), so the caller chowns the Maildir tree to nobody. `tuned`
 * adds DOVECOT_TUNED; without it, Dovecot's defaults (a login and a pop3 process per connection, no auth cache).
 */
export async function startDovecot(opts: {
  dir: string;
  mailRoot: string;
  usersFile: string;
  maxConnections: number;
  tuned: boolean;
  cpu?: string;
}): Promise<ServerHandle> {
  const port = await freePort();
  const d = join(opts.dir, opts.tuned ? 'dovecot' : 'dovecot-stock');
  const varDir = join(d, 'var'); // indexes and control files (dovecot-uidlist), writable by nobody
  for (const sub of ['run', 'state', 'var/index', 'var/control']) mkdirSync(join(d, sub), { recursive: true });
  spawnSync('chown', ['-R', 'nobody:nogroup', varDir]);
  const config = join(d, 'dovecot.conf');
  const logPath = join(d, 'dovecot.log');
  const limit = Math.max(opts.maxConnections + 200, 1000);
  writeFileSync(
    config,
    `# Private Dovecot for Postern's benchmark (bench/servers.ts). Defaults except where noted.
instance_name = postern-bench-${opts.tuned ? '' : 'stock-'}${process.pid}
base_dir = ${d}/run
state_dir = ${d}/state
protocols = pop3
listen = ${HOST}
log_path = ${logPath}
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login apop
first_valid_uid = 1
first_valid_gid = 1
mail_location = maildir:${opts.mailRoot}/%u/Maildir:INDEX=${varDir}/index/%u:CONTROL=${varDir}/control/%u
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u ${opts.usersFile}
}
userdb {
  driver = passwd-file
  args = username_format=%u ${opts.usersFile}
  default_fields = uid=nobody gid=nogroup home=${opts.mailRoot}/%u
}
# One pop3 process per logged-in connection: allow enough of them for the idle-connection test.
default_process_limit = ${limit}
default_client_limit = ${limit * 2}
protocol pop3 {
  mail_max_userip_connections = ${limit}
}
service pop3 {
  # The built-in definition says 1024, which default_process_limit does not raise.
  process_limit = ${limit}
${opts.tuned ? DOVECOT_TUNED.pop3 : ''}}
service pop3-login {
  process_limit = ${limit}
${opts.tuned ? DOVECOT_TUNED.login : ''}  inet_listener pop3 {
    address = ${HOST}
    port = ${port}
  }
  inet_listener pop3s {
    port = 0
  }
}
service anvil {
  chroot =
}
${opts.tuned ? `# Tuned: Dovecot's high-performance mode.\n${DOVECOT_TUNED.global}` : ''}`,
  );
  const check = spawnSync('doveconf', ['-c', config, '-n'], { encoding: 'utf8' });
  if (check.status !== 0) throw new Error(`doveconf refused the config: ${check.stderr}`);
  const outPath = join(d, 'dovecot.stdout');
  const fd = openSync(outPath, 'a');
  const [cmd, args] = pinned(opts.cpu, DOVECOT_BIN, ['-F', '-c', config]);
  const child = spawn(cmd, args, { stdio: ['ignore', fd, fd] });
  closeSync(fd);
  try {
    await waitForGreeting(port, child, logPath);
  } catch (e) {
    await stopChild(child, 5_000);
    throw e;
  }
  return {
    name: opts.tuned ? 'Dovecot' : 'Dovecot stock',
    port,
    pid: child.pid!,
    logPath,
    stop: () => stopChild(child, 15_000),
  };
}

/**
 * Pins a process, every process below it and all their threads to `cpu` (a PostgreSQL cluster: the
 * postmaster and the backends it has forked so far; later ones inherit the postmaster's affinity).
 */
export function pinTree(root: number, cpu: string): void {
  for (const pid of [root, ...descendants(root)]) {
    spawnSync('taskset', ['-a', '-p', '-c', cpu, String(pid)], { stdio: 'ignore' });
  }
}

/** All descendants of a pid (children, grandchildren, …), from /proc. */
export function descendants(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${name}/stat`, 'latin1');
    } catch {
      continue; // gone meanwhile
    }
    // The command name (field 2) may contain spaces and parentheses: fields after the last ')' are fixed.
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    const list = children.get(ppid) ?? [];
    list.push(Number(name));
    children.set(ppid, list);
  }
  const out: number[] = [];
  const todo = [root];
  while (todo.length > 0 && out.length < 100_000) {
    for (const c of children.get(todo.pop()!) ?? []) {
      out.push(c);
      todo.push(c);
    }
  }
  return out;
}

/** USER_HZ: the unit of utime/stime in /proc/PID/stat. */
const TICK_US = 1e6 / 100;

/**
 * CPU time (µs, user + system) of a server: its live processes and threads, plus the children they reaped (a
 * Dovecot pop3 process that exited after service_count sessions is counted by the master's cutime), and their
 * context switches. Per session, this does not move with the machine's load the way sessions/s does.
 */
export function cpuOf(pid: number): { cpuUs: number; switches: number } {
  let ticks = 0;
  let switches = 0;
  for (const p of [pid, ...descendants(pid)]) {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, 'latin1');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      // utime stime cutime cstime are fields 14-17 of stat(5), 11-14 counted after the command name.
      ticks += Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
      for (const t of readdirSync(`/proc/${p}/task`)) {
        const st = readFileSync(`/proc/${p}/task/${t}/status`, 'latin1');
        switches += Number(/\nvoluntary_ctxt_switches:\s+(\d+)/.exec(st)?.[1] ?? 0);
        switches += Number(/nonvoluntary_ctxt_switches:\s+(\d+)/.exec(st)?.[1] ?? 0);
      }
    } catch {
      // exited meanwhile
    }
  }
  return { cpuUs: ticks * TICK_US, switches };
}

export interface Memory {
  readonly processes: number;
  /** Sum of VmRSS (KiB); counts shared pages once per process. */
  readonly rssKiB: number;
  /** Sum of Pss (KiB): shared pages split between the processes sharing them. */
  readonly pssKiB: number;
  /** Process names (comm) and how many of each. */
  readonly names: string;
}

function kib(text: string, key: string): number {
  const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text);
  return m ? Number(m[1]) : 0;
}

/** Asks a Postern server and its workers to collect garbage (bench/gc-signal.mjs); nothing for other servers. */
export function collectGarbage(s: ServerHandle): void {
  if (!s.name.startsWith('Postern')) return;
  for (const p of [s.pid, ...descendants(s.pid)]) {
    try {
      process.kill(p, 'SIGUSR2');
    } catch {
      // exited meanwhile
    }
  }
}

/** Memory of a server: its main process and every descendant. */
export function memoryOf(pid: number): Memory {
  let rssKiB = 0;
  let pssKiB = 0;
  let processes = 0;
  const names = new Map<string, number>();
  for (const p of [pid, ...descendants(pid)]) {
    try {
      const status = readFileSync(`/proc/${p}/status`, 'latin1');
      const name = /^Name:\s+(.*)$/m.exec(status)?.[1] ?? '?';
      names.set(name, (names.get(name) ?? 0) + 1);
      rssKiB += kib(status, 'VmRSS');
      pssKiB += kib(readFileSync(`/proc/${p}/smaps_rollup`, 'latin1'), 'Pss');
      processes++;
    } catch {
      // exited meanwhile
    }
  }
  return { processes, rssKiB, pssKiB, names: [...names].map(([n, c]) => (c > 1 ? `${c}×${n}` : n)).join(' ') };
}

/**
 * Runs a load generator pinned to CPU 0 (`taskset -c 0 cmd…`) and resolves with the `result` of its
 * `{"result": …}` line (bench/load-sessions.c and bench/load.ts print one).
 */
export function runPinnedLoad<R>(cmd: string[]): Promise<R> {
  const child = spawn('taskset', ['-c', '0', ...cmd], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout?.on('data', (d) => {
    out += d;
  });
  return new Promise((res, rej) =>
    child.on('exit', () => {
      const line = out.split('\n').find((l) => l.startsWith('{"result"'));
      if (line) res(JSON.parse(line).result);
      else rej(new Error(out));
    }),
  );
}
