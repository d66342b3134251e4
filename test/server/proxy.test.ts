import assert from 'node:assert/strict';
import { connect as netConnect } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { connect as tlsConnect } from 'node:tls';
import { parseProxyHeader } from '../../src/server/proxy.ts';
import type { Pop3Server } from '../../src/server/server.ts';
import { defaultLimits, makeServer } from '../helpers/server.ts';
import { Wire } from '../helpers/wire.ts';

const SIG = Buffer.from('0d0a0d0a000d0a515549540a', 'hex');

function v2(opts: { family?: 'ipv4' | 'ipv6'; local?: boolean; ssl?: boolean } = {}): Buffer {
  const tlvs: Buffer[] = [];
  if (opts.ssl) {
    // PP2_TYPE_SSL: client flags (PP2_CLIENT_SSL), verify (0), then a PP2_SUBTYPE_SSL_VERSION sub-TLV.
    const sub = Buffer.concat([Buffer.from([0x21, 0x00, 0x07]), Buffer.from('TLSv1.3')]);
    const value = Buffer.concat([Buffer.from([0x01, 0, 0, 0, 0]), sub]);
    const head = Buffer.alloc(3);
    head[0] = 0x20;
    head.writeUInt16BE(value.length, 1);
    tlvs.push(head, value);
  }
  let addr: Buffer;
  let fam: number;
  if (opts.family === 'ipv6') {
    addr = Buffer.alloc(36);
    Buffer.from('20010db8000000000000000000000042', 'hex').copy(addr, 0);
    addr[31] = 1; // dst ::1
    addr.writeUInt16BE(40000, 32);
    addr.writeUInt16BE(110, 34);
    fam = 0x21;
  } else {
    addr = Buffer.from([198, 51, 100, 23, 127, 0, 0, 1, 0x9c, 0x40, 0, 110]);
    fam = 0x11;
  }
  const body = Buffer.concat([addr, ...tlvs]);
  const hdr = Buffer.alloc(4);
  hdr[0] = opts.local ? 0x20 : 0x21;
  hdr[1] = fam;
  hdr.writeUInt16BE(body.length, 2);
  return Buffer.concat([SIG, hdr, body]);
}

describe('PROXY header parser', () => {
  test('v1 TCP4, TCP6 and UNKNOWN', () => {
    const r = parseProxyHeader(Buffer.from('PROXY TCP4 203.0.113.7 10.0.0.1 5555 110\r\nUSER x\r\n'));
    assert.deepEqual(r, { kind: 'ok', consumed: 42, source: { address: '203.0.113.7', port: 5555 }, ssl: false });
    const r6 = parseProxyHeader(Buffer.from('PROXY TCP6 2001:db8::1 ::1 40000 995\r\n'));
    assert.equal(r6.kind === 'ok' && r6.source?.address, '2001:db8::1');
    const ru = parseProxyHeader(Buffer.from('PROXY UNKNOWN\r\n'));
    assert.deepEqual(ru, { kind: 'ok', consumed: 15, ssl: false });
  });

  test('v2 IPv4, IPv6, LOCAL and the SSL TLV', () => {
    const a = parseProxyHeader(Buffer.concat([v2(), Buffer.from('rest')]));
    assert.equal(a.kind, 'ok');
    if (a.kind === 'ok') {
      assert.deepEqual(a.source, { address: '198.51.100.23', port: 40000 });
      assert.equal(a.consumed, v2().length);
      assert.equal(a.ssl, false);
    }
    const b = parseProxyHeader(v2({ family: 'ipv6', ssl: true }));
    assert.ok(b.kind === 'ok' && b.source?.address === '2001:db8::42' && b.ssl);
    const c = parseProxyHeader(v2({ local: true }));
    assert.ok(c.kind === 'ok' && c.source === undefined);
  });

  test('incomplete at every split point, then complete', () => {
    for (const full of [Buffer.from('PROXY TCP4 203.0.113.7 10.0.0.1 5555 110\r\n'), v2({ ssl: true })]) {
      for (let i = 0; i < full.length; i++) {
        assert.equal(parseProxyHeader(full.subarray(0, i)).kind, 'incomplete', `split at ${i}`);
      }
      assert.equal(parseProxyHeader(full).kind, 'ok');
    }
  });

  test('malformed headers are invalid', () => {
    for (const bad of [
      'USER alice\r\n',
      'PROXY TCP4 999.1.1.1 10.0.0.1 1 2\r\n',
      'PROXY TCP4 1.2.3.4 10.0.0.1 99999 2\r\n',
      'PROXY TCP6 1.2.3.4 10.0.0.1 1 2\r\n',
      'PROXY TCP4 1.2.3.4\r\n',
      `PROXY TCP4 ${'1'.repeat(120)}`,
    ]) {
      assert.equal(parseProxyHeader(Buffer.from(bad)).kind, 'invalid', bad);
    }
    const wrongVersion = v2();
    wrongVersion[12] = 0x11;
    assert.equal(parseProxyHeader(wrongVersion).kind, 'invalid');
    const huge = v2();
    huge.writeUInt16BE(60000, 14);
    assert.equal(parseProxyHeader(huge).kind, 'invalid');
  });
});

describe('PROXY listeners', () => {
  let server: Pop3Server;
  let untrusted: Pop3Server;
  let port: number;
  let tlsPort: number;
  let untrustedPort: number;
  before(async () => {
    const limits = { ...defaultLimits, maxConnectionsPerAddress: 1 };
    server = await makeServer({ limits, proxy: { trusted: ['127.0.0.0/8'], timeoutMs: 300 } });
    [{ port }, { port: tlsPort }] = await server.listen([
      { address: '127.0.0.1', port: 0, tls: 'starttls', proxyProtocol: true },
      { address: '127.0.0.1', port: 0, tls: 'implicit', proxyProtocol: true },
    ]);
    untrusted = await makeServer({ limits, proxy: { trusted: ['10.0.0.0/8'], timeoutMs: 300 } });
    [{ port: untrustedPort }] = await untrusted.listen([
      { address: '127.0.0.1', port: 0, tls: 'starttls', proxyProtocol: true },
    ]);
  });
  after(async () => {
    await server.close(0);
    await untrusted.close(0);
  });

  test('the address from a v1 header is the client address (a remote client may not use plaintext)', async () => {
    const w = await Wire.connect(port);
    // Header and first command in one write: the command must still be read after the header.
    w.send('PROXY TCP4 203.0.113.7 127.0.0.1 5555 110\r\nCAPA\r\n');
    assert.match(await w.line(), /^\+OK/);
    assert.match(await w.line(), /^\+OK/);
    const caps = await w.lines();
    assert.ok(!caps.includes('USER'), 'USER not offered to a remote plaintext client');
    assert.match(await w.cmd('USER alice'), /^-ERR \[AUTH\] Plaintext/);
    w.destroy();
  });

  test('limits count the real client address, not the proxy', async () => {
    const a = await Wire.connect(port);
    a.send('PROXY TCP4 203.0.113.8 127.0.0.1 1 110\r\n');
    assert.match(await a.line(), /^\+OK/);
    const b = await Wire.connect(port);
    b.send('PROXY TCP4 203.0.113.9 127.0.0.1 1 110\r\n');
    assert.match(await b.line(), /^\+OK/); // another client behind the same proxy
    const c = await Wire.connect(port);
    c.send('PROXY TCP4 203.0.113.8 127.0.0.1 2 110\r\n');
    assert.match(await c.line(), /^-ERR \[SYS\/TEMP\] too many connections/);
    for (const w of [a, b, c]) w.destroy();
  });

  test('a v2 header with the SSL TLV marks the connection secure (TLS ended at the proxy)', async () => {
    const w = await Wire.connect(port);
    w.send(v2({ ssl: true }));
    assert.match(await w.line(), /^\+OK/);
    await w.cmd('CAPA');
    const caps = await w.lines();
    assert.ok(caps.includes('USER') && !caps.includes('STLS'), String(caps));
    assert.match(await w.cmd('USER alice'), /^\+OK/);
    assert.match(await w.cmd('PASS wonderland'), /^\+OK/);
    await w.cmd('QUIT');
  });

  test('implicit TLS behind a TCP proxy: header, then the TLS handshake', async () => {
    const raw = netConnect({ port: tlsPort, host: '127.0.0.1' });
    await new Promise((r) => raw.once('connect', r));
    raw.cork();
    raw.write('PROXY TCP4 198.51.100.1 127.0.0.1 1 995\r\n');
    const tls = tlsConnect({ socket: raw, rejectUnauthorized: false });
    process.nextTick(() => raw.uncork());
    const line = await new Promise<string>((resolve, reject) => {
      tls.once('data', (d) => resolve(d.toString()));
      tls.once('error', reject);
      setTimeout(() => reject(new Error('timeout')), 5000).unref();
    });
    assert.match(line, /^\+OK/);
    tls.destroy();
  });

  test('no header within the timeout, a garbage header, or an untrusted peer: closed without a greeting', async () => {
    const slow = await Wire.connect(port);
    await slow.closed(3000);
    assert.equal(slow.pending(), '');
    const bad = await Wire.connect(port);
    bad.send('HELLO\r\n');
    await bad.closed(3000);
    assert.equal(bad.pending(), '');
    const u = await Wire.connect(untrustedPort);
    u.send('PROXY TCP4 203.0.113.7 127.0.0.1 5555 110\r\n');
    await u.closed(3000);
    assert.equal(u.pending(), '');
  });
});
