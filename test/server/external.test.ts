/** SASL EXTERNAL with client certificates verified against tls.client_ca. */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Pop3Server } from '../../src/server/server.ts';
import { makeServer, testCert } from '../helpers/server.ts';
import { Wire } from '../helpers/wire.ts';

const b64 = (s: string) => Buffer.from(s).toString('base64');

/** A CA, and client certificates signed by it (and one signed by nobody), made with openssl at test time. */
function makePki(dir: string) {
  const run = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  run('req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-subj', '/CN=Test CA', '-days', '2');
  const client = (name: string, cn: string, signed: boolean) => {
    if (signed) {
      run('req', ...ec, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`);
      run(
        'x509',
        '-req',
        '-in',
        `${name}.csr`,
        '-CA',
        'ca.pem',
        '-CAkey',
        'ca.key',
        '-CAcreateserial',
        '-out',
        `${name}.pem`,
        '-days',
        '2',
      );
    } else {
      run('req', '-x509', ...ec, '-keyout', `${name}.key`, '-out', `${name}.pem`, '-subj', `/CN=${cn}`, '-days', '2');
    }
    return { cert: readFileSync(join(dir, `${name}.pem`)), key: readFileSync(join(dir, `${name}.key`)) };
  };
  return {
    ca: readFileSync(join(dir, 'ca.pem')),
    alice: client('alice', 'alice', true),
    mallory: client('mallory', 'alice', false),
    ghost: client('ghost', 'nobody', true),
  };
}

describe('SASL EXTERNAL', () => {
  let dir: string;
  let pki: ReturnType<typeof makePki>;
  let server: Pop3Server;
  let port: number;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'postern-pki-'));
    pki = makePki(dir);
    server = await makeServer({
      tls: { ...(await testCert()), clientCa: pki.ca },
    });
    [{ port }] = await server.listen([{ address: '127.0.0.1', port: 0, tls: 'implicit' }]);
  });
  after(async () => {
    await server.close(0);
    rmSync(dir, { recursive: true, force: true });
  });

  test('a verified certificate logs in as the user its CN names', async () => {
    const w = await Wire.connect(port, { tls: true, tlsOptions: pki.alice });
    await w.line();
    await w.cmd('CAPA');
    assert.ok((await w.lines()).some((c) => c.startsWith('SASL EXTERNAL')));
    assert.match(await w.cmd('AUTH EXTERNAL ='), /^\+OK Logged in/);
    await w.cmd('QUIT');
    const w2 = await Wire.connect(port, { tls: true, tlsOptions: pki.alice });
    await w2.line();
    assert.equal(await w2.cmd('AUTH EXTERNAL'), '+ ');
    assert.match(await w2.cmd(b64('alice')), /^\+OK/);
    await w2.cmd('QUIT');
  });

  test('no certificate, an unverified one, another authzid or an unknown user: no EXTERNAL', async () => {
    const none = await Wire.connect(port, { tls: true });
    await none.line();
    await none.cmd('CAPA');
    assert.ok(!(await none.lines()).some((c) => c.includes('EXTERNAL')));
    assert.match(await none.cmd('AUTH EXTERNAL ='), /^-ERR Unsupported/);
    none.destroy();
    const forged = await Wire.connect(port, { tls: true, tlsOptions: pki.mallory });
    await forged.line();
    assert.match(await forged.cmd('AUTH EXTERNAL ='), /^-ERR Unsupported/);
    forged.destroy();
    const other = await Wire.connect(port, { tls: true, tlsOptions: pki.alice });
    await other.line();
    assert.match(await other.cmd(`AUTH EXTERNAL ${b64('bob')}`), /^-ERR \[AUTH\]/);
    other.destroy();
    const ghost = await Wire.connect(port, { tls: true, tlsOptions: pki.ghost });
    await ghost.line();
    assert.match(await ghost.cmd('AUTH EXTERNAL ='), /^-ERR \[AUTH\]/);
    ghost.destroy();
  });
});
