/**
 * A real PostgreSQL for tests (never a mock). `POSTERN_TEST_PG_URL` names an existing server to use (a
 * database is created per test file on it and dropped afterwards); otherwise each test file that asks starts
 * a throwaway cluster of its own: Debian's initdb/pg_ctl in a temporary folder, run as the unprivileged
 * `postgres` user when we are root (initdb refuses root), on a free port of 127.0.0.1 with its socket in that
 * folder, fsync off (nothing here must survive a power cut), stopped and removed when the file is done.
 *
 * When no PostgreSQL is installed the tests skip with the reason, except under CI=true, where a missing peer
 * is a failure (.ci/run installs `postgresql`).
 */
import { spawnSync } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { skipUnlessCi } from '../helpers/peers.ts';
import { freePort } from '../helpers/realServer.ts';

export interface TestPg {
  /** URL of a fresh, empty database for this test file. */
  readonly url: string;
  /** URL of another fresh database (for tests that need two). */
  newDatabase(): Promise<string>;
  /** Stops the server (fast shutdown: sessions are cut); only for a cluster we started. */
  stop(): void;
  /** Starts it again on the same port. */
  start(): void;
  /** True when we started the cluster (stop/start/restart are possible). */
  readonly ours: boolean;
  /** The postmaster's pid, for a cluster we started (the bench pins it to a CPU). */
  postmasterPid(): number | undefined;
  /** `url` by the cluster's Unix-domain socket instead of TCP, for a cluster we started (else undefined). */
  viaSocket(url: string): string | undefined;
  close(): Promise<void>;
}

const PG_ROOT = '/usr/lib/postgresql';
/**
 * Tests run without durability (nothing must survive a power cut, and it is faster); `durable: true` (the
 * bench) keeps PostgreSQL's defaults, fsync, synchronous_commit and full_page_writes on, as an operator runs it.
 */
const NOT_DURABLE = ' -c fsync=off -c synchronous_commit=off -c full_page_writes=off';

/** The folder of initdb and pg_ctl of the newest PostgreSQL installed (or POSTERN_TEST_PG_BIN). */
export function binDir(): string | undefined {
  if (process.env.POSTERN_TEST_PG_BIN) return process.env.POSTERN_TEST_PG_BIN;
  if (!existsSync(PG_ROOT)) return undefined;
  const versions = readdirSync(PG_ROOT)
    .filter((v) => existsSync(join(PG_ROOT, v, 'bin', 'initdb')))
    .sort((a, b) => Number(b) - Number(a));
  return versions.length > 0 ? join(PG_ROOT, versions[0], 'bin') : undefined;
}

/** Why PostgreSQL tests cannot run here, or undefined when they can. Under CI=true this throws instead. */
export function pgSkipReason(): string | undefined {
  if (process.env.POSTERN_TEST_PG_URL) return undefined;
  let reason: string | undefined;
  if (!binDir()) reason = `no PostgreSQL server in ${PG_ROOT}/*/bin (apt-get install postgresql)`;
  else if (process.getuid?.() === 0 && spawnSync('id', ['-u', 'postgres']).status !== 0) {
    reason = 'running as root and there is no "postgres" user to run initdb as';
  }
  return skipUnlessCi(reason) || undefined;
}

function run(cmd: string, args: string[], asPostgres: boolean): void {
  const [file, argv] = asPostgres ? ['runuser', ['-u', 'postgres', '--', cmd, ...args]] : [cmd, args];
  const r = spawnSync(file, argv, { encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0) {
    throw new Error(`${cmd} ${args.join(' ')} failed (${r.status ?? r.signal}): ${r.stderr || r.stdout}`);
  }
}

let dbCounter = 0;

async function createDatabase(adminUrl: string): Promise<string> {
  const name = `postern_t${process.pid}_${Date.now().toString(36)}_${++dbCounter}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    await admin.query(`create database ${name}`);
  } finally {
    await admin.end();
  }
  const u = new URL(adminUrl);
  u.pathname = `/${name}`;
  return u.toString();
}

async function dropDatabase(adminUrl: string, url: string): Promise<void> {
  const name = new URL(url).pathname.slice(1);
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  try {
    await admin.query(`drop database if exists ${name} with (force)`);
  } finally {
    await admin.end();
  }
}

/**
 * The PostgreSQL of this test file: call once (at the top of a describe, before the tests) and close in
 * `after`. Throws when PostgreSQL is missing; check pgSkipReason() first. `settings` are more server settings
 * (`name=value`, e.g. shared_preload_libraries=citus) for a cluster started here; an external one ignores them.
 */
export async function startTestPg(options: { durable?: boolean; settings?: string[] } = {}): Promise<TestPg> {
  const external = process.env.POSTERN_TEST_PG_URL;
  if (external) {
    const host = new URL(external).hostname;
    if (!['127.0.0.1', 'localhost', '::1', '[::1]', ''].includes(host)) {
      throw new Error(`POSTERN_TEST_PG_URL must point at a loopback address, not ${host}`);
    }
    const made: string[] = [];
    const newDatabase = async () => {
      const url = await createDatabase(external);
      made.push(url);
      return url;
    };
    const url = await newDatabase();
    const unsupported = () => {
      throw new Error('stop/start need a cluster started by the tests (unset POSTERN_TEST_PG_URL)');
    };
    return {
      url,
      newDatabase,
      ours: false,
      postmasterPid: () => undefined,
      viaSocket: () => undefined,
      stop: unsupported,
      start: unsupported,
      async close() {
        for (const u of made) await dropDatabase(external, u).catch(() => {});
      },
    };
  }
  const bin = binDir();
  if (!bin) throw new Error(pgSkipReason() ?? 'PostgreSQL missing');
  const asPostgres = process.getuid?.() === 0;
  const dir = mkdtempSync(join(tmpdir(), 'postern-pg-'));
  if (asPostgres) {
    const uid = Number(spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).stdout.trim());
    const gid = Number(spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).stdout.trim());
    chownSync(dir, uid, gid);
  }
  const data = join(dir, 'data');
  const port = await freePort();
  let running = false;
  const start = () => {
    run(
      join(bin, 'pg_ctl'),
      [
        '-D',
        data,
        '-l',
        join(dir, 'log'),
        '-w',
        '-t',
        '60',
        'start',
        '-o',
        `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c max_connections=200${options.durable ? '' : NOT_DURABLE}${(options.settings ?? []).map((x) => ` -c ${x}`).join('')}`,
      ],
      asPostgres,
    );
    running = true;
  };
  const stop = () => {
    if (!running) return;
    running = false;
    run(join(bin, 'pg_ctl'), ['-D', data, '-m', 'fast', '-w', 'stop'], asPostgres);
  };
  // If the test process dies without its `after`, the cluster must not outlive it.
  const onExit = () => {
    try {
      stop();
    } catch {
      // best effort
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    run(join(bin, 'initdb'), ['-D', data, '-A', 'trust', '-U', 'postern', '--no-sync', '-E', 'UTF8'], asPostgres);
    start();
  } catch (e) {
    onExit();
    throw e;
  }
  process.once('exit', onExit);
  // A test file stopped by a signal (the runner's timeout, Ctrl-C) must not leave the cluster running either.
  const onSignal = (signal: NodeJS.Signals) => {
    onExit();
    process.kill(process.pid, signal);
  };
  for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.once(sig, onSignal);
  const adminUrl = `postgres://postern@127.0.0.1:${port}/postgres`;
  const newDatabase = () => createDatabase(adminUrl);
  const url = await newDatabase();
  return {
    url,
    newDatabase,
    ours: true,
    postmasterPid: () => {
      try {
        return Number(readFileSync(join(data, 'postmaster.pid'), 'utf8').split('\n')[0]) || undefined;
      } catch {
        return undefined;
      }
    },
    viaSocket: (u: string) => {
      const parsed = new URL(u);
      return `postgres://${parsed.username}@/${parsed.pathname.slice(1)}?host=${encodeURIComponent(dir)}&port=${port}`;
    },
    stop,
    start,
    async close() {
      process.removeListener('exit', onExit);
      for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.removeListener(sig, onSignal);
      onExit();
    },
  };
}
