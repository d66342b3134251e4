/**
 * Soak: SIGKILL of `postern fetch` (delete mode) at random points of its run against a POP3 server, then a run
 * to completion. Every message ends up in the local Maildir exactly once and whole, and is gone from the server
 * only after that: nothing lost, nothing duplicated, no partial file in new/ or cur/.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { BIN } from '../helpers/realServer.ts';
import { startTestServer, type TestServer, testCert } from '../helpers/server.ts';
import {
  assertWhole,
  checkMaildir,
  report,
  rounds,
  type SoakDir,
  selfCheckingMessage,
  sleep,
  soakDir,
} from './harness.ts';

const RUNS = rounds(3);
const PER_RUN = 6;

function fetch(accounts: string, killAfterMs?: number): Promise<{ code: number | null; ms: number; err: string }> {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const c = spawn(process.execPath, [BIN, 'fetch', '-f', accounts], {
      env: { ...process.env, SOAK_PW: 'pw' },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let err = '';
    c.stderr?.on('data', (b: Buffer) => {
      err += b;
    });
    const bound = setTimeout(() => c.kill('SIGKILL'), 120_000);
    const kill = killAfterMs === undefined ? undefined : setTimeout(() => c.kill('SIGKILL'), killAfterMs);
    c.once('exit', (code) => {
      clearTimeout(bound);
      if (kill) clearTimeout(kill);
      resolve({ code, ms: Date.now() - t0, err });
    });
  });
}

describe('soak: SIGKILL of postern fetch', () => {
  let d: SoakDir;
  let srv: TestServer;
  let accounts: string;
  before(async () => {
    d = await soakDir({});
    srv = await startTestServer({ users: { far: { password: 'pw' } } });
    const ca = join(d.dir, 'ca.pem');
    writeFileSync(ca, (await testCert()).cert);
    accounts = join(d.dir, 'fetch.toml');
    writeFileSync(
      accounts,
      `state_dir = "${d.dir}/state"\n[[account]]\nname = "soak"\nhost = "127.0.0.1"\nport = ${srv.tlsPort}\n` +
        `tls = "implicit"\nuser = "far"\npassword_env = "SOAK_PW"\nca_file = "${ca}"\n` +
        `maildir = "${d.dir}/Local"\nkeep = false\n`,
    );
  });
  after(async () => {
    await srv.close();
    d.remove();
  });

  test(`${RUNS} kills at random points of postern fetch: every message once, whole`, async () => {
    const local = join(d.dir, 'Local');
    const all: string[] = [];
    const durations: number[] = [];
    let next = 0;
    let interrupted = 0;
    for (let run = 0; run < RUNS; run++) {
      for (let i = 0; i < PER_RUN; i++) {
        const token = `f${next++}`;
        all.push(token);
        srv.store.add(
          'far',
          selfCheckingMessage(token, 20_000 + Math.floor(Math.random() * 200_000)).toString('latin1'),
        );
      }
      const typical = durations.length ? durations.sort((a, b) => a - b)[Math.floor(durations.length / 2)] : 3000;
      const killed = await fetch(accounts, typical * (0.3 + Math.random() * 0.8));
      if (killed.code !== 0) interrupted++;
      assertWhole(checkMaildir(local), `run ${run}, after the kill`);
      // The server notices the dead client's hang-up and releases its lock; a run right after may see [IN-USE].
      let done = await fetch(accounts);
      for (let tries = 0; done.code !== 0 && tries < 5; tries++) {
        await sleep(200);
        done = await fetch(accounts);
      }
      assert.equal(done.code, 0, done.err);
      durations.push(done.ms);
      const c = checkMaildir(local);
      assertWhole(c, `run ${run}`);
      for (const t of all) assert.ok(c.tokens.has(t), `run ${run}: ${t} lost`);
      assert.equal(c.tokens.size, all.length, `run ${run}: an unknown message appeared`);
      assert.equal(srv.store.list('far').length, 0, `run ${run}: left on the server`);
    }
    report(
      'kill-fetch',
      `${RUNS} SIGKILLs of postern fetch --delete (${interrupted} mid-run), ${all.length} messages: ` +
        '0 lost, 0 duplicated, 0 partial, 0 left on the server',
    );
  });
});
