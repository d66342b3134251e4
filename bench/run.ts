/**
 * `npm run bench [-- options]`: Postern against Dovecot on the same generated Maildir tree, on 127.0.0.1.
 *
 * Makes a temp dir with generated mail and users; for every run of every measurement starts a fresh Postern
 * and a fresh private Dovecot (when /usr/sbin/dovecot exists) in its high-performance configuration, each
 * pinned to CPU 1 with taskset, and runs the measurement in a separate load-generator process pinned to CPU 0
 * (bench/load.ts, a raw pipelined POP3 client); servers alternate who goes first, and the table shows the
 * medians with min–max. See docs/bench.md for how to read it.
 *
 * Options:
 *   --quick           small counts, one run each (a smoke test; about two minutes)
 *   --only A,B        only these measurements: idle, sessions, retr, big, list
 *   --client          the client bench instead (bench/client.ts: postern fetch, Pop3Client, mpop)
 *   --runs N          runs per measurement (default 3; the table shows the median)
 *   --no-dovecot      Postern only
 *   --stock           also a Dovecot with stock settings (an extra column; the goal is against the tuned one)
 *   --no-pin          do not pin servers and load generators to CPUs
 *   --no-100mb        skip the 100 MB message (on by default unless --quick)
 *   --workers N       Postern worker processes (server.workers, default 1)
 *   --store postgres  also Postern on the PostgreSQL store (a throwaway cluster; the mail copied into it with
 *                     \`postern store migrate\`), as extra columns "Postern PG ×N" for N frontend processes
 *   --frontends LIST  frontend counts for --store postgres (default 1,2,4; server.workers = N, each worker an
 *                     independent process with its own connection pool); not used by idle and list
 *   --node-load       run the session lines with bench/load.ts too (default: bench/load-sessions.c, compiled
 *                     with cc at start, when a C compiler is there; see docs/bench.md "The load generator")
 *   --json FILE       also write every run's value to FILE
 *   --keep            keep the temp dir (configs, logs, mail) for a look afterwards
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import {
  chmodSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type {
  IdleJob,
  IdleReady,
  IdleResult,
  Job,
  ListingJob,
  ListingResult,
  RetrJob,
  RetrResult,
  SessionsJob,
  SessionsResult,
} from './jobs.ts';
import { linkMessages, makeMaildir, message, writeBigMessage, writeMessages } from './mail.ts';
import { Results } from './report.ts';
import {
  collectGarbage,
  cpuOf,
  HOST,
  hasDovecot,
  hasTaskset,
  type Memory,
  memoryOf,
  POSTERN_BIN,
  pinTree,
  type ServerHandle,
  type ServerName,
  sleep,
  startDovecot,
  startPostern,
} from './servers.ts';

const LOAD = resolve(import.meta.dirname, 'load.ts');
const LOAD_SESSIONS_C = resolve(import.meta.dirname, 'load-sessions.c');
const SCENARIOS = ['idle', 'sessions', 'retr', 'big', 'list'] as const;
type Scenario = (typeof SCENARIOS)[number];

/** The whole bench stops starting new measurements after this; the full run is sized to need about half. */
const BUDGET_MS = 20 * 60_000;

// `npm run bench -- --client [options]`: the client section instead (bench/client.ts, with its own options):
// postern fetch, Pop3Client and mpop against a private Dovecot.
if (process.argv.includes('--client')) {
  const { runClientBench } = await import('./client.ts');
  await runClientBench(process.argv.slice(2));
  process.exit(0);
}

const { values: flags } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    only: { type: 'string' },
    runs: { type: 'string' },
    'no-dovecot': { type: 'boolean', default: false },
    stock: { type: 'boolean', default: false },
    'no-pin': { type: 'boolean', default: false },
    'no-100mb': { type: 'boolean', default: false },
    workers: { type: 'string', default: '1' },
    store: { type: 'string', default: 'maildir' },
    frontends: { type: 'string', default: '1,2,4' },
    json: { type: 'string' },
    'node-load': { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
  strict: true,
});

if (flags.help) {
  const src = readFileSync(new URL(import.meta.url), 'utf8');
  process.stdout.write(`${/\/\*\*([\s\S]*?)\*\//.exec(src)?.[1].replace(/^ \* ?/gm, '') ?? ''}\n`);
  process.exit(0);
}

const quick = flags.quick;
const only = new Set<Scenario>();
for (const s of (flags.only ?? '').split(',').filter(Boolean)) {
  if (!(SCENARIOS as readonly string[]).includes(s)) {
    console.error(`unknown measurement ${JSON.stringify(s)}; known: ${SCENARIOS.join(', ')}`);
    process.exit(64);
  }
  only.add(s as Scenario);
}
const wanted = (s: Scenario) => only.size === 0 || only.has(s);
const runs = Math.max(1, Math.min(20, Number(flags.runs ?? (quick ? 1 : 3)) || 1));
const workers = Math.max(1, Math.min(16, Number(flags.workers) || 1));
if (flags.store !== 'maildir' && flags.store !== 'postgres') {
  console.error('--store must be maildir or postgres');
  process.exit(64);
}
const pgFrontends =
  flags.store === 'postgres'
    ? (flags.frontends ?? '1')
        .split(',')
        .map(Number)
        .filter((n) => Number.isInteger(n) && n >= 1 && n <= 16)
    : [];
const useDovecot = !flags['no-dovecot'] && hasDovecot();
const useStock = useDovecot && flags.stock;
const pin = !flags['no-pin'] && hasTaskset();
/** Every process and thread of the server under test runs on this CPU; load generators on the other. */
const SERVER_CPU = pin ? '1' : undefined;
const LOAD_CPU = '0';

/** Sizes of everything, full and --quick. */
const P = quick
  ? {
      sessionMs: 1_000,
      sessionConns: [1, 8],
      firstLoginUsers: 24,
      retrMessages: 200,
      retrMs: 700,
      retrWarmup: 20,
      bigSizes: [10e6],
      bigMs: 400,
      bigConns: 4,
      listMessages: 2_000,
      idleConns: 400,
    }
  : {
      sessionMs: 3_000,
      sessionConns: [1, 32],
      firstLoginUsers: 96,
      retrMessages: 1_000,
      retrMs: 3_000,
      retrWarmup: 200,
      bigSizes: flags['no-100mb'] ? [10e6] : [10e6, 100e6],
      bigMs: 2_000,
      bigConns: 4,
      listMessages: 50_000,
      idleConns: 2_000,
    };
const MAX_CONNS = Math.max(...P.sessionConns);
/** Messages of 4 KB in each session user's mailbox; the RETR-in-sessions lines fetch this many per session. */
const SESSION_RETRS = 20;
const ARGON_PASSWORD = 'bench-argon2-secret';
const PLAIN_PASSWORD = 'bench-plain-secret';

const log = (msg: string) => process.stderr.write(`${msg}\n`);
const results = new Results();
const started = Date.now();
const overBudget = () => Date.now() - started > BUDGET_MS;
const loadSamples: number[] = [];

// ----- setup ---------------------------------------------------------------------------------------------------

const dir = mkdtempSync(join(tmpdir(), 'postern-bench-'));
chmodSync(dir, 0o755); // Dovecot's processes (nobody, dovecot) must reach the mail and its users file
const mailRoot = join(dir, 'mail');
mkdirSync(mailRoot, { mode: 0o755 });
const servers: ServerHandle[] = [];
const loads = new Set<ChildProcess>();
let cleaning = false;

async function cleanup(): Promise<void> {
  if (cleaning) return;
  cleaning = true;
  for (const c of loads) c.kill('SIGKILL');
  for (const s of servers.splice(0)) await s.stop().catch(() => {});
  await pgBench?.close().catch(() => {});
  if (flags.keep) log(`kept ${dir}`);
  else rmSync(dir, { recursive: true, force: true });
}
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    log(`\n${sig}: stopping`);
    void cleanup().then(() => process.exit(130));
  });
}

/** The argon2id hash `postern user add` writes, with its parameters in the order libsodium (Dovecot) reads. */
function argon2Hash(): string {
  const cfg = join(dir, 'hash.toml');
  const file = join(dir, 'hash-users');
  writeFileSync(cfg, `[auth]\nusers_file = "${file}"\n`);
  const r = spawnSync(process.execPath, [POSTERN_BIN, 'user', 'add', 'template', '--config', cfg], {
    input: `${ARGON_PASSWORD}\n`,
    encoding: 'utf8',
    timeout: 60_000,
  });
  if (r.status !== 0) throw new Error(`postern user add failed: ${r.stderr}`);
  const line = readFileSync(file, 'utf8').split('\n')[0];
  const hash = line.split(':')[1];
  // node-argon2 writes m=…,p=…,t=…; libsodium only accepts m=…,t=…,p=…. Same hash, same cost.
  const m = /^\{ARGON2ID\}\$argon2id\$v=19\$([^$]+)\$(.+)$/.exec(hash);
  if (!m) throw new Error(`unexpected hash format: ${hash.slice(0, 40)}`);
  const params = Object.fromEntries(m[1].split(',').map((kv) => kv.split('=')));
  return `{ARGON2ID}$argon2id$v=19$m=${params.m},t=${params.t},p=${params.p}$${m[2]}`;
}

interface Users {
  /** argon2id users per connection count, for first logins: a fresh set each, so none is cached already. */
  argonFirst: Map<number, string[]>;
  /** argon2id users for repeated logins (two per connection at the most connections). */
  argonRepeat: string[];
  plain: string[];
  idle: string[];
  big: string[];
}

function setupMail(): Users {
  const t0 = Date.now();
  let last = t0;
  const step = (what: string) => {
    log(`  ${what}: ${((Date.now() - last) / 1000).toFixed(1)} s`);
    last = Date.now();
  };
  const hash = argon2Hash();
  step('argon2id hash from postern user add');
  const lines: string[] = [];
  const users: Users = { argonFirst: new Map(), argonRepeat: [], plain: [], idle: [], big: [] };
  const four = (n: number) => message(4096, n);
  const addUser = (name: string, kind: 'argon' | 'plain', messages: number): string => {
    lines.push(`${name}:${kind === 'argon' ? hash : `{PLAIN}${PLAIN_PASSWORD}`}::::::`);
    const maildir = makeMaildir(mailRoot, name);
    if (messages > 0) writeMessages(maildir, messages, 'sized', four);
    return name;
  };
  if (wanted('sessions') || wanted('retr')) {
    for (let i = 0; i < 2 * MAX_CONNS; i++) users.plain.push(addUser(`p${i}`, 'plain', SESSION_RETRS));
  }
  if (wanted('sessions')) {
    for (let i = 0; i < 2 * MAX_CONNS; i++) users.argonRepeat.push(addUser(`r${i}`, 'argon', 10));
    for (const c of P.sessionConns) {
      const list: string[] = [];
      for (let i = 0; i < Math.max(c, P.firstLoginUsers); i++) list.push(addUser(`f${c}-${i}`, 'argon', 10));
      users.argonFirst.set(c, list);
    }
  }
  step('session users');
  const plainUser = (name: string) => lines.push(`${name}:{PLAIN}${PLAIN_PASSWORD}::::::`);
  if (wanted('retr')) {
    plainUser('retr4k');
    writeMessages(makeMaildir(mailRoot, 'retr4k'), P.retrMessages, 'sized', four);
    step('4 KB messages');
  }
  if (wanted('big')) {
    for (const size of P.bigSizes) {
      const mb = Math.round(size / 1e6);
      const copies = mb >= 100 ? 1 : P.bigConns;
      for (let i = 0; i < copies; i++) {
        const name = `big${mb}-${i}`;
        plainUser(name);
        writeBigMessage(makeMaildir(mailRoot, name), size, 0);
      }
    }
    step('large messages');
  }
  if (wanted('list')) {
    const small = message(600, 1);
    plainUser('list-sized');
    plainUser('list-postfix');
    const sized = makeMaildir(mailRoot, 'list-sized');
    writeMessages(sized, P.listMessages, 'sized', () => small);
    linkMessages(sized, makeMaildir(mailRoot, 'list-postfix'), 'postfix');
    step('large mailboxes');
  }
  if (wanted('idle')) {
    for (let i = 0; i < P.idleConns; i++) {
      const name = `i${i}`;
      users.idle.push(name);
      plainUser(name);
      makeMaildir(mailRoot, name);
    }
    step('idle users');
  }
  const text = `${lines.join('\n')}\n`;
  writeFileSync(join(dir, 'users'), text, { mode: 0o600 });
  writeFileSync(join(dir, 'dovecot-users'), text, { mode: 0o644 });
  if (useDovecot) {
    const r = spawnSync('chown', ['-R', 'nobody:nogroup', mailRoot]);
    if (r.status !== 0) throw new Error(`chown failed: ${r.stderr}`);
    step('chown to nobody for Dovecot');
  }
  log(`mail generated in ${((Date.now() - t0) / 1000).toFixed(1)} s under ${dir}`);
  return users;
}

// ----- servers -------------------------------------------------------------------------------------------------

const kinds: ServerName[] = [
  'Postern',
  ...pgFrontends.map((n): ServerName => `Postern PG ×${n}`),
  ...(useDovecot ? (['Dovecot'] as const) : []),
  ...(useStock ? (['Dovecot stock'] as const) : []),
];

/** The PostgreSQL of --store postgres: a throwaway cluster pinned with the servers, holding a copy of the mail. */
let pgBench: { url: string; close(): Promise<void> } | undefined;

async function setupPostgres(): Promise<void> {
  const [{ startTestPg }, { migrate }, { createPgPool }, { migrateStores }] = await Promise.all([
    import('../test/pg/cluster.ts'),
    import('../src/storage/postgres/schema.ts'),
    import('../src/storage/postgres/pool.ts'),
    import('../src/cli/store-migrate.ts'),
  ]);
  const t0 = Date.now();
  // PostgreSQL's defaults for durability (fsync, synchronous_commit, full_page_writes on), as an operator runs
  // it: the tests' cluster turns them off.
  const db = await startTestPg({ durable: true });
  pgBench = db;
  // The database shares the server's core: a PostgreSQL store costs what the server and the database cost.
  const postmaster = db.postmasterPid();
  if (SERVER_CPU && postmaster) pinTree(postmaster, SERVER_CPU);
  const pool = createPgPool({ url: db.url, poolSize: 1 });
  await migrate(pool);
  await pool.end();
  const { MaildirStore } = await import('../src/storage/maildir/store.ts');
  const { PostgresStore } = await import('../src/storage/postgres/store.ts');
  const from = new MaildirStore({ root: mailRoot, layout: '%u/Maildir' });
  const to = new PostgresStore({ url: db.url, poolSize: 4 });
  // Every mailbox but the large listing ones (the list measurement is Maildir-specific).
  const boxes = readdirSync(mailRoot).filter((n) => !n.startsWith('list'));
  const c = await migrateStores(
    { store: from, label: 'maildir', list: async () => boxes },
    { store: to, label: 'postgres', list: async () => [] },
    boxes,
    () => {},
  );
  await from.close();
  await to.close();
  log(
    `  PostgreSQL store: ${c.mailboxes} mailboxes, ${c.copied} messages copied in ${((Date.now() - t0) / 1000).toFixed(1)} s`,
  );
}

function startServer(kind: ServerName): Promise<ServerHandle> {
  const pgKind = /^Postern PG ×(\d+)$/.exec(kind);
  if (pgKind && pgBench)
    return startPostern({
      dir,
      mailRoot,
      usersFile: join(dir, 'users'),
      workers: Number(pgKind[1]),
      cpu: SERVER_CPU,
      pgUrl: pgBench.url,
      name: kind,
    });
  if (kind === 'Postern')
    return startPostern({ dir, mailRoot, usersFile: join(dir, 'users'), workers, cpu: SERVER_CPU });
  return startDovecot({
    dir,
    mailRoot,
    usersFile: join(dir, 'dovecot-users'),
    maxConnections: P.idleConns + MAX_CONNS,
    tuned: kind === 'Dovecot',
    cpu: SERVER_CPU,
  });
}

// ----- load processes ------------------------------------------------------------------------------------------

/**
 * The C load generator of the session lines (bench/load-sessions.c), compiled into the temp dir; undefined when
 * --node-load is given or no C compiler works (then bench/load.ts runs them, as it runs every other line).
 */
const sessionsBin = ((): string | undefined => {
  if (flags['node-load']) return undefined;
  const bin = join(dir, 'load-sessions');
  const r = spawnSync('cc', ['-O2', '-o', bin, LOAD_SESSIONS_C], { encoding: 'utf8', timeout: 60_000 });
  if (r.status === 0) return bin;
  log(
    `  (no C compiler for bench/load-sessions.c: the session lines use bench/load.ts; ${r.error?.message ?? r.stderr.trim().split('\n')[0]})`,
  );
  return undefined;
})();
const generator = sessionsBin ? 'C (bench/load-sessions.c)' : 'Node (bench/load.ts)';

/** The command line of a load process: the C generator for {PLAIN}/USER-PASS session jobs, bench/load.ts else. */
function loadCommand(job: Job): [string, string[]] {
  if (sessionsBin && job.kind === 'sessions' && job.mechanism === 'pass') {
    const flag = (b: boolean | undefined) => (b ? '1' : '0');
    return [
      sessionsBin,
      [
        job.target.host,
        String(job.target.port),
        String(job.concurrency),
        String(job.durationMs),
        String(job.maxSessions),
        String(job.retr ?? 0),
        flag(job.pipelined),
        flag(job.onceEach),
        flag(job.warmupEachUser),
        job.password,
        ...job.users,
      ],
    ];
  }
  return [process.execPath, ['--import', 'tsx', LOAD, JSON.stringify(job)]];
}

interface LoadRun<R> {
  child: ChildProcess;
  /** Resolves with the `ready` line of an idle job. */
  /** The next `ready` line of an idle job (one per stage). */
  nextReady(): Promise<IdleReady>;
  result: Promise<R>;
}

function startLoad<R>(job: Job, timeoutMs: number): LoadRun<R> {
  const [cmd, args] = loadCommand(job);
  const child = pin
    ? spawn('taskset', ['-c', LOAD_CPU, cmd, ...args], { stdio: ['pipe', 'pipe', 'inherit'] })
    : spawn(cmd, args, { stdio: ['pipe', 'pipe', 'inherit'] });
  loads.add(child);
  let out = '';
  const readyLines: IdleReady[] = [];
  const readyWaiters: ((r: IdleReady) => void)[] = [];
  const onReady = (r: IdleReady) => {
    const waiter = readyWaiters.shift();
    if (waiter) waiter(r);
    else readyLines.push(r);
  };
  const nextReady = () => {
    const line = readyLines.shift();
    return line ? Promise.resolve(line) : new Promise<IdleReady>((r) => readyWaiters.push(r));
  };
  const result = new Promise<R>((res, rej) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      rej(new Error(`load generator timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    child.stdout?.setEncoding('utf8');
    child.stdout?.on('data', (d: string) => {
      out += d;
      let nl = out.indexOf('\n');
      while (nl !== -1) {
        const line = out.slice(0, nl);
        out = out.slice(nl + 1);
        nl = out.indexOf('\n');
        let msg: { ready?: true; result?: R; error?: string };
        try {
          msg = JSON.parse(line);
        } catch {
          continue;
        }
        if (msg.ready) onReady(msg as IdleReady);
        else if (msg.error) rej(new Error(msg.error));
        else if (msg.result) res(msg.result);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      loads.delete(child);
      rej(new Error(`load generator exited with ${code}`));
    });
  });
  result.catch(() => {});
  return { child, nextReady, result };
}

const runLoad = <R>(job: Job, timeoutMs: number): Promise<R> => startLoad<R>(job, timeoutMs).result;

// ----- measurements --------------------------------------------------------------------------------------------

const target = (s: ServerHandle) => ({ host: HOST, port: s.port });

/** Stages of the idle measurement: memory is read with a quarter, half, three quarters and all connections open. */
const IDLE_STAGES = 4;

/**
 * Memory per idle connection: the slope of the server's memory against the number of connections open, by least
 * squares over IDLE_STAGES stages, each read after a garbage collection (Postern) once the memory has settled.
 * A difference of two readings (before and after) gave negative figures at times: what the warm-up left for the
 * garbage collector, or a heap that the server shrank meanwhile, weighed more than the connections' growth. The
 * stages are all taken with connections open in the same process, so one-off changes (the heap growing to its
 * working size with the first connections) fall outside the slope or show as scatter around it.
 */
async function measureIdle(s: ServerHandle, users: Users): Promise<void> {
  // Warm up the login path first, so the baseline has the code for it loaded.
  await runLoad<SessionsResult>(sessionsJob(s, users.idle.slice(0, 8), PLAIN_PASSWORD, 1, 300), 60_000);
  const before = await settledMemory(s);
  const stages = Array.from({ length: IDLE_STAGES }, (_, k) => Math.round(((k + 1) * users.idle.length) / IDLE_STAGES));
  const job: IdleJob = {
    kind: 'idle',
    target: target(s),
    users: users.idle,
    password: PLAIN_PASSWORD,
    mechanism: 'apop',
    openConcurrency: 16,
    openTimeoutMs: 240_000,
    stages,
  };
  const load = startLoad<IdleResult>(job, 300_000);
  const points: { n: number; mem: Memory }[] = [];
  let ready: IdleReady | null = null;
  for (let k = 0; k < stages.length; k++) {
    ready = await Promise.race([load.nextReady(), load.result.then(() => null)]);
    if (!ready) throw new Error('idle job ended before it was ready');
    points.push({ n: ready.opened, mem: await settledMemory(s) });
    if (k < stages.length - 1) load.child.stdin?.write('next\n');
  }
  load.child.stdin?.end('close\n');
  await load.result;
  const after = points[points.length - 1].mem;
  const n = ready?.opened ?? 0;
  const mib = (kib: number) => (kib / 1024).toFixed(0);
  log(
    `  ${s.name}: ${n} idle connections (${ready?.failed} failed${ready?.firstError ? `: ${ready.firstError}` : ''}) ` +
      `opened in ${ready?.seconds.toFixed(1)} s; processes [${before.names}] → [${after.names}]; ` +
      `RSS ${mib(before.rssKiB)} → ${points.map((p) => mib(p.mem.rssKiB)).join(' → ')} MiB, ` +
      `PSS ${mib(before.pssKiB)} → ${points.map((p) => mib(p.mem.pssKiB)).join(' → ')} MiB ` +
      `(at ${points.map((p) => p.n).join(', ')} connections)`,
  );
  if (n === 0) return;
  if (n < P.idleConns) results.note(`${s.name}: only ${n} of ${P.idleConns} idle connections could be opened`);
  const rss = slope(points.map((p) => [p.n, p.mem.rssKiB]));
  const pss = slope(points.map((p) => [p.n, p.mem.pssKiB]));
  if (rss < 0 || pss < 0) {
    results.note(`${s.name}: memory fell as connections were opened (noise larger than their cost); see the log`);
  }
  const section = `Memory, ${P.idleConns} idle logged-in connections (APOP), per connection = slope of memory over ${IDLE_STAGES} stages`;
  results.add(section, 'RSS per connection (sum of VmRSS)', 'KiB', 'lower', s.name, rss);
  results.add(section, 'PSS per connection (sum of Pss)', 'KiB', 'lower', s.name, pss);
  results.add(section, 'whole server with the connections open, PSS', 'MiB', 'lower', s.name, after.pssKiB / 1024);
}

/**
 * The server's memory once it has stopped moving: Postern collects its garbage first (collectGarbage); then
 * memory is read every 500 ms until three readings of PSS lie within 1 % (or 10 s have passed); the median of
 * the last three.
 */
async function settledMemory(s: ServerHandle): Promise<Memory> {
  collectGarbage(s);
  const readings: Memory[] = [];
  const deadline = Date.now() + 10_000;
  for (;;) {
    await sleep(500);
    readings.push(memoryOf(s.pid));
    const last = readings.slice(-3);
    const pss = last.map((m) => m.pssKiB).sort((a, b) => a - b);
    if ((last.length === 3 && pss[2] - pss[0] <= 0.01 * pss[2]) || Date.now() > deadline) {
      return [...last].sort((a, b) => a.pssKiB - b.pssKiB)[Math.floor((last.length - 1) / 2)];
    }
  }
}

/** Least-squares slope of y over x. */
function slope(points: [number, number][]): number {
  const n = points.length;
  const mx = points.reduce((a, p) => a + p[0], 0) / n;
  const my = points.reduce((a, p) => a + p[1], 0) / n;
  const sxy = points.reduce((a, p) => a + (p[0] - mx) * (p[1] - my), 0);
  const sxx = points.reduce((a, p) => a + (p[0] - mx) ** 2, 0);
  return sxx === 0 ? 0 : sxy / sxx;
}

function sessionsJob(
  s: ServerHandle,
  users: string[],
  password: string,
  concurrency: number,
  durationMs: number,
  extra: Partial<SessionsJob> = {},
): SessionsJob {
  return {
    kind: 'sessions',
    target: target(s),
    users,
    password,
    mechanism: 'pass',
    concurrency,
    durationMs,
    maxSessions: 1_000_000,
    ...extra,
  };
}

/**
 * Untimed sessions on a freshly started server before the session lines (and, with `retr`, the RETR-in-sessions
 * lines) are timed, as the long-session RETR lines have their warm-up RETRs: both servers' caches of the
 * {PLAIN} users, and Postern's JIT. Measured here on one fresh Postern, six 2-second runs of one-connection
 * sessions in a row: 2 640, 2 170, 1 900, 1 410, 1 390, 1 090 µs of server CPU per session, so a line timed
 * first after the start measured a server still compiling its session code (which no server that runs for
 * days is); a few thousand sessions is what V8 takes to optimise it.
 */
async function warmUp(s: ServerHandle, users: Users, retr = 0): Promise<void> {
  await runLoad<SessionsResult>(
    sessionsJob(s, users.plain, PLAIN_PASSWORD, Math.min(8, MAX_CONNS), quick ? 1_000 : 4_000, {
      maxSessions: quick ? 1_000 : 4_000,
      retr,
      pipelined: retr > 0,
    }),
    60_000,
  );
}

async function measureSessions(s: ServerHandle, users: Users, run: number): Promise<void> {
  await warmUp(s, users);
  for (const c of P.sessionConns) {
    const variants: { label: string; job: SessionsJob }[] = [
      {
        label: `{PLAIN} user, ${c} connection${c > 1 ? 's' : ''}`,
        job: sessionsJob(s, users.plain, PLAIN_PASSWORD, c, P.sessionMs),
      },
      {
        label: `argon2id user, first login (not cached), ${c} connection${c > 1 ? 's' : ''}`,
        job: sessionsJob(s, users.argonFirst.get(c) ?? [], ARGON_PASSWORD, c, 120_000, { onceEach: true }),
      },
      {
        label: `argon2id user, repeated login, ${c} connection${c > 1 ? 's' : ''}`,
        job: sessionsJob(s, users.argonRepeat, ARGON_PASSWORD, c, P.sessionMs, { warmupEachUser: true }),
      },
    ];
    for (const [i, v] of variants.entries()) {
      const cpu0 = cpuOf(s.pid);
      const r = await runLoad<SessionsResult>(v.job, 180_000);
      const serverUs = (cpuOf(s.pid).cpuUs - cpu0.cpuUs) / Math.max(1, r.sessions);
      log(
        `  ${s.name} run ${run}: ${v.label}: ${r.perSec.toFixed(1)} sessions/s ` +
          `(${r.sessions} in ${r.seconds.toFixed(1)} s, ${r.errors} errors${r.firstError ? `: ${r.firstError}` : ''}; ` +
          `server ${serverUs.toFixed(0)} µs, load generator ${(r.loadCpuUsPerSession ?? 0).toFixed(0)} µs CPU per session)`,
      );
      if (r.errors > 0) results.note(`${s.name}: errors in "${v.label}": ${r.firstError}`);
      results.add('Sessions: connect, USER/PASS, STAT, QUIT', v.label, 'sessions/s', 'higher', s.name, r.perSec);
      // The {PLAIN} lines also as the server's CPU time per session (all its processes and threads): a figure
      // that a busy machine moves far less than sessions/s, and that no CPU share between processes skews.
      if (i === 0) {
        results.add(
          'Sessions: connect, USER/PASS, STAT, QUIT',
          `{PLAIN} user, ${c} connection${c > 1 ? 's' : ''}, server CPU time per session`,
          'µs',
          'lower',
          s.name,
          serverUs,
        );
      }
    }
  }
}

async function measureRetrSessions(s: ServerHandle, users: Users, run: number): Promise<void> {
  const c = MAX_CONNS;
  await warmUp(s, users, SESSION_RETRS);
  for (const pipelined of [false, true]) {
    const job = sessionsJob(s, users.plain, PLAIN_PASSWORD, c, P.sessionMs, { retr: SESSION_RETRS, pipelined });
    const r = await runLoad<SessionsResult>(job, 180_000);
    const how = pipelined ? `${SESSION_RETRS} RETRs pipelined in one write` : 'one RETR at a time';
    const perSec = r.messages / r.seconds;
    log(
      `  ${s.name} run ${run}: sessions of ${SESSION_RETRS} RETR 4 KB, ${how}, ${c} connections: ` +
        `${perSec.toFixed(0)} msg/s (${r.sessions} sessions, ${r.errors} errors${r.firstError ? `: ${r.firstError}` : ''})`,
    );
    if (r.errors > 0) results.note(`${s.name}: errors in RETR sessions (${how}): ${r.firstError}`);
    results.add(
      `RETR of 4 KB messages in sessions of ${SESSION_RETRS} (connect, USER/PASS {PLAIN}, STAT, RETR ×${SESSION_RETRS}, QUIT), ${c} connections`,
      how,
      'messages/s',
      'higher',
      s.name,
      perSec,
    );
  }
}

function retrJob(s: ServerHandle, users: string[], messages: number, batch: number, over: Partial<RetrJob>): RetrJob {
  return {
    kind: 'retr',
    target: target(s),
    users,
    password: PLAIN_PASSWORD,
    mechanism: 'apop',
    messages,
    batch,
    warmup: P.retrWarmup,
    maxRetr: 1_000_000,
    durationMs: P.retrMs,
    ...over,
  };
}

async function measureRetr(s: ServerHandle, users: Users, run: number): Promise<void> {
  await measureRetrSessions(s, users, run);
  for (const batch of [1, 32]) {
    const r = await runLoad<RetrResult>(retrJob(s, ['retr4k'], P.retrMessages, batch, {}), 120_000);
    const how = batch === 1 ? 'one command at a time' : `pipelined, ${batch} per write`;
    log(
      `  ${s.name} run ${run}: RETR 4 KB ${how}: ${r.msgsPerSec.toFixed(0)} msg/s, ${r.mbPerSec.toFixed(1)} MB/s` +
        ` (${r.retrieved} messages${r.sizeMismatches ? `, ${r.sizeMismatches} size mismatches` : ''})`,
    );
    if (r.sizeMismatches > 0) results.note(`${s.name}: RETR bodies differed from the announced octet count`);
    const section = `RETR of 4 KB messages in one long session (${P.retrMessages.toLocaleString('en-US')}-message mailbox)`;
    results.add(section, `${how}`, 'messages/s', 'higher', s.name, r.msgsPerSec);
  }
}

async function measureBig(s: ServerHandle, run: number): Promise<void> {
  for (const size of P.bigSizes) {
    const mb = Math.round(size / 1e6);
    for (const conns of mb >= 100 ? [1] : [1, P.bigConns]) {
      const users = Array.from({ length: conns }, (_, i) => `big${mb}-${i}`);
      // RETR in a loop for bigMs (at least one each), after one untimed RETR for the 10 MB message: at 1 GB/s a
      // 10 MB RETR takes 10 ms, too short to time alone on a shared machine.
      const cpu0 = cpuOf(s.pid).cpuUs;
      const r = await runLoad<RetrResult>(
        retrJob(s, users, 1, 1, { warmup: mb >= 100 ? 0 : 1, maxRetr: 10_000, durationMs: P.bigMs }),
        240_000,
      );
      // The server's CPU time over the whole job (warm-up included, and counted; the login is a few ms): MB per CPU-second is
      // what one core would carry with nothing else on it, a steadier figure than MB/s on a shared machine.
      const cpu = (cpuOf(s.pid).cpuUs - cpu0) / 1e6;
      const perCpu = cpu > 0 ? (r.bytes + r.warmupBytes) / 1e6 / cpu : 0;
      log(
        `  ${s.name} run ${run}: RETR ${mb} MB, ${conns} conn: ${r.mbPerSec.toFixed(0)} MB/s (${r.retrieved} in ${r.seconds.toFixed(2)} s), ` +
          `server CPU ${cpu.toFixed(2)} s: ${perCpu.toFixed(0)} MB per CPU-second`,
      );
      if (r.sizeMismatches > 0) results.note(`${s.name}: RETR ${mb} MB body differed from the announced octet count`);
      results.add(
        'Large messages',
        `RETR of a ${mb} MB message, ${conns} connection${conns > 1 ? 's (own users), total' : ''}`,
        'MB/s',
        'higher',
        s.name,
        r.mbPerSec,
      );
      if (perCpu > 0) {
        results.add(
          'Large messages',
          `RETR of a ${mb} MB message, ${conns} connection${conns > 1 ? 's' : ''}: sent per CPU-second of the server`,
          'MB',
          'higher',
          s.name,
          perCpu,
        );
      }
    }
  }
}

/** Makes the next login "cold": no server cache, and every message back in new/ as delivered. */
function resetListMailbox(user: string): void {
  const maildir = join(mailRoot, user, 'Maildir');
  // Postern's caches (not its lock files, which live with the Maildir).
  for (const name of ['postern-sizes', 'postern-listing']) rmSync(join(maildir, name), { force: true });
  for (const d of ['dovecot', 'dovecot-stock']) {
    rmSync(join(dir, d, 'var', 'index', user), { recursive: true, force: true });
    rmSync(join(dir, d, 'var', 'control', user), { recursive: true, force: true });
  }
  for (const name of readdirSync(join(maildir, 'cur'))) {
    const colon = name.indexOf(':');
    renameSync(join(maildir, 'cur', name), join(maildir, 'new', colon === -1 ? name : name.slice(0, colon)));
  }
}

async function measureList(s: ServerHandle, run: number): Promise<void> {
  for (const style of ['sized', 'postfix'] as const) {
    const user = `list-${style}`;
    resetListMailbox(user);
    // A mailbox changed within the last second is read again at every open (listing.ts, RACY_MS); real
    // mailboxes are not renamed right before each login, so let the reset age first.
    await sleep(1200);
    const job: ListingJob = {
      kind: 'listing',
      target: target(s),
      user,
      password: PLAIN_PASSWORD,
      mechanism: 'pass',
      logins: 2,
      expectMessages: P.listMessages,
    };
    const r = await runLoad<ListingResult>(job, 300_000);
    if (r.inUseRetries > 0) {
      results.note(
        `${s.name}: a login right after the previous session's QUIT got -ERR [IN-USE] (${r.inUseRetries} retries); the lock is released after the +OK`,
      );
    }
    const names = style === 'sized' ? 'names with ,S=,W=' : 'Postfix names, no sizes';
    const n = P.listMessages.toLocaleString('en-US');
    r.sessions.forEach((t, i) => {
      const phase = i === 0 ? 'first login (cold)' : 'second login';
      log(
        `  ${s.name} run ${run}: ${n} msgs, ${names}, ${phase}: login ${t.loginMs.toFixed(1)} ms, STAT ${t.statMs.toFixed(1)}, ` +
          `LIST ${t.listMs.toFixed(1)}, UIDL ${t.uidlMs.toFixed(1)} ms`,
      );
      const section = `${n}-message mailbox, ${names}`;
      results.add(section, `${phase}: USER/PASS until +OK, then STAT`, 'ms', 'lower', s.name, t.loginMs + t.statMs);
      results.add(section, `${phase}: LIST`, 'ms', 'lower', s.name, t.listMs);
      results.add(section, `${phase}: UIDL`, 'ms', 'lower', s.name, t.uidlMs);
    });
  }
}

// ----- main ----------------------------------------------------------------------------------------------------

/** Both cores' load: the 1-minute load average, sampled before each measurement for the report. */
function noteLoad(what: string): void {
  const l = loadavg()[0];
  loadSamples.push(l);
  log(`  (load average ${l.toFixed(2)} before ${what})`);
}

/**
 * Runs a measurement `times` times on every server, each time on a freshly started server (stopped after),
 * alternating who goes first so neither always runs on a machine the other just warmed or loaded.
 */
async function forEachServer(
  name: string,
  fn: (s: ServerHandle, run: number) => Promise<void>,
  times = runs,
): Promise<void> {
  for (let run = 1; run <= times; run++) {
    const order = run % 2 === 1 ? kinds : [...kinds].reverse();
    for (const kind of order) {
      // Memory of idle sessions and the large-mailbox listing are measured on Maildir only.
      if ((name === 'idle' || name === 'list') && kind.startsWith('Postern PG')) continue;
      if (overBudget()) {
        results.note(`${name}: stopped after the time budget; fewer runs than asked`);
        return;
      }
      let s: ServerHandle | undefined;
      try {
        s = await startServer(kind);
        servers.push(s);
        noteLoad(`${name}, ${kind}, run ${run}`);
        await fn(s, run);
      } catch (e) {
        log(`  ${kind} run ${run}: ${name} failed: ${e instanceof Error ? e.message : e}`);
        results.note(`${kind}: ${name} failed: ${e instanceof Error ? e.message.split('\n')[0] : e}`);
      } finally {
        if (s) {
          servers.splice(servers.indexOf(s), 1);
          await s.stop().catch(() => {});
        }
      }
    }
  }
}

async function main(): Promise<number> {
  log(
    `Postern bench${quick ? ' (--quick)' : ''}: ${runs} run(s) per measurement, median shown; ` +
      `servers: ${kinds.join(', ')}${useDovecot ? '' : hasDovecot() ? ' (Dovecot skipped: --no-dovecot)' : ' (Dovecot not installed)'}; ` +
      (pin ? `servers pinned to CPU ${SERVER_CPU}, load generators to CPU ${LOAD_CPU}` : 'no CPU pinning'),
  );
  const load0 = loadavg()[0];
  const users = setupMail();
  if (pgFrontends.length > 0) await setupPostgres();

  // Memory first; it is measured once (it hardly varies from run to run).
  if (wanted('idle')) {
    log('[idle] memory per idle logged-in connection');
    await forEachServer('idle', (s) => measureIdle(s, users), 1);
  }
  if (wanted('sessions')) {
    log('[sessions] connect, USER/PASS, STAT, QUIT');
    await forEachServer('sessions', (s, run) => measureSessions(s, users, run));
  }
  if (wanted('retr')) {
    log('[retr] RETR of 4 KB messages');
    await forEachServer('retr', (s, run) => measureRetr(s, users, run));
  }
  if (wanted('big')) {
    log('[big] RETR of large messages');
    await forEachServer('big', measureBig);
  }
  if (wanted('list')) {
    log('[list] STAT/LIST/UIDL on a large mailbox');
    await forEachServer('list', measureList);
  }

  const secs = (Date.now() - started) / 1000;
  const cpus = spawnSync('nproc', { encoding: 'utf8' }).stdout.trim();
  const loads = loadSamples.length > 0 ? loadSamples : [load0];
  const header =
    `Postern bench${quick ? ' --quick' : ''}: median (min–max) of ${runs} run(s) (memory: 1 run), ${secs.toFixed(0)} s, ` +
    `node ${process.version}, ${cpus} CPUs, ${pin ? `servers on CPU ${SERVER_CPU} and load on CPU ${LOAD_CPU} (taskset)` : 'not pinned'}, ` +
    `load average ${load0.toFixed(1)} at start, ${Math.min(...loads).toFixed(1)}–${Math.max(...loads).toFixed(1)} before the measurements, ` +
    `${loadavg()[0].toFixed(1)} at end, Postern workers = ${workers}, session lines generated by ${generator}` +
    (useDovecot
      ? `, ${spawnSync('dovecot', ['--version'], { encoding: 'utf8' }).stdout.trim().split(' ')[0]} (tuned: high-performance mode${useStock ? '; stock as an extra column' : ''})`
      : '');
  const caveats = [
    'Each server ran alone on one core, freshly started for every run, with the same Maildir tree and users.',
    `A load average above ${cpus === '' ? 'the CPU count' : `about ${Math.max(0.5, Number(cpus) / 2 - 0.5)}`} before a measurement means other work shared the cores: read such ratios as rough, and any within 0.8–1.25 as even.`,
  ];
  if (Math.max(...loads) > 1)
    caveats.push(
      `The machine was not quiet (load up to ${Math.max(...loads).toFixed(1)}): absolute figures are low and noisy; ratios from one run are more reliable than the absolute numbers.`,
    );
  process.stdout.write(
    `\n${header}\n\n${results.table(kinds)}\n\nCaveats:\n${caveats.map((c) => `- ${c}`).join('\n')}\n`,
  );
  if (results.notes.length > 0) process.stdout.write(`\nNotes:\n${results.notes.map((n) => `- ${n}`).join('\n')}\n`);
  if (flags.json) {
    writeFileSync(flags.json, `${JSON.stringify({ header, ...results.toJSON() }, null, 2)}\n`);
    log(`raw values written to ${flags.json}`);
  }
  return results.rows.length > 0 ? 0 : 1;
}

let code = 1;
try {
  code = await main();
} catch (e) {
  log(`bench failed: ${e instanceof Error ? (e.stack ?? e.message) : e}`);
  for (const s of servers) log(`${s.name} log: ${s.logPath}`);
} finally {
  await cleanup();
}
process.exit(code);
