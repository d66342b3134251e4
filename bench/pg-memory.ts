/**
 * `node --import tsx bench/pg-memory.ts [--size MB] [--rounds N] [--variant 'name=BIN [VAR=value …]' …]`:
 * what one large message costs a `postern serve` on the PostgreSQL store in memory and time, delivered over
 * LMTP and retrieved with RETR (a throwaway cluster, one database per variant).
 *
 * Each variant is a server (`BIN`, default bin/postern.cjs; e.g. another worktree's for an A/B) with extra
 * environment (`MALLOC_ARENA_MAX=2`, `NODE_OPTIONS=--max-semi-space-size=2`, …). Every round starts a fresh
 * server per variant, in alternating order, warms it with a 1 MB message, then measures each phase: peak RSS
 * (VmHWM, reset before the phase through /proc/PID/clear_refs) above the RSS before it, the maxima of
 * process.memoryUsage() inside the server (bench/mem-probe.mjs, sampled every 5 ms) and the wall time.
 * Medians per variant at the end. Pinned like the main bench: the server on CPU 1, this process on CPU 0.
 * --cold skips the warm-up (as test/pg/large.test.ts), --series prints the RSS every 100 ms, --heap-profile
 * where each phase allocated on V8's heap.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { freePort } from '../test/helpers/realServer.ts';
import { deliverLarge, retrieveLarge, waitForPort } from '../test/pg/big-message.ts';
import { startTestPg } from '../test/pg/cluster.ts';

const MB = 1 << 20;
const args = process.argv.slice(2);
function opt(name: string, def: string): string {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : def;
}
const SIZE = Number(opt('size', '100')) * MB;
const ROUNDS = Number(opt('rounds', '3'));
const variants: { name: string; bin: string; env: Record<string, string> }[] = [];
for (let i = 0; i < args.length; i++) {
  if (args[i] !== '--variant') continue;
  const [head, ...rest] = args[i + 1].split(' ').filter(Boolean);
  const eq = head.indexOf('=');
  const name = eq < 0 ? head : head.slice(0, eq);
  const bin = eq < 0 || head.slice(eq + 1) === '' ? 'bin/postern.cjs' : head.slice(eq + 1);
  const env: Record<string, string> = {};
  for (const kv of rest) env[kv.slice(0, kv.indexOf('='))] = kv.slice(kv.indexOf('=') + 1);
  variants.push({ name, bin: resolve(bin), env });
}
if (variants.length === 0) variants.push({ name: 'this', bin: resolve('bin/postern.cjs'), env: {} });
const PROBE = resolve('bench/mem-probe.mjs');
/** --heap-profile: print where each phase allocated on V8's heap (sampled; objects collected since count). */
const HEAPPROF = args.includes('--heap-profile');
const COLD = args.includes('--cold');
/** --series: the server's RSS above the phase's start every 100 ms. */
const SERIES = args.includes('--series');

function status(pid: number, field: string): number {
  const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}
function rollup(pid: number): Record<string, number> {
  const r: Record<string, number> = {};
  for (const m of readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8').matchAll(/^(\w+):\s+(\d+) kB/gm)) {
    r[m[1]] = Number(m[2]) * 1024;
  }
  return r;
}

interface ProfileNode {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children: ProfileNode[];
}

/** The 12 call sites that allocated most in a sampled heap profile, with the total. */
function summarise(file: string): string {
  let root: ProfileNode;
  try {
    root = JSON.parse(readFileSync(file, 'utf8')).head;
  } catch {
    return `    (no profile: ${file})\n`;
  }
  const by = new Map<string, number>();
  let total = 0;
  const walk = (n: ProfileNode) => {
    if (n.selfSize > 0) {
      const f = n.callFrame;
      const key = `${f.functionName || '(anonymous)'} ${f.url.replace(/^.*\/(node_modules|src)\//, '$1/')}:${f.lineNumber + 1}`;
      by.set(key, (by.get(key) ?? 0) + n.selfSize);
      total += n.selfSize;
    }
    for (const c of n.children) walk(c);
  };
  walk(root);
  const top = [...by].sort((a, b) => b[1] - a[1]).slice(0, 12);
  return `${top.map(([k, b]) => `    ${(b / MB).toFixed(1).padStart(7)} MB  ${k}`).join('\n')}\n    ${(total / MB).toFixed(1).padStart(7)} MB  in all\n`;
}

interface Phase {
  ms: number;
  base: number;
  peakGrowth: number;
  anon: number;
  heapUsed: number;
  heapTotal: number;
  external: number;
  arrayBuffers: number;
  startHeap: number;
  startExternal: number;
}

const db = await startTestPg();
const dir = mkdtempSync(join(tmpdir(), 'postern-pgmem-'));
const results = new Map<string, { lmtp: Phase[]; retr: Phase[]; rss: number[]; both: number[] }>();

async function round(v: (typeof variants)[number], url: string, index: number): Promise<void> {
  const port = await freePort();
  const lmtpPort = await freePort();
  const config = join(dir, `${v.name}.toml`);
  writeFileSync(
    config,
    `[[listen]]\naddress = "127.0.0.1"\nport = ${port}\ntls = "none"\n\n[storage]\ndriver = "postgres"\nurl = "${url}"\n\n[auth]\ndriver = "postgres"\n\n[lmtp]\nport = ${lmtpPort}\nmax_message_size = 0\n\n[log]\nlevel = "warn"\n`,
  );
  const probeOut = join(dir, `${v.name}-${index}.probe`);
  const profDir = mkdtempSync(join(dir, 'prof-'));
  writeFileSync(probeOut, '');
  const nodeOptions = [v.env.NODE_OPTIONS ?? '', `--import=${PROBE}`].join(' ').trim();
  const server: ChildProcess = spawn('taskset', ['-c', '1', process.execPath, v.bin, 'serve', '--config', config], {
    stdio: ['ignore', 'inherit', 'inherit'],
    env: {
      ...process.env,
      ...v.env,
      NODE_OPTIONS: nodeOptions,
      POSTERN_MEM_PROBE: probeOut,
      ...(HEAPPROF ? { POSTERN_MEM_HEAPPROF: profDir } : {}),
    },
  });
  try {
    await waitForPort(lmtpPort, server);
    const pid = server.pid ?? 0;
    // warm-up: every code path once, with a small message (--cold: none, as test/pg/large.test.ts)
    const started = status(pid, 'VmHWM');
    if (!COLD) {
      await deliverLarge(lmtpPort, 'big@example.com', MB);
      await retrieveLarge(port, 'big', 'pw-big', undefined, true);
    }
    const probe = async (): Promise<{ now: Record<string, number>; max: Record<string, number> }> => {
      const before = readFileSync(probeOut, 'utf8').split('\n').filter(Boolean).length;
      process.kill(pid, 'SIGUSR2');
      for (let i = 0; i < 200; i++) {
        const lines = readFileSync(probeOut, 'utf8').split('\n').filter(Boolean);
        if (lines.length > before) return JSON.parse(lines[lines.length - 1]);
        await new Promise((r) => setTimeout(r, 10));
      }
      throw new Error('probe did not answer');
    };
    const phase = async (work: () => Promise<unknown>): Promise<Phase> => {
      await new Promise((r) => setTimeout(r, 300));
      const start = (await probe()).now;
      writeFileSync(`/proc/${pid}/clear_refs`, '5');
      const base = status(pid, 'VmRSS');
      let anon = 0;
      const series: string[] = [];
      const t = performance.now();
      const timer = setInterval(() => {
        try {
          anon = Math.max(anon, rollup(pid).Anonymous ?? 0);
          if (SERIES)
            series.push(
              `${((performance.now() - t) / 1000).toFixed(1)}:${((status(pid, 'VmRSS') - base) / MB).toFixed(0)}`,
            );
        } catch {}
      }, 100);
      await work();
      if (SERIES) process.stdout.write(`  series ${series.join(' ')}\n`);
      const ms = performance.now() - t;
      clearInterval(timer);
      const peak = status(pid, 'VmHWM');
      const m = (await probe()).max;
      return {
        ms,
        base,
        peakGrowth: peak - base,
        anon,
        heapUsed: m.heapUsed,
        heapTotal: m.heapTotal,
        external: m.external,
        arrayBuffers: m.arrayBuffers,
        startHeap: start.heapTotal,
        startExternal: start.external,
      };
    };
    const lmtp = await phase(async () => {
      const answer = await deliverLarge(lmtpPort, 'big@example.com', SIZE);
      if (!answer.startsWith('250')) throw new Error(`delivery: ${answer}`);
    });
    const retr = await phase(async () => {
      const got = await retrieveLarge(port, 'big', 'pw-big', undefined, true);
      if (got < SIZE) throw new Error(`RETR gave ${got} octets`);
    });
    if (HEAPPROF) {
      await new Promise((r) => setTimeout(r, 1000));
      for (const [label, n] of [
        ['LMTP', 1],
        ['RETR', 3],
      ] as const) {
        process.stdout.write(`  ${v.name} ${label}, V8 heap allocations by function (sampled):\n`);
        process.stdout.write(summarise(join(profDir, `${n}.heapprofile`)));
      }
    }
    const r = results.get(v.name) ?? { lmtp: [], retr: [], rss: [], both: [] };
    r.lmtp.push(lmtp);
    r.retr.push(retr);
    r.rss.push(status(pid, 'VmHWM'));
    // The figure test/pg/large.test.ts bounds: the peak over both phases above the RSS before the delivery.
    const both = Math.max(lmtp.base + lmtp.peakGrowth, retr.base + retr.peakGrowth) - lmtp.base;
    r.both.push(both);
    if (COLD)
      process.stdout.write(`  cold: VmHWM +${((status(pid, 'VmHWM') - started) / MB).toFixed(1)} MB since start\n`);
    results.set(v.name, r);
    const f = (p: Phase) =>
      `${(p.ms / 1000).toFixed(2)} s, peak +${(p.peakGrowth / MB).toFixed(1)} MB over ${(p.base / MB).toFixed(0)} (heap ${(p.startHeap / MB).toFixed(0)}→≤${(p.heapTotal / MB).toFixed(0)}/${(p.heapUsed / MB).toFixed(0)} used, external ${(p.startExternal / MB).toFixed(0)}→≤${(p.external / MB).toFixed(0)}, arrayBuffers ≤${(p.arrayBuffers / MB).toFixed(0)})`;
    process.stdout.write(
      `${v.name} round ${index + 1}: both +${(both / MB).toFixed(1)} MB; LMTP ${f(lmtp)}; RETR ${f(retr)}\n`,
    );
  } finally {
    const exited = new Promise((r) => server.once('exit', r));
    server.kill('SIGTERM');
    await exited;
  }
}

/** A fresh database for one round of `v`, its schema and user made by the variant's own `postern`. */
async function setup(v: (typeof variants)[number]): Promise<string> {
  const url = await db.newDatabase();
  const config = join(dir, `${v.name}-setup.toml`);
  writeFileSync(config, `[storage]\ndriver = "postgres"\nurl = "${url}"\n\n[auth]\ndriver = "postgres"\n`);
  for (const [cmd, input] of [
    [['db', 'migrate'], ''],
    [['user', 'add', 'big'], 'pw-big\n'],
  ] as const) {
    const r = spawnSync(process.execPath, [v.bin, ...cmd, '--config', config], { input, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`${v.name}: postern ${cmd.join(' ')}: ${r.stderr}`);
  }
  return url;
}

try {
  spawnSync('taskset', ['-pc', '0', String(process.pid)]);
  for (let i = 0; i < ROUNDS; i++) {
    const order = i % 2 === 0 ? variants : [...variants].reverse();
    for (const v of order) await round(v, await setup(v), i);
  }
  const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  process.stdout.write(`\n${SIZE / MB} MB, medians of ${ROUNDS} rounds:\n`);
  for (const v of variants) {
    const r = results.get(v.name);
    if (!r) continue;
    const line = (ps: Phase[]) =>
      `${(med(ps.map((p) => p.ms)) / 1000).toFixed(2)} s, peak RSS +${(med(ps.map((p) => p.peakGrowth)) / MB).toFixed(1)} MB`;
    process.stdout.write(
      `  ${v.name}: peak RSS +${(med(r.both) / MB).toFixed(1)} MB over both phases (${r.both.map((b) => (b / MB).toFixed(0)).join(', ')}); LMTP ${line(r.lmtp)}; RETR ${line(r.retr)}; VmHWM ${(med(r.rss) / MB).toFixed(0)} MB\n`,
    );
  }
} finally {
  await db.close();
  rmSync(dir, { recursive: true, force: true });
}
