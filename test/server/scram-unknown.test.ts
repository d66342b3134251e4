/**
 * SCRAM-SHA-256 must not tell which users exist (issue 13 #3): the server-first message for an unknown user
 * carries the iteration count real users' keys have (`auth.scram_iterations`) and a salt of the same length
 * and form, stable across connections. Real users file, real server, real sockets.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { addUser, PasswdFileAuthenticator } from '../../src/auth/passwd.ts';
import { parseConfig } from '../../src/config/config.ts';
import { silentLogger } from '../../src/observability/log.ts';
import type { Pop3Server } from '../../src/server/server.ts';
import { makeServer } from '../helpers/server.ts';
import { Wire } from '../helpers/wire.ts';

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'postern-scram-unknown-'));
});
after(() => rm(dir, { recursive: true, force: true }));

/** The server-first message (`r=…,s=…,i=…`) the server sends for `user`. */
async function serverFirst(port: number, user: string): Promise<{ salt: Buffer; iterations: number }> {
  const w = await Wire.connect(port);
  try {
    await w.line();
    const first = Buffer.from(`n,,n=${user},r=clientnonce`).toString('base64');
    const reply = await w.cmd(`AUTH SCRAM-SHA-256 ${first}`);
    assert.match(reply, /^\+ /);
    const text = Buffer.from(reply.slice(2), 'base64').toString('utf8');
    const m = /^r=clientnonce[^,]+,s=([A-Za-z0-9+/=]+),i=(\d+)$/.exec(text);
    assert.ok(m, text);
    return { salt: Buffer.from(m[1], 'base64'), iterations: Number(m[2]) };
  } finally {
    w.destroy();
  }
}

async function serve(file: string, scramIterations?: number): Promise<{ server: Pop3Server; port: number }> {
  const authenticator = await PasswdFileAuthenticator.load(file, { logger: silentLogger, scramIterations });
  const server = await makeServer({ authenticator, scramIterations });
  const [bound] = await server.listen([{ address: '127.0.0.1', port: 0, tls: 'none' }]);
  return { server, port: bound.port };
}

describe('SCRAM: unknown users look like real ones', () => {
  test('defaults: keys written by `postern user add` and made-up answers have the same count and salt form', async () => {
    const file = join(dir, 'default');
    await addUser(file, 'alice', 'wonderland');
    const { server, port } = await serve(file);
    try {
      const real = await serverFirst(port, 'alice');
      const ghost = await serverFirst(port, 'ghost');
      assert.equal(ghost.iterations, real.iterations);
      assert.equal(real.iterations, parseConfig('').auth.scramIterations);
      assert.equal(ghost.salt.length, real.salt.length);
      assert.deepEqual(await serverFirst(port, 'ghost'), ghost, 'the made-up answer is stable');
      assert.deepEqual(await serverFirst(port, 'alice'), real);
    } finally {
      await server.close(0);
    }
  });

  test('auth.scram_iterations applies to new keys, {PLAIN}-derived keys and made-up answers alike', async () => {
    const config = parseConfig('[auth]\nscram_iterations = 12000\n');
    assert.equal(config.auth.scramIterations, 12000);
    const file = join(dir, 'configured');
    await writeFile(file, 'plain:{PLAIN}pw\n');
    await addUser(file, 'alice', 'wonderland', { scramIterations: config.auth.scramIterations });
    const { server, port } = await serve(file, config.auth.scramIterations);
    try {
      for (const user of ['alice', 'plain', 'ghost', 'nobody-at-all']) {
        const first = await serverFirst(port, user);
        assert.equal(first.iterations, 12000, user);
        assert.equal(first.salt.length, 16, user);
      }
    } finally {
      await server.close(0);
    }
  });

  test('the RFC 7677 floor holds in the configuration', () => {
    assert.throws(() => parseConfig('[auth]\nscram_iterations = 1000\n'), /scram_iterations/);
  });
});
