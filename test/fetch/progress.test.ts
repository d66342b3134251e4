/** What `postern fetch` shows while it works: the bar moves within a large message, as its bytes arrive. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type AccountResult, summary, TtyProgress } from '../../src/fetch/progress.ts';

describe('fetch progress', () => {
  it('a terminal bar counts the bytes of a message still arriving, and the finished message once', async () => {
    const out: string[] = [];
    const p = new TtyProgress({ write: (s: string) => out.push(s) });
    p.start('acct', 1, 10 * 1024 * 1024);
    await new Promise((r) => setTimeout(r, 120));
    p.bytes('acct', 5 * 1024 * 1024);
    assert.match(out.at(-1) ?? '', /acct: 0\/1 messages, 5\.0 MiB\/10 MiB/);
    await new Promise((r) => setTimeout(r, 120));
    p.bytes('acct', 3 * 1024 * 1024);
    assert.match(out.at(-1) ?? '', /8\.0 MiB\/10 MiB/);
    p.message('acct', { size: 10 * 1024 * 1024 });
    assert.match(out.at(-1) ?? '', /acct: 1\/1 messages, 10 MiB\/10 MiB/);
  });

  it('a failure before the listing says what failed; a certificate error names the way out', () => {
    const base: AccountResult = {
      account: 'a',
      onServer: undefined,
      fetched: 0,
      fetchedBytes: 0,
      skipped: 0,
      deleted: 0,
      elapsedMs: 5,
      dryRun: false,
    };
    assert.equal(
      summary({ ...base, stage: 'connect', error: 'cannot connect to h:1: ECONNREFUSED (POP3_ERR_CONNECT)' }),
      'a: could not connect: cannot connect to h:1: ECONNREFUSED (POP3_ERR_CONNECT)',
    );
    const tls = summary({ ...base, stage: 'connect', error: 'TLS handshake failed', errorCode: 'POP3_ERR_TLS' });
    assert.match(tls, /^a: could not connect: TLS handshake failed \(.*--probe.*--pin-sha256/);
    assert.match(summary({ ...base, stage: 'login', error: 'PASS: -ERR no' }), /^a: login failed: PASS: -ERR no$/);
    assert.match(summary({ ...base, onServer: 4, fetched: 1, stage: 'fetch', error: 'x' }), /FAILED: x$/);
  });
});
