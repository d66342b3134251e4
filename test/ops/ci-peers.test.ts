/**
 * Under CI=true a missing test peer fails the run instead of skipping (issue 13): the helper throws, and no
 * test file skips on a missing peer without going through it.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { skipUnlessCi } from '../helpers/peers.ts';

const ROOT = resolve(import.meta.dirname, '../..');

function testFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? testFiles(p) : n.endsWith('.ts') ? [p] : [];
  });
}

test('skipUnlessCi skips with the reason, or fails under CI=true', () => {
  const saved = process.env.CI;
  try {
    delete process.env.CI;
    assert.equal(skipUnlessCi('swaks is not installed'), 'swaks is not installed');
    assert.equal(skipUnlessCi(false), false);
    process.env.CI = 'true';
    assert.throws(() => skipUnlessCi('swaks is not installed'), /CI=true: .*swaks is not installed/);
    assert.equal(skipUnlessCi(null), false);
  } finally {
    if (saved === undefined) delete process.env.CI;
    else process.env.CI = saved;
  }
});

test('a test file whose peer is missing fails under CI=true and skips otherwise', () => {
  const probe = `import { skipUnlessCi } from ${JSON.stringify(join(ROOT, 'test/helpers/peers.ts'))};
import { test } from 'node:test';
test('needs a peer', { skip: skipUnlessCi('no-such-peer is not installed') }, () => {});`;
  const dir = mkdtempSync(join(tmpdir(), 'postern-ci-peers-'));
  const file = join(dir, 'probe.test.ts');
  writeFileSync(file, probe);
  const run = (ci: boolean) =>
    spawnSync(process.execPath, ['--import', 'tsx', '--test', file], {
      cwd: ROOT,
      encoding: 'utf8',
      // A run of its own, not a subtest of this runner (NODE_TEST_CONTEXT would make it report to us).
      env: { ...process.env, NODE_TEST_CONTEXT: undefined, CI: ci ? 'true' : '' },
      timeout: 60_000,
    });
  const dev = run(false);
  assert.equal(dev.status, 0, dev.stdout + dev.stderr);
  const ci = run(true);
  assert.notEqual(ci.status, 0, 'CI=true with a missing peer must fail');
  assert.match(ci.stdout + ci.stderr, /no-such-peer is not installed/);
  rmSync(dir, { recursive: true, force: true });
});

test('every skip for a missing peer goes through skipUnlessCi', () => {
  const offenders: string[] = [];
  for (const file of testFiles(join(ROOT, 'test'))) {
    const lines = readFileSync(file, 'utf8').split('\n');
    for (const [i, line] of lines.entries()) {
      // `{ skip: <condition> && 'reason' }` (or a reason function) that is not wrapped.
      if (line.trim().startsWith('//')) continue;
      if (/\{\s*skip: (?!skipUnlessCi\(|dovecotSkipReason\(|skip\b)/.test(line)) {
        offenders.push(`${file}:${i + 1}: ${line.trim()}`);
      }
    }
  }
  assert.deepEqual(offenders, []);
});
