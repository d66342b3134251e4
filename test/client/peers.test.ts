/**
 * The library against real servers: our own (startTestServer) and a private Dovecot. The same tests run
 * against both, because passing only against ourselves proves little (go-imap runs its client tests against
 * Dovecot the same way).
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { type Pop3ClientError, Pop3ErrorCode, type Pop3ResponseError } from '../../src/client/errors.ts';
import { type AuthMechanism, type ConnectOptions, Pop3Client } from '../../src/client/index.ts';
import { certFingerprint } from '../../src/client/transport.ts';
import { type DovecotInstance, dovecotSkipReason, startDovecot } from '../helpers/dovecot.ts';
import { startTestServer, type TestServer, testCert } from '../helpers/server.ts';

interface Peer {
  name: string;
  port: number;
  tlsPort: number;
  cert: string;
  /** Adds a message; `content` uses CRLF so that what RETR returns is exactly it. */
  add(user: string, content: Buffer): void;
  count(user: string): number;
  /** A fresh user with an empty maildrop (tests do not share one). */
  newUser(): { user: string; password: string };
  /** Mechanisms this peer supports with the users newUser() makes. */
  mechanisms: AuthMechanism[];
  /** Makes the next login of `user` fail with -ERR [IN-USE] (e.g. hold its lock), or undefined if the peer can't. */
  lockedOut?: (user: string) => Promise<() => Promise<void>>;
  close(): Promise<void>;
}

async function ourPeer(): Promise<Peer> {
  const users: Record<string, { password: string; secret?: string }> = {};
  for (let i = 0; i < 40; i++) users[`user${i}`] = { password: `pw ${i}`, secret: `pw ${i}` };
  const srv: TestServer = await startTestServer({ users });
  const { cert } = await testCert();
  let n = 0;
  return {
    name: 'Postern server',
    port: srv.port,
    tlsPort: srv.tlsPort,
    cert,
    add: (user, content) => {
      srv.store.add(user, content);
    },
    count: (user) => srv.store.list(user).length,
    newUser: () => {
      const i = n++;
      return { user: `user${i}`, password: `pw ${i}` };
    },
    mechanisms: ['USER', 'APOP', 'PLAIN', 'LOGIN', 'CRAM-MD5', 'SCRAM-SHA-256'],
    lockedOut: async (user) => {
      const release = srv.store.holdLock(user);
      return async () => release();
    },
    close: () => srv.close(),
  };
}

async function dovecotPeer(): Promise<Peer> {
  const users: Record<string, string> = {};
  for (let i = 0; i < 40; i++) users[`dove${i}`] = `secret ${i}`;
  const d: DovecotInstance = await startDovecot({ users });
  let n = 0;
  return {
    name: 'Dovecot',
    port: d.port,
    tlsPort: d.tlsPort,
    cert: d.cert,
    add: (user, content) => {
      d.addMessage(user, content);
    },
    count: (user) => d.count(user),
    newUser: () => {
      const i = n++;
      return { user: `dove${i}`, password: `secret ${i}` };
    },
    mechanisms: ['USER', 'APOP', 'PLAIN', 'LOGIN', 'CRAM-MD5', 'SCRAM-SHA-256'],
    close: () => d.stop(),
  };
}

function message(i: number, extra = ''): Buffer {
  return Buffer.concat([
    Buffer.from(`From: a@example.org\r\nSubject: message ${i}\r\nMessage-ID: <${i}@t>\r\n\r\n`),
    Buffer.from(`.line starting with a dot\r\n..two\r\n.\r\nbody of ${i}${extra}\r\n`),
    Buffer.from([0xe2, 0x82, 0xac, 0x0d, 0x0a]), // 8-bit (UTF-8 euro sign)
  ]);
}

function peerSuite(label: string, makePeer: () => Promise<Peer>, skip: string | false | undefined) {
  describe(`client against ${label}`, { skip }, () => {
    let peer: Peer;
    before(async () => {
      peer = await makePeer();
    });
    after(async () => {
      await peer?.close();
    });

    function user(): { user: string; password: string } {
      return peer.newUser();
    }

    function opts(extra: Partial<ConnectOptions> = {}): ConnectOptions {
      return {
        host: '127.0.0.1',
        port: peer.tlsPort,
        tls: 'implicit',
        tlsOptions: { ca: peer.cert },
        timeoutMs: 10_000,
        ...extra,
      };
    }

    it('implicit TLS verifies the certificate: refused without the CA, accepted with it or with a pin', async () => {
      const err = await Pop3Client.connect({ host: '127.0.0.1', port: peer.tlsPort, tls: 'implicit' }).catch(
        (e: unknown) => e,
      );
      assert.equal((err as Pop3ClientError).code, Pop3ErrorCode.Tls);
      const c = await Pop3Client.connect(opts());
      assert.equal(c.tls?.authorized, true);
      const fp = c.tls?.fingerprint256 ?? '';
      c.destroy();
      const pinned = await Pop3Client.connect({
        host: '127.0.0.1',
        port: peer.tlsPort,
        tls: 'implicit',
        pinSha256: fp,
      });
      assert.equal(pinned.secure, true);
      pinned.destroy();
      const wrong = await Pop3Client.connect({
        host: '127.0.0.1',
        port: peer.tlsPort,
        tls: 'implicit',
        pinSha256: 'ab'.repeat(32),
      }).catch((e: unknown) => e);
      assert.equal((wrong as Pop3ClientError).code, Pop3ErrorCode.Tls);
      assert.equal(fp, certFingerprint(c.tls?.certificate ?? ({} as never)));
    });

    it('STLS upgrades the plain port and re-reads CAPA', async () => {
      const u = user();
      const c = await Pop3Client.connect(opts({ port: peer.port, tls: 'starttls', auth: u }));
      assert.equal(c.secure, true);
      assert.equal(c.capabilities.has('STLS'), false);
      assert.equal(c.state, 'TRANSACTION');
      await c.quit();
      // STLS verifies the certificate too.
      const err = await Pop3Client.connect({ host: '127.0.0.1', port: peer.port, tls: 'starttls' }).catch(
        (e: unknown) => e,
      );
      assert.equal((err as Pop3ClientError).code, Pop3ErrorCode.Tls);
    });

    it("tls: 'none' works only with explicit allowInsecureAuth for USER", async () => {
      const u = user();
      const refused = await Pop3Client.connect(
        opts({ port: peer.port, tls: 'none', auth: { ...u, mechanism: 'USER' } }),
      ).catch((e: unknown) => e);
      assert.equal((refused as Pop3ClientError).code, Pop3ErrorCode.Auth);
      const c = await Pop3Client.connect(
        opts({ port: peer.port, tls: 'none', allowInsecureAuth: true, auth: { ...u, mechanism: 'USER' } }),
      );
      assert.equal(c.secure, false);
      await c.quit();
    });

    it('logs in with every mechanism the server supports, and chooses the strongest by default', async (t) => {
      const u = user();
      for (const mechanism of peer.mechanisms) {
        const probe = await Pop3Client.connect(opts());
        const offered = mechanism === 'USER' || mechanism === 'APOP' || probe.capabilities.sasl.includes(mechanism);
        const apop = probe.apopTimestamp !== undefined;
        probe.destroy();
        if (!offered || (mechanism === 'APOP' && !apop)) {
          t.diagnostic(`${peer.name} does not offer ${mechanism}`);
          continue;
        }
        const c = await Pop3Client.connect(opts({ auth: { ...u, mechanism } }));
        assert.equal(c.mechanism, mechanism);
        await c.noop();
        await c.quit();
        const bad = await Pop3Client.connect(opts({ auth: { ...u, password: 'wrong', mechanism } })).catch(
          (e: unknown) => e,
        );
        assert.equal((bad as Pop3ClientError).code, Pop3ErrorCode.Auth, `${mechanism} with a wrong password`);
        assert.ok(!String((bad as Error).message).includes(u.password));
      }
      const auto = await Pop3Client.connect(opts({ auth: u }));
      t.diagnostic(`${peer.name}: automatic choice ${auto.mechanism}`);
      const best = ['SCRAM-SHA-256', 'CRAM-MD5', 'APOP'];
      assert.ok(best.includes(auto.mechanism ?? ''), `chose ${auto.mechanism}`);
      await auto.quit();
    });

    for (const pipelining of [true, false]) {
      it(`every command, pipelining ${pipelining ? 'on' : 'off'}`, async () => {
        const u = user();
        const msgs = Array.from({ length: 30 }, (_, i) => message(i));
        for (const m of msgs) peer.add(u.user, m);
        const c = await Pop3Client.connect(opts({ auth: u, pipelining }));
        assert.equal(c.pipelineWindow, pipelining && c.capabilities.has('PIPELINING') ? 16 : 1);
        const caps = await c.capa();
        assert.ok(caps.has('UIDL') && caps.has('TOP'));
        const stat = await c.stat();
        assert.equal(stat.count, 30);
        assert.equal(
          stat.size,
          msgs.reduce((a, m) => a + m.length, 0),
        );
        // Servers choose the order (Dovecot lists a Maildir's new/ in its own order), so compare as sets.
        const sorted = (bs: Buffer[]) => [...bs].sort(Buffer.compare);
        const list = await c.list();
        assert.deepEqual(list.map((l) => l.size).sort(), msgs.map((m) => m.length).sort());
        assert.deepEqual(await c.list(3), list[2]);
        const uidls = await c.uidl();
        assert.equal(new Set(uidls.map((x) => x.uidl)).size, 30);
        assert.deepEqual(await c.uidl(5), uidls[4]);
        const seen: Buffer[] = [];
        for await (const m of c.messages()) {
          assert.equal(m.uidl, uidls[m.number - 1].uidl);
          assert.equal(m.size, list[m.number - 1].size);
          const body = await (await c.retrieve(m.number)).bytes();
          assert.equal(body.length, m.size);
          seen.push(body);
        }
        assert.deepEqual(sorted(seen), sorted(msgs)); // byte-exact, dots and 8-bit included
        // Many RETRs issued at once: with pipelining they are all on the wire; replies still match up.
        const streams = msgs.map((_, i) => c.retrieve(i + 1).then((s) => s.bytes()));
        assert.deepEqual(await Promise.all(streams), seen);
        const top = await (await c.top(1, 1)).text('latin1');
        assert.equal(top, `${seen[0].toString('latin1').split('\r\n\r\n')[0]}\r\n\r\n.line starting with a dot\r\n`);
        const missing = (await c.retrieve(999).catch((e: unknown) => e)) as Pop3ResponseError;
        assert.equal(missing.code, Pop3ErrorCode.Response);
        await c.delete(1);
        await c.delete(2);
        assert.equal((await c.stat()).count, 28);
        await c.reset();
        assert.equal((await c.stat()).count, 30);
        await c.delete(30);
        await c.noop();
        await c.quit();
        assert.equal(c.state, 'CLOSED');
        assert.equal(peer.count(u.user), 29);
      });
    }

    it('an aborted session deletes nothing', async () => {
      const u = user();
      for (let i = 0; i < 3; i++) peer.add(u.user, message(i));
      const ac = new AbortController();
      const c = await Pop3Client.connect(opts({ auth: u, signal: ac.signal }));
      await c.delete(1);
      await c.delete(2);
      ac.abort();
      assert.equal(c.state, 'CLOSED');
      // Give the server a moment to notice the drop, then look.
      await new Promise((r) => setTimeout(r, 100));
      const again = await Pop3Client.connect(opts({ auth: u }));
      assert.equal((await again.stat()).count, 3);
      await again.quit();
    });

    it('a locked maildrop is -ERR [IN-USE], a typed response error that is not an auth error', async (t) => {
      if (!peer.lockedOut) {
        t.skip('tested separately below with its own instance');
        return;
      }
      const u = user();
      const release = await peer.lockedOut(u.user);
      try {
        const err = (await Pop3Client.connect(opts({ auth: u })).catch((e: unknown) => e)) as Pop3ResponseError;
        assert.equal(err.code, Pop3ErrorCode.Response);
        assert.equal(err.respCode, 'IN-USE');
        assert.equal(err.temporary, true);
      } finally {
        await release();
      }
    });

    it('streams a large message with bounded buffering and exact bytes', async () => {
      const u = user();
      const line = Buffer.from(`${'.'.repeat(10)}${'z'.repeat(1012)}\r\n`);
      // 6 MiB, every body line dot-stuffed. (A header first: Dovecot 2.3 does not stuff a message's first line.)
      const big = Buffer.concat([Buffer.from('Subject: big\r\n\r\n'), ...Array.from({ length: 6 * 1024 }, () => line)]);
      peer.add(u.user, big);
      const c = await Pop3Client.connect(opts({ auth: u }));
      const stream = await c.retrieve(1);
      await new Promise((r) => setTimeout(r, 300)); // the consumer is slow: nothing read yet
      assert.ok(stream.readableLength <= 512 * 1024, `buffered ${stream.readableLength} bytes while paused`);
      const hash = createHash('sha256');
      let n = 0;
      for await (const chunk of stream) {
        hash.update(chunk as Buffer);
        n += (chunk as Buffer).length;
      }
      assert.equal(n, big.length);
      assert.equal(hash.digest('hex'), createHash('sha256').update(big).digest('hex'));
      await c.quit();
    });
  });
}

peerSuite('our server', ourPeer, undefined);
peerSuite('Dovecot', dovecotPeer, dovecotSkipReason());

describe('client against Dovecot with pop3_lock_session', { skip: dovecotSkipReason() }, () => {
  it('a second session gets -ERR [IN-USE] (after Dovecot waits ~10 s for the lock)', async () => {
    const d = await startDovecot({ users: { locked: 'pw' }, extraConfig: 'pop3_lock_session = yes\n' });
    try {
      const o: ConnectOptions = {
        host: '127.0.0.1',
        port: d.tlsPort,
        tls: 'implicit',
        tlsOptions: { ca: d.cert },
        timeoutMs: 30_000,
        auth: { user: 'locked', password: 'pw' },
      };
      const holder = await Pop3Client.connect(o);
      const err = (await Pop3Client.connect(o).catch((e: unknown) => e)) as Pop3ResponseError;
      assert.equal(err.code, Pop3ErrorCode.Response);
      assert.equal(err.respCode, 'IN-USE');
      assert.equal(err.temporary, true);
      await holder.quit();
    } finally {
      await d.stop();
    }
  });
});
