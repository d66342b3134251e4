/**
 * What one short session costs each side, in CPU time rather than in sessions per second (which a busy machine
 * moves by 2-3x): `node --import tsx bench/session-cost.ts [--dir BENCHDIR] [--sessions N] [--conns C]`.
 *
 * Starts Postern and the tuned Dovecot in turn (as `npm run bench` does, pinned to CPU 1), runs N sessions
 * (connect, USER/PASS {PLAIN}, STAT, QUIT) from the load generator (CPU 0; bench/load-sessions.c, or
 * bench/load.ts with --node-load) on C connections, and prints per
 * session: the server's CPU time (every process and thread of it, exited Dovecot processes included), its
 * context switches, and the load generator's own CPU time. CPU per session stays put under load; the
 * sessions/s beside it does not.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { SessionsJob, SessionsResult } from './jobs.ts';
import { cpuOf, HOST, hasDovecot, runPinnedLoad, type ServerHandle, startDovecot, startPostern } from './servers.ts';

const { values: flags } = parseArgs({
  options: {
    dir: { type: 'string' },
    sessions: { type: 'string', default: '2000' },
    conns: { type: 'string', default: '1' },
    rounds: { type: 'string', default: '3' },
    only: { type: 'string' },
    'node-load': { type: 'boolean', default: false },
  },
});
/** The C generator of the session lines (as npm run bench uses it), or bench/load.ts with --node-load. */
const cLoad = ((): string | undefined => {
  if (flags['node-load']) return undefined;
  const bin = join(mkdtempSync(join(tmpdir(), 'postern-cost-')), 'load-sessions');
  const r = spawnSync('cc', ['-O2', '-o', bin, resolve(import.meta.dirname, 'load-sessions.c')]);
  return r.status === 0 ? bin : undefined;
})();

function runLoad(job: SessionsJob): Promise<SessionsResult> {
  const load = resolve(import.meta.dirname, 'load.ts');
  const cmd = cLoad
    ? [cLoad, job.target.host, String(job.target.port), String(job.concurrency), String(job.durationMs)].concat([
        String(job.maxSessions),
        '0',
        '0',
        '0',
        '0',
        job.password,
        ...job.users,
      ])
    : [process.execPath, '--import', 'tsx', load, JSON.stringify(job)];
  return runPinnedLoad<SessionsResult>(cmd);
}

const dir = flags.dir;
if (!dir) throw new Error('--dir: a folder kept by `npm run bench -- --only sessions --keep`');
const users = readFileSync(join(dir, 'users'), 'utf8')
  .split('\n')
  .filter((l) => /^p\d+:/.test(l))
  .map((l) => l.split(':')[0]);
const n = Number(flags.sessions);
const conns = Number(flags.conns);
const job = (s: ServerHandle, count: number): SessionsJob => ({
  kind: 'sessions',
  target: { host: HOST, port: s.port },
  users,
  password: 'bench-plain-secret',
  mechanism: 'pass',
  concurrency: conns,
  durationMs: 600_000,
  maxSessions: count,
});
const kinds = (flags.only ?? `postern${hasDovecot() ? ',dovecot' : ''}`).split(',');
const mailRoot = join(dir, 'mail');
for (let round = 0; round < Number(flags.rounds); round++) {
  for (const kind of round % 2 === 0 ? kinds : [...kinds].reverse()) {
    const s =
      kind === 'postern'
        ? await startPostern({ dir, mailRoot, usersFile: join(dir, 'users'), workers: 1, cpu: '1' })
        : await startDovecot({
            dir,
            mailRoot,
            usersFile: join(dir, 'dovecot-users'),
            maxConnections: 100,
            tuned: true,
            cpu: '1',
          });
    try {
      await runLoad(job(s, 3_000)); // warm-up: JIT (a fresh Postern needs ~2 000 sessions), caches, listings
      const u0 = cpuOf(s.pid);
      const r = await runLoad(job(s, n));
      const u1 = cpuOf(s.pid);
      const per = (x: number) => (x / r.sessions).toFixed(1);
      console.log(
        `${kind.padEnd(8)} ${conns} conn: ${r.perSec.toFixed(0).padStart(5)} sessions/s, server ${per(u1.cpuUs - u0.cpuUs).padStart(6)} µs CPU and ` +
          `${per(u1.switches - u0.switches).padStart(5)} context switches per session, load generator ` +
          `${(r.loadCpuUsPerSession ?? 0).toFixed(1).padStart(6)} µs CPU per session (${r.errors} errors)`,
      );
    } finally {
      await s.stop();
    }
  }
}
