/**
 * What a POP3 session costs Postern on the PostgreSQL store, in CPU time of the server and of the database
 * together (steadier than sessions per second on a shared machine), against Postern on Maildir, or two
 * versions of Postern against each other:
 *
 *   node --import tsx bench/pg-session-cost.ts --dir BENCHDIR [--retr 20] [--pipelined] [--sessions N]
 *        [--conns C] [--rounds R] [--bin A.js,B.js] [--maildir] [--unix] [--pools 1,2] [--prof DIR]
 *
 * BENCHDIR is a folder kept by `npm run bench -- --only sessions --quick --keep` (its users file and the p*
 * mailboxes of 20 messages of 4 KB). Starts a throwaway PostgreSQL with its durability defaults (as the bench
 * does), a database in it for each version (its own `db migrate` and `store migrate` of the p* mailboxes),
 * then alternates, round after round: each Postern (`--bin`: the bin/postern.cjs of each checkout to compare,
 * default this one; `--maildir` adds Postern on the Maildir tree; `--unix`: each also connected by the
 * cluster's Unix-domain socket instead of TCP; `--pools`: each also with these pool sizes instead of 10)
 * pinned with the database to CPU 1, the C load generator on CPU 0, a warm-up, then N sessions of login, STAT, `--retr` RETRs (one at a time, or all in one write with `--pipelined`) and QUIT. Prints per session
 * the CPU time of the server processes and of the database processes, and sessions/s. `--prof DIR`: each
 * server writes a V8 CPU profile there (node --cpu-prof) when it stops. After each round: the lease table's
 * size, dead rows and vacuums so far.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { startTestPg } from '../test/pg/cluster.ts';
import { cpuOf, HOST, POSTERN_BIN, pinTree, runPinnedLoad, type ServerHandle, startPostern } from './servers.ts';

const { values: flags } = parseArgs({
  options: {
    dir: { type: 'string' },
    sessions: { type: 'string', default: '1500' },
    conns: { type: 'string', default: '8' },
    rounds: { type: 'string', default: '3' },
    retr: { type: 'string', default: '20' },
    pipelined: { type: 'boolean', default: false },
    bin: { type: 'string' },
    maildir: { type: 'boolean', default: false },
    unix: { type: 'boolean', default: false },
    pools: { type: 'string' },
    prof: { type: 'string' },
  },
});
const dir = flags.dir;
if (!dir) throw new Error('--dir: a folder kept by `npm run bench -- --only sessions --quick --keep`');
const mailRoot = join(dir, 'mail');
const users = readFileSync(join(dir, 'users'), 'utf8')
  .split('\n')
  .filter((l) => /^p\d+:/.test(l))
  .map((l) => l.split(':')[0]);

const bin = join(mkdtempSync(join(tmpdir(), 'postern-pgcost-')), 'load-sessions');
if (spawnSync('cc', ['-O2', '-o', bin, resolve(import.meta.dirname, 'load-sessions.c')]).status !== 0) {
  throw new Error('cc failed on bench/load-sessions.c');
}

const db = await startTestPg({ durable: true });
const postmaster = db.postmasterPid();
const pinDb = () => {
  if (postmaster) pinTree(postmaster, '1');
};
pinDb();
/**
 * A database of its own for each version of Postern, set up by that version's own CLI (`db migrate`, then
 * `store migrate` of the p* mailboxes), so two versions with different schemas can be compared.
 */
async function databaseFor(bin: string): Promise<string> {
  const url = await db.newDatabase();
  const run = (args: string[]) => {
    const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', cwd: dir });
    if (r.status !== 0) throw new Error(`${bin} ${args.join(' ')}: ${r.stderr || r.stdout}`);
  };
  run(['db', 'migrate', '--url', url]);
  const boxes = readdirSync(mailRoot).filter((n) => users.includes(n));
  run([
    'store',
    'migrate',
    '--from',
    `maildir:${mailRoot}`,
    '--to',
    `postgres:${url}`,
    ...boxes.flatMap((b) => ['--mailbox', b]),
  ]);
  return url;
}

function runLoad(port: number, max: number): Promise<{ sessions: number; perSec: number; errors: number }> {
  const retr = Number(flags.retr);
  const args = [bin, HOST, String(port), flags.conns ?? '8', '600000', String(max), String(retr)];
  args.push(flags.pipelined ? '1' : '0', '0', '0', 'bench-plain-secret', ...users);
  return runPinnedLoad(args);
}

const variants: { label: string; bin?: string; url?: string; poolSize?: number }[] = [];
for (const b of (flags.bin ?? POSTERN_BIN).split(',').filter(Boolean)) {
  const url = await databaseFor(resolve(b));
  variants.push({ label: b, bin: resolve(b), url });
  const socket = flags.unix ? db.viaSocket(url) : undefined;
  if (socket) variants.push({ label: `${b} (unix socket)`, bin: resolve(b), url: socket });
  for (const size of (flags.pools ?? '').split(',').filter(Boolean)) {
    variants.push({ label: `${b} (pool ${size})`, bin: resolve(b), url, poolSize: Number(size) });
  }
}
if (flags.maildir) variants.push({ label: 'maildir' });
const n = Number(flags.sessions);
/** The lease table's size and dead rows (a table written twice per session, whose bloat slows the login). */
async function leaseTable(url: string): Promise<string> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const r = await c.query<{ heap: string; idx: string; dead: string; av: string }>(
      `select pg_relation_size('maildrop_leases') as heap, pg_indexes_size('maildrop_leases') as idx,
              n_dead_tup as dead, autovacuum_count + vacuum_count as av
         from pg_stat_user_tables where relname = 'maildrop_leases'`,
    );
    const x = r.rows[0];
    return x
      ? `; leases: heap ${Number(x.heap) >> 10} KB, index ${Number(x.idx) >> 10} KB, ${x.dead} dead, ${x.av} vacuums`
      : '';
  } finally {
    await c.end();
  }
}
const seen = new Map<string, { server: number[]; db: number[]; rate: number[] }>();
for (let round = 0; round < Number(flags.rounds); round++) {
  for (const v of round % 2 === 0 ? variants : [...variants].reverse()) {
    const s: ServerHandle = await startPostern({
      dir,
      mailRoot,
      usersFile: join(dir, 'users'),
      workers: 1,
      cpu: '1',
      pgUrl: v.url,
      poolSize: v.poolSize,
      bin: v.bin,
      nodeArgs: flags.prof ? ['--cpu-prof', `--cpu-prof-dir=${resolve(flags.prof)}`] : undefined,
    });
    try {
      await runLoad(s.port, 2_000); // warm-up: JIT, the pool's connections, prepared statements
      pinDb(); // the backends the warm-up opened
      const s0 = cpuOf(s.pid);
      const d0 = postmaster ? cpuOf(postmaster) : { cpuUs: 0, switches: 0 };
      const r = await runLoad(s.port, n);
      const s1 = cpuOf(s.pid);
      const d1 = v.url && postmaster ? cpuOf(postmaster) : d0;
      const serverUs = (s1.cpuUs - s0.cpuUs) / r.sessions;
      const dbUs = (d1.cpuUs - d0.cpuUs) / r.sessions;
      // Context switches per session (voluntary and not), of the server's threads and of the database's processes.
      const switches = `${((s1.switches - s0.switches) / r.sessions).toFixed(1)} + ${((d1.switches - d0.switches) / r.sessions).toFixed(1)}`;
      const e = seen.get(v.label) ?? { server: [], db: [], rate: [] };
      e.server.push(serverUs);
      e.db.push(dbUs);
      e.rate.push(r.perSec);
      seen.set(v.label, e);
      console.log(
        `round ${round} ${v.label}: ${r.perSec.toFixed(0)} sessions/s, server ${serverUs.toFixed(0)} µs + database ${dbUs.toFixed(0)} µs CPU per session, ${switches} context switches (${r.errors} errors)${v.url ? await leaseTable(v.url) : ''}`,
      );
    } finally {
      await s.stop();
    }
  }
}
const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
for (const [label, e] of seen) {
  console.log(
    `median ${label}: ${med(e.rate).toFixed(0)} sessions/s, server ${med(e.server).toFixed(0)} µs + database ${med(e.db).toFixed(0)} µs = ${(med(e.server) + med(e.db)).toFixed(0)} µs CPU per session`,
  );
}
await db.close();
