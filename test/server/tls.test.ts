import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { connect, type TLSSocket } from 'node:tls';
import { generate } from 'selfsigned';
import type { Pop3Server } from '../../src/server/server.ts';
import { makeServer, testCert } from '../helpers/server.ts';
import { Wire } from '../helpers/wire.ts';

async function cert(cn: string) {
  const p = await generate([{ name: 'commonName', value: cn }], { keyType: 'ec', curve: 'P-256', algorithm: 'sha256' });
  return { cert: p.cert, key: p.private };
}

function peerCn(port: number, servername?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s: TLSSocket = connect({ port, host: '127.0.0.1', rejectUnauthorized: false, servername });
    s.once('secureConnect', () => {
      const cn = s.getPeerCertificate().subject?.CN;
      s.destroy();
      resolve(String(cn));
    });
    s.once('error', reject);
  });
}

describe('certificates', () => {
  let server: Pop3Server;
  let port: number;
  let base: { cert: string; key: string };
  before(async () => {
    base = await testCert();
    const other = await cert('mail.other.test');
    const wild = await cert('wildcard.example.test');
    server = await makeServer({
      tls: {
        ...base,
        sni: [
          { names: ['mail.other.test'], ...other },
          { names: ['*.example.test'], ...wild },
        ],
      },
    });
    [{ port }] = await server.listen([{ address: '127.0.0.1', port: 0, tls: 'implicit' }]);
  });
  after(() => server.close(0));

  test('SNI picks the certificate by exact name, then by wildcard, else the default', async () => {
    assert.equal(await peerCn(port, 'mail.other.test'), 'mail.other.test');
    assert.equal(await peerCn(port, 'pop.example.test'), 'wildcard.example.test');
    assert.equal(await peerCn(port, 'a.b.example.test'), 'localhost');
    assert.equal(await peerCn(port, 'unknown.test'), 'localhost');
  });

  test('a reloaded certificate serves new connections; an open session goes on', async () => {
    const w = await Wire.connect(port, { tls: true });
    await w.line();
    const next = await cert('renewed.test');
    server.setTls(next);
    assert.equal(await peerCn(port, 'whatever.test'), 'renewed.test');
    assert.match(await w.cmd('USER alice'), /^\+OK/);
    assert.match(await w.cmd('PASS wonderland'), /^\+OK/);
    await w.cmd('QUIT');
    server.setTls({ ...base });
  });
});
