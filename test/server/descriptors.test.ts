/**
 * The metrics endpoint cannot take the descriptors POP3 needs (issue 13 #10): it has a connection cap and
 * short timeouts, and the POP3 listener keeps a reserve, so with hundreds of idle metrics connections under a
 * lowered descriptor limit a POP3 client is still greeted, and once the sessions fill the budget it is
 * answered `-ERR [SYS/TEMP]`, never closed without a byte.
 */
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { MetricsServer } from '../../src/observability/endpoint.ts';
import { commandWorks, skipUnlessCi } from '../helpers/peers.ts';
import { freePort, startRealServer } from '../helpers/realServer.ts';
import { Wire } from '../helpers/wire.ts';

/** Opens `n` TCP connections that send nothing; resolves once all are connected or refused. */
async function idleConnections(port: number, n: number): Promise<Socket[]> {
  const out: Socket[] = [];
  await Promise.all(
    Array.from({ length: n }, () => {
      const s = connect({ port, host: '127.0.0.1' });
      s.on('error', () => {});
      out.push(s);
      return new Promise<void>((r) => {
        s.once('connect', () => r());
        s.once('close', () => r());
      });
    }),
  );
  return out;
}

const open = (sockets: Socket[]) => sockets.filter((s) => !s.destroyed && s.readyState === 'open').length;

/** The first line a new POP3 connection gets, or '' when it is closed without a byte. */
async function greeting(port: number): Promise<string> {
  const w = await Wire.connect(port);
  try {
    return await w.line(5_000);
  } catch {
    return w.pending();
  } finally {
    w.destroy();
  }
}

describe('metrics endpoint limits', () => {
  test('connections beyond the cap are closed at once; idle ones after the short timeouts', async () => {
    const server = new MetricsServer({
      address: '127.0.0.1',
      port: 0,
      metrics: async () => 'x 1\n',
      maxConnections: 8,
      timeouts: { headersMs: 400, requestMs: 800, keepAliveMs: 400, idleMs: 400 },
    });
    const port = await server.listen();
    try {
      const idle = await idleConnections(port, 40);
      await sleep(200);
      assert.ok(open(idle) <= 8, `${open(idle)} idle connections kept open with a cap of 8`);
      await sleep(1_500);
      assert.equal(open(idle), 0, 'idle connections are closed by the timeouts');
      const res = await fetch(`http://127.0.0.1:${port}/health`);
      assert.equal(res.status, 200);
      for (const s of idle) s.destroy();
    } finally {
      await server.close();
    }
  });
});

describe('descriptor reserve', {
  skip: skipUnlessCi(!commandWorks('prlimit', ['--version']) && 'prlimit not installed'),
}, () => {
  test('600 idle metrics connections under a 256-descriptor limit: POP3 still answers, -ERR [SYS/TEMP] when full', async () => {
    const metricsPort = await freePort();
    const s = await startRealServer({
      nofile: 256,
      extraConfig: `[metrics]\nenabled = true\naddress = "127.0.0.1"\nport = ${metricsPort}\n`,
      limits: 'max_connections_per_address = 1000',
    });
    s.addUser('alice', 'pw');
    await s.start();
    try {
      assert.match(s.logs(), /file descriptor limit allows fewer POP3 sessions/);
      const idle = await idleConnections(metricsPort, 600);
      await sleep(300);
      assert.ok(open(idle) <= 32, `${open(idle)} idle metrics connections held`);
      assert.match(await greeting(s.port), /^\+OK/, 'a POP3 client is greeted while the metrics port is flooded');
      // Fill the POP3 budget: every connection gets a greeting or -ERR [SYS/TEMP], none is closed silently.
      const held: Wire[] = [];
      let refused = 0;
      for (let i = 0; i < 300 && refused < 3; i++) {
        const w = await Wire.connect(s.port);
        const first = await w.line(5_000).catch(() => `<closed: ${JSON.stringify(w.pending())}>`);
        if (first.startsWith('+OK')) held.push(w);
        else {
          assert.match(first, /^-ERR \[SYS\/TEMP\]/, `connection ${i}`);
          refused++;
          w.destroy();
        }
      }
      assert.equal(refused, 3, `${held.length} sessions held and nothing refused`);
      assert.ok(held.length >= 20 && held.length < 256, `${held.length} sessions under a 256-descriptor limit`);
      for (const w of [...held]) w.destroy();
      for (const c of idle) c.destroy();
      await sleep(300);
      assert.match(await greeting(s.port), /^\+OK/, 'greeted again once the sessions are gone');
    } finally {
      await s.stop();
    }
  });
});
