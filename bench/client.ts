/**
 * `npm run bench -- --client [options]` (or `npm run bench:client`): the client side. `postern fetch` (from source
 * and, when built, from dist/), `Pop3Client` (a fresh process; in-process first pass and warm passes) and
 * `mpop` (when installed), side by side, against one private Dovecot on the same generated mail:
 *   - small: 2 000 × 4 KB, a whole mailbox to a Maildir in keep mode (and `postern fetch --delete`);
 *   - big:   20 × 10 MB.
 * Dovecot is pinned to core 1, every client to core 0 (`taskset`); mail and downloads live on tmpfs
 * (/dev/shm); every download is checked byte-exact (the stored LF form) against the generated messages.
 * Wall time is from spawn to exit of the client process (a cold start), peak RSS from /usr/bin/time (%M).
 *
 * Options:
 *   --quick          200 × 4 KB and 3 × 10 MB, one run each (a smoke test)
 *   --runs N         runs per row (median shown, min–max beside it; default 3)
 *   --only A,B       small, big
 *   --no-mpop        skip mpop
 *   --keep           keep the temp dir
 *   --hold           set up, start Dovecot, print its port and wait for Ctrl-C (for profiling by hand)
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  existsSync,
  linkSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { makeMaildir, message, writeBigMessage, writeMessages } from './mail.ts';
import { descendants, HOST, hasDovecot, type ServerHandle, startDovecot } from './servers.ts';

const ROOT = resolve(import.meta.dirname, '..');
const BIN = join(ROOT, 'bin/postern.cjs');
/** `npm run build` output; bin/postern.cjs runs it in a checkout with POSTERN_DIST=1. */
const DIST_MAIN = join(ROOT, 'dist/cli/main.js');
/** The library as a program imports it (`postern/client`: the package's export of dist/client/index.js). */
const DIST_CLIENT = join(ROOT, 'dist/client/index.js');
const LOAD = join(ROOT, 'bench/client-load.mjs');
const PASSWORD = 'bench';
const CLIENT_CPU = '0';
const SERVER_CPU = '1';

/**
 * The environment of every timed client: this one without NODE_EXTRA_CA_CERTS. Node reads that file at the
 * start of every process, before any script runs, and builds its whole root certificate store from it (this
 * machine sets it to the system bundle of ~140 certificates: 38 ms more for `node -e 0`, 71 against 108 ms,
 * 40 of 40 alternated pairs). The bench's connections are plaintext to a loopback Dovecot, where no
 * certificate is verified, and mpop pays nothing of the kind; a user who sets the variable pays it in every
 * Node program. When it is set, the floor line shows Node's start with it too.
 */
const EXTRA_CA = process.env.NODE_EXTRA_CA_CERTS;
const CLIENT_ENV: NodeJS.ProcessEnv = { ...process.env };
delete CLIENT_ENV.NODE_EXTRA_CA_CERTS;

interface Row {
  client: string;
  wall: number[];
  /** CPU seconds (user + system) of the client process: less disturbed by a loaded machine than wall. */
  cpu: number[];
  rssKiB: number[];
  /** CPU seconds of the server (Dovecot's processes) during the run: near `wall` means the server is the limit. */
  serverCpu: number[];
  messages: number;
  bytes: number;
  note?: string;
}

interface Dataset {
  user: string;
  count: number;
  /** Stored bytes (LF), what a client writes to a Maildir. */
  bytes: number;
  /** sha1 of every message as stored (LF): a download must give the same multiset. */
  hashes: string[];
  pristine: string;
}

function sha1(b: Buffer): string {
  return createHash('sha1').update(b).digest('hex');
}

/** CPU seconds (user + system) used so far by a process and its descendants, from /proc (clock ticks of 1/100 s). */
function cpuSecondsOf(root: number): number {
  let ticks = 0;
  for (const pid of [root, ...descendants(root)]) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      ticks += Number(f[11]) + Number(f[12]); // utime, stime (fields 14 and 15 of proc(5))
    } catch {} // gone meanwhile
  }
  return ticks / 100;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? Number.NaN : s[Math.floor((s.length - 1) / 2)];
}

/** Every file under new/ and cur/ of a Maildir, as sha1s (sorted). */
function maildirHashes(dir: string): string[] {
  const out: string[] = [];
  for (const sub of ['new', 'cur']) {
    const p = join(dir, sub);
    if (!existsSync(p)) continue;
    for (const f of readdirSync(p)) out.push(sha1(readFileSync(join(p, f))));
  }
  return out.sort();
}

function verify(what: string, dir: string, ds: Dataset): void {
  const got = maildirHashes(dir);
  if (got.length !== ds.count) throw new Error(`${what}: ${got.length} messages downloaded, expected ${ds.count}`);
  for (let i = 0; i < got.length; i++) {
    if (got[i] !== ds.hashes[i]) throw new Error(`${what}: a downloaded message differs from what was stored`);
  }
}

/** Runs a command pinned to the client core under /usr/bin/time; wall (s) and peak RSS (KiB). */
async function timed(
  cmd: string[],
  env: Record<string, string>,
  cwd: string,
): Promise<{ wall: number; rss: number; cpu: number }> {
  const out = join(cwd, `time.${process.hrtime.bigint()}`);
  const args = ['-f', '%M %U %S', '-o', out, 'taskset', '-c', CLIENT_CPU, ...cmd];
  const t0 = process.hrtime.bigint();
  const child = spawn('/usr/bin/time', args, {
    env: { ...CLIENT_ENV, ...env },
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  let stdout = '';
  child.stdout.on('data', (d: Buffer) => {
    if (stdout.length < 1 << 16) stdout += d.toString();
  });
  child.stderr.on('data', (d: Buffer) => {
    if (stderr.length < 1 << 16) stderr += d.toString();
  });
  const code = await new Promise<number | null>((r) => child.once('close', r));
  const wall = Number(process.hrtime.bigint() - t0) / 1e9;
  if (code !== 0) throw new Error(`${cmd.join(' ')} exited ${code}: ${stderr.slice(-2000)}${stdout.slice(-500)}`);
  const [rss, user, sys] = (readFileSync(out, 'utf8').trim().split('\n').pop() ?? '').split(' ').map(Number);
  rmSync(out, { force: true });
  return { wall, rss, cpu: user + sys };
}

let generation = 0;

/**
 * Puts the dataset back into the user's Maildir (after a delete-mode run): hard links under new names, and
 * Dovecot's index and uidlist for the user removed, so nothing remembered from the last run interferes.
 */
function relink(ds: Dataset, mailRoot: string, dovecotVar?: string): void {
  const md = join(mailRoot, ds.user, 'Maildir');
  for (const sub of ['new', 'cur']) {
    for (const f of readdirSync(join(md, sub))) rmSync(join(md, sub, f));
  }
  if (dovecotVar) {
    for (const sub of ['index', 'control']) rmSync(join(dovecotVar, sub, ds.user), { recursive: true, force: true });
  }
  generation++;
  for (const f of readdirSync(join(ds.pristine, 'new'))) {
    linkSync(join(ds.pristine, 'new', f), join(md, 'new', f.replace('P4242', `P${4242 + generation}`)));
  }
  spawnSync('chown', ['-R', 'nobody:nogroup', md]);
}

export async function runClientBench(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      client: { type: 'boolean' },
      quick: { type: 'boolean' },
      runs: { type: 'string' },
      only: { type: 'string' },
      'no-mpop': { type: 'boolean' },
      keep: { type: 'boolean' },
      hold: { type: 'boolean' },
    },
  });
  if (!hasDovecot()) {
    console.log('client bench: /usr/sbin/dovecot not installed, skipped');
    return;
  }
  const quick = values.quick ?? false;
  const runs = Number(values.runs ?? (quick ? 1 : 3));
  const only = new Set((values.only ?? 'small,big').split(','));
  const useMpop = !values['no-mpop'] && existsSync('/usr/bin/mpop');
  const useDist = existsSync(DIST_MAIN) && existsSync(DIST_CLIENT);
  const base = existsSync('/dev/shm') ? '/dev/shm' : undefined;
  const dir = mkdtempSync(join(base ?? ROOT, 'postern-client-bench-'));
  chmodSync(dir, 0o755); // Dovecot's processes (nobody, dovecot) must reach the mail and its users file
  const mailRoot = join(dir, 'mail');
  const log = (s: string) => process.stderr.write(`${s}\n`);
  log(
    `client bench in ${dir}; load average ${loadavg()
      .map((x) => x.toFixed(2))
      .join(' ')}`,
  );

  const datasets: Record<string, Dataset> = {};
  const make = (user: string, gen: (md: string) => void): Dataset => {
    const pristine = join(dir, 'pristine', user);
    mkdirSync(join(pristine, 'new'), { recursive: true });
    gen(pristine);
    const files = readdirSync(join(pristine, 'new'));
    const bufs = files.map((f) => readFileSync(join(pristine, 'new', f)));
    makeMaildir(mailRoot, user);
    const ds: Dataset = {
      user,
      count: files.length,
      bytes: bufs.reduce((a, b) => a + b.length, 0),
      hashes: bufs.map(sha1).sort(),
      pristine,
    };
    relink(ds, mailRoot);
    return ds;
  };
  if (only.has('small')) {
    const n = quick ? 200 : 2000;
    datasets.small = make('small', (md) => writeMessages(md, n, 'sized', (i) => message(4096, i)));
  }
  if (only.has('big')) {
    const n = quick ? 3 : 20;
    datasets.big = make('big', (md) => {
      for (let i = 0; i < n; i++) writeBigMessage(md, 10 * 1024 * 1024, i);
    });
  }
  const usersFile = join(dir, 'dovecot-users');
  writeFileSync(
    usersFile,
    Object.keys(datasets)
      .map((u) => `${u}:{PLAIN}${PASSWORD}::::::\n`)
      .join(''),
  );
  spawnSync('chown', ['-R', 'nobody:nogroup', mailRoot]);

  let dovecot: ServerHandle | undefined;
  const rows: Record<string, Row[]> = {};
  const nodeStart: number[] = [];
  const nodeStartExtraCa: number[] = [];
  try {
    dovecot = await startDovecot({ dir, mailRoot, usersFile, maxConnections: 10, tuned: true, cpu: SERVER_CPU });
    const port = dovecot.port;
    const dovecotPid = dovecot.pid;
    if (values.hold) {
      // For profiling by hand: the data and the server stay up until Ctrl-C.
      log(`Dovecot on ${HOST}:${port}, users ${Object.keys(datasets).join(', ')}, password "${PASSWORD}"; Ctrl-C ends`);
      await new Promise<void>((r) => process.once('SIGINT', () => r()));
      return;
    }
    // Node's own start, pinned and timed as every client row is: the floor under each `postern fetch` and
    // Pop3Client process row (mpop, in C, starts in a few milliseconds).
    const floorDir = join(dir, 'floor');
    mkdirSync(floorDir, { recursive: true });
    for (let i = 0; i < runs; i++) {
      nodeStart.push((await timed([process.execPath, '-e', '0'], {}, floorDir)).wall);
      if (EXTRA_CA !== undefined) {
        nodeStartExtraCa.push(
          (await timed([process.execPath, '-e', '0'], { NODE_EXTRA_CA_CERTS: EXTRA_CA }, floorDir)).wall,
        );
      }
    }
    for (const [name, ds] of Object.entries(datasets)) {
      const list: Row[] = [];
      rows[name] = list;
      const row = (client: string, note?: string): Row => {
        const r: Row = {
          client,
          wall: [],
          cpu: [],
          rssKiB: [],
          serverCpu: [],
          messages: ds.count,
          bytes: ds.bytes,
          note,
        };
        list.push(r);
        return r;
      };
      const work = join(dir, 'work');
      const fresh = () => {
        rmSync(work, { recursive: true, force: true });
        mkdirSync(work, { recursive: true });
        return work;
      };
      const fetchArgs = (w: string, extra: string[] = []) => [
        'fetch',
        `pop3://${ds.user}@${HOST}:${port}?tls=none`,
        '--insecure-auth',
        '--password-env',
        'BENCH_PW',
        '--maildir',
        join(w, 'Maildir'),
        '--state-dir',
        join(w, 'state'),
        '--quiet',
        ...extra,
      ];
      const env = { BENCH_PW: PASSWORD };
      const clients: {
        label: string;
        run: (w: string) => Promise<{ wall: number; rss: number; cpu: number }>;
        after?: () => void;
      }[] = [];
      if (useMpop) {
        clients.push({
          label: 'mpop (pipelining, keep)',
          run: async (w) => {
            const conf = join(w, 'mpoprc');
            mkdirSync(join(w, 'Maildir', 'new'), { recursive: true });
            mkdirSync(join(w, 'Maildir', 'cur'), { recursive: true });
            mkdirSync(join(w, 'Maildir', 'tmp'), { recursive: true });
            writeFileSync(
              conf,
              `account bench\nhost ${HOST}\nport ${port}\ntls off\nauth user\nuser ${ds.user}\npassword ${PASSWORD}\n` +
                `pipelining on\nkeep on\nreceived_header off\nuidls_file ${join(w, 'uidls')}\ndelivery maildir ${join(w, 'Maildir')}\n`,
              { mode: 0o600 },
            );
            return timed(['mpop', '-q', '-C', conf, 'bench'], {}, w);
          },
        });
      }
      clients.push({
        label: 'postern fetch, source (tsx), keep',
        run: (w) => timed([process.execPath, BIN, ...fetchArgs(w)], env, w),
      });
      if (useDist) {
        clients.push({
          label: 'postern fetch, dist/, keep',
          run: (w) => timed([process.execPath, BIN, ...fetchArgs(w)], { ...env, POSTERN_DIST: '1' }, w),
        });
        clients.push({
          label: 'postern fetch, dist/, delete',
          run: (w) => timed([process.execPath, BIN, ...fetchArgs(w, ['--delete'])], { ...env, POSTERN_DIST: '1' }, w),
          after: () => relink(ds, mailRoot, join(dir, 'dovecot', 'var')),
        });
      } else {
        clients.push({
          label: 'postern fetch, source, delete',
          run: (w) => timed([process.execPath, BIN, ...fetchArgs(w, ['--delete'])], env, w),
          after: () => relink(ds, mailRoot, join(dir, 'dovecot', 'var')),
        });
      }
      const loadArgs = (api: string, passes: number, verifyToo = false) => [
        process.execPath,
        ...(useDist
          ? ['--module', DIST_CLIENT]
          : ['--import', 'tsx', LOAD, '--module', join(ROOT, 'src/client/index.ts')]),
        '--port',
        String(port),
        '--user',
        ds.user,
        '--password',
        PASSWORD,
        '--passes',
        String(passes),
        '--api',
        api,
        ...(verifyToo ? ['--verify'] : []),
      ];
      const loadCmd = (api: string, passes: number, verifyToo = false): string[] => {
        const a = loadArgs(api, passes, verifyToo);
        if (useDist) a.splice(1, 0, LOAD);
        return a;
      };
      for (const c of clients) {
        const r = row(c.label);
        for (let i = 0; i < runs; i++) {
          const w = fresh();
          const s0 = cpuSecondsOf(dovecotPid);
          const m = await c.run(w);
          r.serverCpu.push(cpuSecondsOf(dovecotPid) - s0);
          verify(`${c.label} (${name})`, join(w, 'Maildir'), ds);
          c.after?.();
          r.wall.push(m.wall);
          r.rssKiB.push(m.rss);
          r.cpu.push(m.cpu);
        }
      }
      // Pop3Client: a fresh process (cold wall and peak RSS), then what the process itself measures: its first
      // pass (what a CLI user gets) and warm passes. Bodies are read to the end, not stored; one extra untimed
      // pass checks them byte-exact.
      for (const api of ['stream', 'each']) {
        const what = api === 'each' ? 'retrieveEach()' : 'retrieve() streams';
        const cold = row(`Pop3Client ${what}, new process (spawn → exit)`);
        const inproc = row(`Pop3Client ${what}, in-process first pass (connect → QUIT)`);
        const firsts: number[] = [];
        const warms: number[] = [];
        const warmCpu: number[] = [];
        for (let i = 0; i < runs; i++) {
          const w = fresh();
          const s0 = cpuSecondsOf(dovecotPid);
          const m = await timed(loadCmd(api, 1), {}, w);
          cold.serverCpu.push(cpuSecondsOf(dovecotPid) - s0);
          cold.wall.push(m.wall);
          cold.rssKiB.push(m.rss);
          cold.cpu.push(m.cpu);
          const out = spawnSync('taskset', ['-c', CLIENT_CPU, ...loadCmd(api, 6, i === 0)], {
            encoding: 'utf8',
            cwd: ROOT,
            env: CLIENT_ENV,
          });
          if (out.status !== 0) throw new Error(`client-load failed: ${out.stderr}`);
          const rep = JSON.parse(out.stdout.trim().split('\n').pop() ?? '{}') as {
            passes: number[];
            cpu: number[];
            maxRssKiB: number;
            hashes?: string[];
          };
          if (rep.hashes && rep.hashes.join() !== ds.hashes.join())
            throw new Error(`Pop3Client ${what} (${name}): bodies differ`);
          firsts.push(rep.passes[0]);
          warms.push(Math.min(...rep.passes.slice(1)));
          inproc.cpu.push(rep.cpu[0]);
          warmCpu.push(Math.min(...rep.cpu.slice(1)));
          inproc.rssKiB.push(rep.maxRssKiB);
        }
        inproc.wall = firsts;
        inproc.note =
          `warm (best of 5 after the first): ${fmtRate(ds.count, ds.bytes, median(warms))}; ` +
          `per CPU second: first ${fmtRate(ds.count, ds.bytes, median(inproc.cpu))}, warm ${fmtRate(ds.count, ds.bytes, median(warmCpu))}`;
      }
    }
  } finally {
    await dovecot?.stop();
    if (!values.keep) rmSync(dir, { recursive: true, force: true });
  }
  print(rows, nodeStart, nodeStartExtraCa);
}

function fmtRate(count: number, bytes: number, secs: number): string {
  return `${Math.round(count / secs)} msg/s, ${Math.round(bytes / secs / 1e6)} MB/s`;
}

function print(rows: Record<string, Row[]>, nodeStart: number[], nodeStartExtraCa: number[]): void {
  const out: string[] = [];
  out.push(
    `\nClient bench (Dovecot on core ${SERVER_CPU}, clients on core ${CLIENT_CPU}; load ${loadavg()[0].toFixed(2)})`,
  );
  if (nodeStart.length > 0) {
    out.push(
      `Node's own start (\`node -e 0\`, pinned, timed as the clients are): ${median(nodeStart).toFixed(3)} s median ` +
        `(${Math.min(...nodeStart).toFixed(3)}–${Math.max(...nodeStart).toFixed(3)})` +
        (nodeStartExtraCa.length > 0
          ? `; with this machine's NODE_EXTRA_CA_CERTS, which the clients are run without: ${median(nodeStartExtraCa).toFixed(3)} s`
          : ''),
    );
  }
  for (const [name, list] of Object.entries(rows)) {
    if (list.length === 0) continue;
    const l0 = list[0];
    const mpop = list.find((r) => r.client.startsWith('mpop'));
    out.push(`\n${name}: ${l0.messages} messages, ${(l0.bytes / 1e6).toFixed(1)} MB stored`);
    out.push(
      '| client | wall s (median, min–max) | msg/s | MB/s | wall / mpop | CPU s | peak RSS MB | server CPU s (busy) |',
    );
    out.push('|---|---|---|---|---|---|---|---|');
    for (const r of list) {
      const w = median(r.wall);
      const range = `${Math.min(...r.wall).toFixed(3)}–${Math.max(...r.wall).toFixed(3)}`;
      const vsMpop = mpop && r !== mpop ? (w / median(mpop.wall)).toFixed(2) : '–';
      // Busy: the server's CPU seconds over the client's wall time; near 1 means the server (one core) set the pace.
      const srv = r.serverCpu.length
        ? `${median(r.serverCpu).toFixed(2)} (${Math.round((100 * median(r.serverCpu)) / w)} %)`
        : '–';
      out.push(
        `| ${r.client} | ${w.toFixed(3)} (${range}) | ${Math.round(r.messages / w)} | ${Math.round(r.bytes / w / 1e6)} | ${vsMpop} | ${r.cpu.length ? median(r.cpu).toFixed(2) : '–'} | ${(median(r.rssKiB) / 1024).toFixed(0)} | ${srv} |${r.note ? ` ${r.note}` : ''}`,
      );
    }
  }
  console.log(out.join('\n'));
}

if (import.meta.url === `file://${process.argv[1]}`) {
  await runClientBench(process.argv.slice(2));
}
