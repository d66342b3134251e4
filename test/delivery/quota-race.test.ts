/**
 * Quotas hold across the recipients of one transaction and across concurrent deliveries in several processes
 * (LMTP in this process, `postern deliver` in others): only what fits is accepted, the rest is refused, and
 * the mailbox never ends over its limit.
 */
import assert from 'node:assert/strict';
import { readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { skipUnlessCi } from '../helpers/peers.ts';
import { replies, run, startTestLmtp, swaks, type TestLmtp } from './helpers.ts';

const hasSwaks = (await swaks(['--version'])).code === 0;
const QUOTA = 1024 * 1024;
/** 900 KiB of body: one fits in the quota, two do not. */
const BODY_LINES = 900;

describe('quotas across recipients and concurrent deliveries', {
  skip: skipUnlessCi(!hasSwaks && 'swaks is not installed'),
}, () => {
  let t: TestLmtp;
  let data: string;
  let config: string;
  const server = () => ['--server', '127.0.0.1', '--port', String(t.port)];
  const stored = (user: string) => {
    const d = join(t.root, user, 'Maildir', 'new');
    try {
      return readdirSync(d).map((n) => statSync(join(d, n)).size);
    } catch {
      return [];
    }
  };

  before(async () => {
    t = await startTestLmtp({
      users: { ten: ['quota_bytes=1M'], race: ['quota_bytes=1M'] },
      toml: '[lmtp]\nport = 0\nrecipient_delimiter = "+"\n',
    });
    data = join(t.dir, 'big.eml');
    writeFileSync(data, `Subject: big\r\n\r\n${`${'x'.repeat(1022)}\r\n`.repeat(BODY_LINES)}`);
    config = join(t.dir, 'deliver.toml');
    writeFileSync(config, `[storage]\nroot = "${t.root}"\n[auth]\nusers_file = "${t.usersFile}"\n`);
  });
  after(() => t.close());

  test('one transaction, ten RCPTs for one mailbox: one copy accepted, nine refused', async () => {
    const to = Array.from({ length: 10 }, (_, i) => `ten+${i}@example.com`).join(',');
    const r = await swaks([...server(), '--timeout', '60', '--to', to, '--data', `@${data}`]);
    const rs = replies(r.out);
    const afterData = rs.slice(rs.findIndex((l) => l.startsWith('354')) + 1).filter((l) => !l.startsWith('221'));
    assert.equal(afterData.length, 10, r.out);
    assert.equal(afterData.filter((l) => l.startsWith('250 ')).length, 1, afterData.join('\n'));
    assert.equal(afterData.filter((l) => /^552 5\.2\.2 /.test(l)).length, 9, afterData.join('\n'));
    const sizes = stored('ten');
    assert.equal(sizes.length, 1);
    assert.ok(sizes[0] <= QUOTA);
    assert.deepEqual(readdirSync(join(t.root, 'ten', 'Maildir', 'tmp')), [], 'refused copies leave nothing in tmp/');
  });

  test('twenty concurrent deliveries, LMTP and `postern deliver` processes: only what fits is stored', async () => {
    const lmtp = Array.from({ length: 10 }, () =>
      swaks([...server(), '--timeout', '60', '--to', 'race@example.com', '--data', `@${data}`]),
    );
    const message = `Subject: piped\n\n${`${'y'.repeat(1023)}\n`.repeat(BODY_LINES)}`;
    const piped = Array.from({ length: 10 }, () => run(['deliver', '-c', config, '-u', 'race'], message, 60_000));
    const [lr, pr] = await Promise.all([Promise.all(lmtp), Promise.all(piped)]);
    let accepted = 0;
    for (const r of lr) {
      const line = replies(r.out).find((l) => /^(250|552) .*race@example\.com/.test(l));
      assert.ok(line !== undefined, r.out);
      if (line.startsWith('250')) accepted++;
    }
    for (const r of pr) {
      assert.ok(r.status === 0 || r.status === 73, `exit ${r.status}: ${r.stderr}`);
      if (r.status === 0) accepted++;
    }
    const sizes = stored('race');
    assert.equal(accepted, 1, 'exactly one acknowledged');
    assert.equal(sizes.length, 1, 'exactly one stored');
    assert.ok(sizes.reduce((a, b) => a + b, 0) <= QUOTA, 'the mailbox is not over its quota');
    assert.deepEqual(readdirSync(join(t.root, 'race', 'Maildir', 'tmp')), []);
  });
});
