import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { connect, type TLSSocket } from 'node:tls';
import { generate } from 'selfsigned';
import { parseConfig } from '../../src/config/config.ts';
import type { Pop3Server } from '../../src/server/server.ts';
import { defaultLimits, makeServer, testCert } from '../helpers/server.ts';
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

describe('TLS handshake timeout (limits.tls_handshake_timeout)', () => {
  test('one named limit, the same after STLS and on the implicit-TLS listener', async () => {
    assert.equal(parseConfig('').limits.tlsHandshakeTimeoutMs, 30_000);
    assert.equal(parseConfig('[limits]\ntls_handshake_timeout = 0.5\n').limits.tlsHandshakeTimeoutMs, 500);
    const server = await makeServer({ limits: { ...defaultLimits, tlsHandshakeTimeoutMs: 500 } });
    const [plain, implicit] = await server.listen([
      { address: '127.0.0.1', port: 0, tls: 'starttls' },
      { address: '127.0.0.1', port: 0, tls: 'implicit' },
    ]);
    try {
      /** Milliseconds from `t0` until the server closes `w`. */
      const closedAfter = async (w: Wire, t0: number) => {
        await w.closed(5_000);
        return Date.now() - t0;
      };
      // Implicit TLS: a client that connects and never sends a ClientHello.
      const silent = await Wire.connect(implicit.port);
      const implicitMs = await closedAfter(silent, Date.now());
      // STLS: the +OK, then the start of a TLS record that never completes (issue 13 #6).
      const w = await Wire.connect(plain.port);
      await w.line();
      assert.match(await w.cmd('STLS'), /^\+OK/);
      const t0 = Date.now();
      w.send(Buffer.from([0x16, 0x03, 0x01, 0x40, 0x00, 0x01]));
      const stlsMs = await closedAfter(w, t0);
      for (const [where, ms] of [
        ['implicit TLS', implicitMs],
        ['STLS', stlsMs],
      ] as const) {
        assert.ok(ms >= 400 && ms < 2_500, `${where}: closed after ${ms} ms with a 500 ms limit`);
      }
    } finally {
      await server.close(0);
    }
  });
});
