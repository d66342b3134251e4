/**
 * `node --import tsx bench/store-cost.ts`: what a POP3 session costs in the store alone, Maildir against
 * PostgreSQL (a throwaway cluster), on the same 20 messages of 4 KB: login (lock and listing), 0, 1 or 20
 * small RETRs, a QUIT with nothing to delete, release. Sessions alternate between the stores and the medians
 * of the per-session times are compared, which holds up better on a loaded machine than throughput windows;
 * for PostgreSQL the CPU time per session is printed too (this process plus every process of the cluster,
 * from /proc), the steadiest figure when other work shares the cores.
 * Pin it (`taskset -c 1`) to keep the database and the client on one core, as the main bench does.
 */

import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import pg from 'pg';
import { MaildirStore } from '../src/storage/maildir/store.ts';
import { migrate } from '../src/storage/postgres/schema.ts';
import { PostgresStore } from '../src/storage/postgres/store.ts';
import type { MailStore } from '../src/storage/types.ts';
import { startTestPg } from '../test/pg/cluster.ts';

const db = await startTestPg({ durable: true });
const pool = new pg.Pool({ connectionString: db.url });
await migrate(pool);
await pool.end();
const dir = mkdtempSync(join(tmpdir(), 'h12-cost-'));
const md = new MaildirStore({ root: dir, layout: '%u/Maildir' });
const ps = new PostgresStore({ url: db.url, poolSize: 4 });
const body = Buffer.from(`Subject: x\r\n\r\n${'a'.repeat(4000)}\r\n`);
for (const s of [md, ps] as MailStore[]) for (let i = 0; i < 20; i++) await s.deliver('u', Readable.from([body]));
async function session(s: MailStore, retr: number): Promise<number> {
  const t = process.hrtime.bigint();
  const d = await s.openMaildrop('u');
  for (let i = 0; i < retr; i++) await d.readSmall?.(d.messages[i].id, 128 * 1024);
  await d.commit([]);
  await d.release();
  return Number(process.hrtime.bigint() - t) / 1e6;
}
/** CPU time (ms) of a process and its children, from /proc (clock ticks of 10 ms). */
function cpuMs(pid: number | undefined): number {
  if (pid === undefined) return 0;
  const kids = spawnSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' })
    .stdout.split('\n')
    .filter(Boolean);
  let total = 0;
  for (const p of [String(pid), ...kids]) {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      total += (Number(f[11]) + Number(f[12])) * 10;
    } catch {
      // the process ended meanwhile
    }
  }
  return total;
}
const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
for (const retr of [0, 1, 20]) {
  const a: number[] = [];
  const b: number[] = [];
  let pgCpu = 0;
  for (let i = 0; i < 300; i++) {
    a.push(await session(md, retr));
    const d0 = cpuMs(db.postmasterPid());
    const c0 = process.cpuUsage();
    b.push(await session(ps, retr));
    const c = process.cpuUsage(c0);
    pgCpu += (c.user + c.system) / 1000 + cpuMs(db.postmasterPid()) - d0;
  }
  console.log(
    `sessions with ${retr} RETR: Maildir median ${med(a).toFixed(3)} ms, PostgreSQL median ${med(b).toFixed(3)} ms, ratio ${(med(b) / med(a)).toFixed(2)}; PostgreSQL CPU ${(pgCpu / 300).toFixed(2)} ms per session (this process and the database)`,
  );
}
await md.close();
await ps.close();
await db.close();
rmSync(dir, { recursive: true, force: true });
