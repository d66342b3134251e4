/**
 * The load generator: a separate process so that its CPU is not the server's. Usage:
 *
 *   node --import tsx bench/load.ts '<job as JSON>'
 *
 * Prints JSON lines on stdout: `{"result":…}` at the end (and `{"ready":…}` first for an idle job), or
 * `{"error":"…"}`. Every loop is bounded by a count and a deadline; the whole process also has a hard deadline.
 */
import { createInterface } from 'node:readline';
import type {
  IdleJob,
  IdleReady,
  IdleResult,
  Job,
  ListingJob,
  ListingResult,
  ListingTiming,
  RetrJob,
  RetrResult,
  SessionsJob,
  SessionsResult,
} from './jobs.ts';
import { Pop3Conn, type Reply } from './pop3.ts';

/** No job may keep the process alive longer than this. */
const HARD_DEADLINE_MS = 10 * 60_000;

function emit(obj: object): void {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

const now = () => performance.now();

async function sessions(job: SessionsJob): Promise<SessionsResult> {
  let done = 0;
  let messages = 0;
  let errors = 0;
  let firstError: string | undefined;
  const retrLines = Array.from({ length: job.retr ?? 0 }, (_, k) => `RETR ${k + 1}`);
  const session = async (user: string): Promise<void> => {
    const c = await Pop3Conn.open(job.target.host, job.target.port);
    try {
      await c.login(user, job.password, job.mechanism);
      const s = await c.cmd('STAT');
      if (!s.ok) throw new Error(`STAT: ${s.line}`);
      if (retrLines.length > 0) {
        const replies = job.pipelined
          ? await c.pipeline(retrLines, true)
          : await retrLines.reduce<Promise<Reply[]>>(
              async (acc, l) => [...(await acc), await c.cmd(l, true)],
              Promise.resolve([]),
            );
        for (const r of replies) if (!r.ok) throw new Error(`RETR: ${r.line}`);
        messages += replies.length;
      }
      await c.quit();
    } finally {
      c.destroy();
    }
  };
  // Worker i logs in as users i, i + C, i + 2C, … in turn: Postern holds a maildrop lock until its session has
  // fully ended, so two connections must never share a user.
  const mineOf = (i: number) => job.users.filter((_, k) => k % job.concurrency === i);
  if (job.users.length < job.concurrency) throw new Error('need at least one user per connection');
  if (job.warmupEachUser) {
    await Promise.all(
      Array.from({ length: job.concurrency }, async (_, i) => {
        for (const user of mineOf(i)) await session(user);
      }),
    );
    messages = 0;
  }
  const t0 = now();
  const cpu0 = process.cpuUsage();
  const deadline = t0 + job.durationMs;
  const worker = async (i: number): Promise<void> => {
    const mine = mineOf(i);
    const limit = job.onceEach ? mine.length : Number.POSITIVE_INFINITY;
    for (let n = 0; n < limit && (job.onceEach || now() < deadline) && done + errors < job.maxSessions; n++) {
      try {
        await session(mine[n % mine.length]);
        done++;
      } catch (e) {
        errors++;
        firstError ??= String(e);
        if (errors > 100) return;
      }
    }
  };
  await Promise.all(Array.from({ length: job.concurrency }, (_, i) => worker(i)));
  const seconds = (now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const loadCpuUsPerSession = done > 0 ? (cpu.user + cpu.system) / done : 0;
  return { sessions: done, messages, errors, firstError, seconds, perSec: done / seconds, loadCpuUsPerSession };
}

async function retr(job: RetrJob): Promise<RetrResult> {
  const conns = await Promise.all(job.users.map(() => Pop3Conn.open(job.target.host, job.target.port)));
  try {
    await Promise.all(conns.map((c, i) => c.login(job.users[i], job.password, job.mechanism)));
    let sizeMismatches = 0;
    const run = async (c: Pop3Conn, count: number, deadline: number) => {
      let next = 0;
      const batchOf = (): string[] => {
        const lines: string[] = [];
        for (let i = 0; i < job.batch; i++) lines.push(`RETR ${(next++ % job.messages) + 1}`);
        return lines;
      };
      let retrieved = 0;
      let bytes = 0;
      while (retrieved < count && now() < deadline) {
        const replies = job.batch === 1 ? [await c.cmd(batchOf()[0], true)] : await c.pipeline(batchOf(), true);
        for (const r of replies) {
          if (!r.ok) throw new Error(`RETR: ${r.line}`);
          const m = /^\+OK (\d+) octets/i.exec(r.line);
          if (m && Number(m[1]) !== r.bytes) sizeMismatches++;
          retrieved++;
          bytes += r.bytes;
        }
      }
      return { retrieved, bytes };
    };
    const warm = await Promise.all(conns.map((c) => run(c, job.warmup, now() + job.durationMs)));
    const t0 = now();
    const each = await Promise.all(conns.map((c) => run(c, job.maxRetr, t0 + job.durationMs)));
    const seconds = (now() - t0) / 1000;
    await Promise.all(conns.map((c) => c.quit()));
    const retrieved = each.reduce((a, e) => a + e.retrieved, 0);
    const bytes = each.reduce((a, e) => a + e.bytes, 0);
    return {
      retrieved,
      bytes,
      warmupBytes: warm.reduce((a, e) => a + e.bytes, 0),
      seconds,
      msgsPerSec: retrieved / seconds,
      mbPerSec: bytes / 1e6 / seconds,
      sizeMismatches,
    };
  } finally {
    for (const c of conns) c.destroy();
  }
}

async function listing(job: ListingJob): Promise<ListingResult> {
  const out: ListingTiming[] = [];
  let inUseRetries = 0;
  for (let i = 0; i < job.logins; i++) {
    // Postern answers QUIT before it has released the maildrop lock, so the next login can meet [IN-USE] for a
    // moment: retry (bounded) and time only the login that succeeded.
    let c: Pop3Conn | undefined;
    let t0 = 0;
    for (let attempt = 0; c === undefined; attempt++) {
      const conn = await Pop3Conn.open(job.target.host, job.target.port);
      t0 = now();
      try {
        await conn.login(job.user, job.password, job.mechanism);
        c = conn;
      } catch (e) {
        conn.destroy();
        if (!/IN-USE/.test(String(e)) || attempt >= 50) throw e;
        inUseRetries++;
        await new Promise((r) => setTimeout(r, 20));
      }
    }
    try {
      const t1 = now();
      const stat = await c.cmd('STAT');
      const t2 = now();
      const list = await c.cmd('LIST', true, true);
      const t3 = now();
      const uidl = await c.cmd('UIDL', true, true);
      const t4 = now();
      if (!stat.ok || !list.ok || !uidl.ok) throw new Error(`listing: ${stat.line} / ${list.line} / ${uidl.line}`);
      if (list.lines !== job.expectMessages || uidl.lines !== job.expectMessages) {
        throw new Error(`expected ${job.expectMessages} messages, LIST gave ${list.lines}, UIDL ${uidl.lines}`);
      }
      await c.quit();
      out.push({
        loginMs: t1 - t0,
        statMs: t2 - t1,
        listMs: t3 - t2,
        uidlMs: t4 - t3,
        totalMs: t4 - t0,
        statLine: stat.line,
        listLines: list.lines,
        uidlLines: uidl.lines,
      });
    } finally {
      c.destroy();
    }
  }
  return { sessions: out, inUseRetries };
}

async function idle(job: IdleJob): Promise<IdleResult> {
  const conns: Pop3Conn[] = [];
  let failed = 0;
  let firstError: string | undefined;
  let next = 0;
  const t0 = now();
  const deadline = t0 + job.openTimeoutMs;
  let upTo = 0;
  const opener = async () => {
    while (next < upTo && now() < deadline && failed < 50) {
      const user = job.users[next++];
      let c: Pop3Conn | undefined;
      try {
        c = await Pop3Conn.open(job.target.host, job.target.port);
        await c.login(user, job.password, job.mechanism);
        conns.push(c);
      } catch (e) {
        c?.destroy();
        failed++;
        firstError ??= String(e);
      }
    }
  };
  // One line from run.ts after each stage (it reads the server's memory meanwhile); stdin closing ends them all.
  const rl = createInterface({ input: process.stdin });
  let stdinClosed = false;
  const waiting: (() => void)[] = [];
  rl.on('line', () => waiting.shift()?.());
  rl.once('close', () => {
    stdinClosed = true;
    for (const w of waiting.splice(0)) w();
  });
  const goAhead = () => new Promise<void>((resolve) => (stdinClosed ? resolve() : waiting.push(resolve)));
  for (let stage = 0; stage < job.stages.length && !stdinClosed; stage++) {
    upTo = Math.min(job.stages[stage], job.users.length);
    await Promise.all(Array.from({ length: job.openConcurrency }, opener));
    const seconds = (now() - t0) / 1000;
    const ready: IdleReady = { ready: true, stage, opened: conns.length, failed, firstError, seconds };
    emit(ready);
    await goAhead();
  }
  rl.close();
  let closed = 0;
  let i = 0;
  const closer = async () => {
    while (i < conns.length) {
      const c = conns[i++];
      try {
        await c.quit(5_000);
        closed++;
      } catch {
        c.destroy();
      }
    }
  };
  await Promise.all(Array.from({ length: job.openConcurrency }, closer));
  return { closed };
}

async function main(): Promise<void> {
  const job = JSON.parse(process.argv[2] ?? '{}') as Job;
  const hard = setTimeout(() => {
    emit({ error: `load generator hard deadline (${HARD_DEADLINE_MS} ms) reached` });
    process.exit(2);
  }, HARD_DEADLINE_MS);
  hard.unref();
  switch (job.kind) {
    case 'sessions':
      emit({ result: await sessions(job) });
      break;
    case 'retr':
      emit({ result: await retr(job) });
      break;
    case 'listing':
      emit({ result: await listing(job) });
      break;
    case 'idle':
      emit({ result: await idle(job) });
      break;
    default:
      throw new Error(`unknown job ${JSON.stringify(job)}`);
  }
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    emit({ error: String(e instanceof Error ? (e.stack ?? e.message) : e) });
    process.exit(1);
  },
);
