/**
 * The PostgreSQL store alone under concurrent sessions, no POP3 server: what a session's store work costs in CPU
 * time of this process and of the database, per variant, alternated round after round.
 *
 *   taskset -c 1 node --import tsx bench/pg-store-load.ts [--conns 32] [--sessions 3000] [--rounds 4]
 *        [--db-cpu 1] [--variants bodies,copy,none]
 *
 * A throwaway cluster with its durability defaults (as the bench runs it) pinned to `--db-cpu` (1: with this
 * process when it is started under `taskset -c 1`, as the bench pins the server with its database; 0: apart).
 * 2 × `--conns` mailboxes of 20 messages of 4 KB; `--conns` concurrent sessions, each of login (lease and
 * listing), the 20 bodies, QUIT with nothing to delete, release. Variants:
 * - `bodies`: as the server reads them, `readSmall()` of each, which after the first session of a mailbox are
 *   the bodies read ahead with the login (escape-encoded text in the login's result);
 * - `copy`: a login without bodies, then the 20 bodies as raw octets by one binary COPY (copy-read.ts);
 * - `none`: login and release only (the floor: what the bodies add is the difference).
 */
import { Readable } from 'node:stream';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { CopyRead } from '../src/storage/postgres/copy-read.ts';
import { migrate } from '../src/storage/postgres/schema.ts';
import { PostgresStore } from '../src/storage/postgres/store.ts';
import { startTestPg } from '../test/pg/cluster.ts';
import { cpuOf, pinTree } from './servers.ts';

const { values: flags } = parseArgs({
  options: {
    conns: { type: 'string', default: '32' },
    sessions: { type: 'string', default: '3000' },
    rounds: { type: 'string', default: '4' },
    'db-cpu': { type: 'string', default: '1' },
    variants: { type: 'string', default: 'bodies,copy,none' },
  },
});
const C = Number(flags.conns);
const N = Number(flags.sessions);
type Variant = 'bodies' | 'copy' | 'none';
const variants = (flags.variants ?? '').split(',').filter(Boolean) as Variant[];
for (const v of variants) if (!['bodies', 'copy', 'none'].includes(v)) throw new Error(`unknown variant ${v}`);

const db = await startTestPg({ durable: true });
const postmaster = db.postmasterPid();
if (postmaster === undefined) throw new Error('needs a cluster of its own (unset POSTERN_TEST_PG_URL)');
const pinDb = () => pinTree(postmaster, flags['db-cpu'] ?? '1');
const setup = new pg.Pool({ connectionString: db.url, max: 1 });
await migrate(setup);
await setup.end();

const line = 'the quick brown fox jumps over the lazy dog, and a few more words\r\n';
const body = Buffer.from(`Subject: x\r\nFrom: a@example.org\r\n\r\n${line.repeat(Math.ceil(4000 / line.length))}`);
/** One store (and pool) per variant, each on mailboxes of its own: the read-ahead state stays per variant. */
const stores = new Map<Variant, { store: PostgresStore; boxes: string[] }>();
for (const v of variants) {
  const store = new PostgresStore({ url: db.url, poolSize: 10 });
  const boxes = Array.from({ length: 2 * C }, (_, i) => `${v}${i}`);
  for (const b of boxes) for (let i = 0; i < 20; i++) await store.deliver(b, Readable.from([body]));
  stores.set(v, { store, boxes });
}

/** pg-pool's callback form, which takes a submittable (as maildrop.ts uses it). */
interface CallbackQuery {
  query(q: CopyRead, cb: (err: Error | null | undefined, rows?: Buffer[]) => void): void;
}

async function session(v: Variant, store: PostgresStore, box: string): Promise<void> {
  const d = await store.openMaildrop(box);
  if (v === 'bodies') {
    for (const m of d.messages) if (!(await d.readSmall?.(m.id, 1 << 20))) throw new Error('no body');
  } else if (v === 'copy') {
    const ids = d.messages.map((m) => m.id);
    if (!ids.every((id) => /^\d+$/.test(id))) throw new Error('unexpected message id');
    const sql = `select c.data from message_chunks c where c.mailbox_id = ${pg.escapeLiteral(box)} and c.seq = 0 and c.message_id in (${ids.join(',')})`;
    const rows = await new Promise<Buffer[]>((resolve, reject) =>
      (store.pool as unknown as CallbackQuery).query(new CopyRead(sql), (e, r) => (e ? reject(e) : resolve(r ?? []))),
    );
    if (rows.length !== ids.length) throw new Error(`COPY: ${rows.length} bodies`);
  }
  await d.commit([]);
  await d.release();
}

async function run(v: Variant, n: number): Promise<void> {
  const entry = stores.get(v);
  if (!entry) throw new Error(v);
  let started = 0;
  await Promise.all(
    Array.from({ length: C }, async (_, k) => {
      // Connection k alternates between mailboxes k and k + C, so no two sessions ever share one.
      for (let i = 0; started < n; i++) {
        started++;
        await session(v, entry.store, entry.boxes[k + (i % 2) * C]);
      }
    }),
  );
}

for (const v of variants) await run(v, 1_000); // warm-up: JIT, the pools, prepared statements, read-ahead
pinDb(); // the backends the warm-up opened
const seen = new Map<Variant, { node: number[]; db: number[] }>();
for (let round = 0; round < Number(flags.rounds); round++) {
  for (const v of round % 2 === 0 ? variants : [...variants].reverse()) {
    const c0 = process.cpuUsage();
    const d0 = cpuOf(postmaster).cpuUs;
    await run(v, N);
    const c = process.cpuUsage(c0);
    const nodeUs = (c.user + c.system) / N;
    const dbUs = (cpuOf(postmaster).cpuUs - d0) / N;
    const e = seen.get(v) ?? { node: [], db: [] };
    e.node.push(nodeUs);
    e.db.push(dbUs);
    seen.set(v, e);
    console.log(
      `round ${round} ${v}: this process ${nodeUs.toFixed(0)} µs + database ${dbUs.toFixed(0)} µs CPU per session`,
    );
  }
}
const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
for (const [v, e] of seen) {
  console.log(
    `median ${v}: this process ${med(e.node).toFixed(0)} µs + database ${med(e.db).toFixed(0)} µs = ${(med(e.node) + med(e.db)).toFixed(0)} µs CPU per session`,
  );
}
for (const { store } of stores.values()) await store.close();
await db.close();
