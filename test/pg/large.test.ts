/**
 * A 100 MB message through a real `postern serve` on the PostgreSQL store: delivered over LMTP, retrieved
 * with RETR, every byte back, and the server's peak memory (VmHWM) grows by less than 64 MB with V8's
 * defaults, less than 48 MB with its young generation capped: bodies are staged and streamed in chunks,
 * never held whole, and nothing is allocated per chunk that V8 must find later.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { PostgresUserDb } from '../../src/auth/postgres.ts';
import { migrate } from '../../src/storage/postgres/schema.ts';
import { BIN, freePort } from '../helpers/realServer.ts';
import { deliverLarge, retrieveLarge, waitForPort } from './big-message.ts';
import { pgSkipReason, startTestPg, type TestPg } from './cluster.ts';

const skip = pgSkipReason();
const MB = 1 << 20;
const SIZE = 100 * MB;
function peakRss(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

/** A `postern serve` on the PostgreSQL store at `url`, started with `nodeFlags`; resolves once LMTP answers. */
async function serve(url: string, dir: string, nodeFlags: string[]) {
  const port = await freePort();
  const lmtpPort = await freePort();
  const config = join(dir, `postern-${port}.toml`);
  writeFileSync(
    config,
    `[[listen]]\naddress = "127.0.0.1"\nport = ${port}\ntls = "none"\n\n[storage]\ndriver = "postgres"\nurl = "${url}"\n\n[auth]\ndriver = "postgres"\n\n[lmtp]\nport = ${lmtpPort}\nmax_message_size = 0\n\n[log]\nlevel = "warn"\n`,
  );
  const server = spawn(process.execPath, [...nodeFlags, BIN, 'serve', '--config', config], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  server.stdout?.on('data', (d) => {
    out += d;
  });
  server.stderr?.on('data', (d) => {
    out += d;
  });
  const stop = async () => {
    if (server.exitCode !== null) return;
    const exited = new Promise((r) => server.once('exit', r));
    server.kill('SIGTERM');
    await exited;
  };
  try {
    await waitForPort(lmtpPort, server, 30_000);
  } catch (e) {
    await stop();
    throw new Error(`${(e as Error).message}: ${out}`);
  }
  return { pid: server.pid ?? 0, port, lmtpPort, stop };
}

if (skip) {
  test('100 MB through the PostgreSQL store', { skip }, () => {});
} else {
  let db: TestPg;
  let dir: string;
  before(async () => {
    db = await startTestPg();
    const pool = new pg.Pool({ connectionString: db.url });
    await migrate(pool);
    await new PostgresUserDb(pool).addUser('big', 'pw-big');
    await new PostgresUserDb(pool).addUser('big2', 'pw-big2');
    await pool.end();
    dir = mkdtempSync(join(tmpdir(), 'postern-pg-large-'));
  });
  after(async () => {
    await db?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** Delivers and retrieves 100 MB through a fresh server; the growth of its peak RSS (VmHWM) since start. */
  async function roundTrip(user: string, nodeFlags: string[]): Promise<number> {
    const server = await serve(db.url, dir, nodeFlags);
    try {
      const baseline = peakRss(server.pid);
      const sent = createHash('sha256');
      assert.match(await deliverLarge(server.lmtpPort, `${user}@example.com`, SIZE, sent), /^250/);
      const got = createHash('sha256');
      const octets = await retrieveLarge(server.port, user, `pw-${user}`, got);
      assert.ok(octets >= SIZE, `${octets} octets retrieved`);
      assert.equal(got.digest('hex'), sent.digest('hex'));
      return peakRss(server.pid) - baseline;
    } finally {
      await server.stop();
    }
  }

  // What bounds the growth (README, "Large messages"): V8's young generation. With its defaults it grows from
  // 1 to 16 MB per semi-space during the first long transfer, and it is collected only once 32 MB of buffers
  // hang off it (2 x its default maximum), so dead buffers pile up to about that whatever the message size:
  // 42-58 MB measured for a fresh server (bench/pg-memory.ts --cold, load average 7-10), 42-49 in this test.
  // With the young generation capped (--max-semi-space-size=1, which the README offers for hosts short of
  // memory) 28-30 MB there, 29-33 here (41 once, in a full CI run with other test files beside it: hence a
  // bound of 48, still well under the defaults' figures); RETR sets that peak (the delivery grows the RSS by 3 MB).
  test('a 100 MB message in over LMTP and out with RETR, intact, in bounded server memory', async () => {
    const grown = await roundTrip('big', []);
    process.stderr.write(`# 100 MB message: server peak RSS grew by ${Math.round(grown / MB)} MB\n`);
    assert.ok(grown < 64 * MB, `the server's peak memory grew by ${Math.round(grown / MB)} MB for a 100 MB message`);
  });

  test('with the young generation capped, what the server holds for a 100 MB message is under 48 MB', async () => {
    const grown = await roundTrip('big2', ['--max-semi-space-size=1']);
    process.stderr.write(
      `# 100 MB message, --max-semi-space-size=1: server peak RSS grew by ${Math.round(grown / MB)} MB\n`,
    );
    assert.ok(grown < 48 * MB, `the server's peak memory grew by ${Math.round(grown / MB)} MB for a 100 MB message`);
  });
}
