/**
 * Deliveries while a POP3 session holds the maildrop (design.md §4: delivery takes no session lock): many at
 * once, over LMTP and through `postern deliver`, all succeed, the open session keeps its snapshot, and the
 * next session sees every message exactly once.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { skipUnlessCi } from '../helpers/peers.ts';
import { freePort, type RealServer, startRealServer } from '../helpers/realServer.ts';
import { Wire } from '../helpers/wire.ts';
import { run, swaks } from './helpers.ts';

const HAVE_SWAKS = spawnSync('swaks', ['--version']).status === 0;
const LMTP_DELIVERIES = 12;
const COMMAND_DELIVERIES = 4;

async function login(port: number): Promise<Wire> {
  const w = await Wire.connect(port);
  await w.line();
  assert.match(await w.cmd('USER alice'), /^\+OK/);
  assert.match(await w.cmd('PASS wonderland'), /^\+OK/);
  return w;
}

describe('deliveries during an open POP3 session', {
  skip: skipUnlessCi(!HAVE_SWAKS && 'swaks is not installed'),
}, () => {
  let s: RealServer;
  let lmtpPort: number;

  before(async () => {
    lmtpPort = await freePort();
    s = await startRealServer({ extraConfig: `\n[lmtp]\naddress = "127.0.0.1"\nport = ${lmtpPort}\n` });
    s.addUser('alice', 'wonderland');
    await s.start();
  });
  after(() => s.stop());

  test('concurrent LMTP and command deliveries all land; nothing is lost or duplicated', async () => {
    const seed = await swaks(['--server', '127.0.0.1', '--port', String(lmtpPort), '--to', 'alice@example.com']);
    assert.equal(seed.code, 0, seed.out);

    const session = await login(s.port);
    assert.match(await session.cmd('STAT'), /^\+OK 1 /);

    const lmtp = Array.from({ length: LMTP_DELIVERIES }, (_, i) =>
      swaks([
        '--server',
        '127.0.0.1',
        '--port',
        String(lmtpPort),
        '--to',
        'alice@example.com',
        '--header',
        `Subject: lmtp ${i}`,
      ]),
    );
    const piped = Array.from({ length: COMMAND_DELIVERIES }, (_, i) =>
      run(['deliver', '-c', s.config, '-u', 'alice'], `Subject: piped ${i}\n\nbody ${i}\n`),
    );
    const [lr, pr] = await Promise.all([Promise.all(lmtp), Promise.all(piped)]);
    for (const r of lr) assert.equal(r.code, 0, r.out);
    for (const r of pr) assert.equal(r.status, 0, r.stderr);

    // The open session still sees its snapshot; its QUIT deletes nothing it did not mark.
    assert.match(await session.cmd('STAT'), /^\+OK 1 /);
    assert.match(await session.cmd('QUIT'), /^\+OK/);
    session.destroy();

    const next = await login(s.port);
    const total = 1 + LMTP_DELIVERIES + COMMAND_DELIVERIES;
    assert.match(await next.cmd('STAT'), new RegExp(`^\\+OK ${total} `));
    assert.match(await next.cmd('UIDL'), /^\+OK/);
    const uidls = (await next.lines()).map((l) => l.split(' ')[1]);
    assert.equal(new Set(uidls).size, total, 'every UIDL distinct');
    const subjects: string[] = [];
    for (let n = 1; n <= total; n++) {
      assert.match(await next.cmd(`TOP ${n} 0`), /^\+OK/);
      const subject = (await next.lines()).find((l) => l.startsWith('Subject: '));
      if (subject) subjects.push(subject);
    }
    for (let i = 0; i < LMTP_DELIVERIES; i++) assert.ok(subjects.includes(`Subject: lmtp ${i}`), `lmtp ${i}`);
    for (let i = 0; i < COMMAND_DELIVERIES; i++) assert.ok(subjects.includes(`Subject: piped ${i}`), `piped ${i}`);
    assert.match(await next.cmd('QUIT'), /^\+OK/);
    next.destroy();
  });
});
