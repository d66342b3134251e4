import assert from 'node:assert/strict';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { createCommandBearerVerifier } from '../../src/auth/sasl/bearer-command.ts';
import type { Principal } from '../../src/auth/sasl/types.ts';

const lookup = async (user: string): Promise<Principal | null> =>
  user === 'tim' || user === 'ann' ? { user, mailboxId: user } : null;

// A checker in the shape an operator would write: the token on stdin, the user name on stdout.
const SCRIPT = `#!/bin/sh
echo "$*" >> "$ARGS_LOG"
IFS= read -r token
case "$token" in
  good-tim) echo tim ;;
  good-tim-crlf) printf 'tim\\r\\nextra\\n' ;;
  good-ghost) echo ghost ;;
  whoami) echo "$POSTERN_SASL_USER" ;;
  bad-name) echo 'not a/name' ;;
  empty) ;;
  flood) while :; do echo timtimtimtimtimtimtimtimtimtimtimtimtim; done ;;
  hang) sleep 30 & echo $! > "$PID_FILE"; wait ;;
  noread) exit 0 ;;
  *) echo "refused $token" >&2; exit 1 ;;
esac
`;

describe('command bearer verifier', () => {
  let dir: string;
  let script: string;
  let argsLog: string;
  let pidFile: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'postern-bearer-cmd-'));
    script = join(dir, 'check-token');
    argsLog = join(dir, 'args.log');
    pidFile = join(dir, 'pid');
    await writeFile(script, SCRIPT);
    await chmod(script, 0o755);
    process.env.ARGS_LOG = argsLog;
    process.env.PID_FILE = pidFile;
  });
  after(async () => {
    delete process.env.ARGS_LOG;
    delete process.env.PID_FILE;
    await rm(dir, { recursive: true, force: true });
  });

  const verifier = (opts: { timeoutMs?: number; maxOutputBytes?: number } = {}) =>
    createCommandBearerVerifier([script, '--realm', 'example'], { lookup, ...opts });

  it('accepts when the command prints a known user, and the token never reaches argv', async () => {
    assert.deepEqual(await verifier().verifyBearer('good-tim', undefined), { user: 'tim', mailboxId: 'tim' });
    assert.equal((await verifier().verifyBearer('good-tim', 'tim'))?.user, 'tim');
    assert.equal((await verifier().verifyBearer('good-tim-crlf', undefined))?.user, 'tim', 'first line, CR stripped');
    const args = await readFile(argsLog, 'utf8');
    assert.match(args, /^--realm example$/m);
    assert.doesNotMatch(args, /good-tim/);
  });

  it('passes the SASL user in POSTERN_SASL_USER', async () => {
    assert.equal((await verifier().verifyBearer('whoami', 'ann'))?.user, 'ann');
    assert.equal(await verifier().verifyBearer('whoami', undefined), null, 'unset without a SASL user');
  });

  it('refuses a non-zero exit, an unknown or invalid user, empty output, and another user', async () => {
    const v = verifier();
    assert.equal(await v.verifyBearer('wrong', undefined), null);
    assert.equal(await v.verifyBearer('good-ghost', undefined), null);
    assert.equal(await v.verifyBearer('bad-name', undefined), null);
    assert.equal(await v.verifyBearer('empty', undefined), null);
    assert.equal(await v.verifyBearer('good-tim', 'ann'), null);
    assert.equal(await v.verifyBearer('noread', undefined), null);
    assert.equal(
      await v.verifyBearer('two\nlines', undefined),
      null,
      'a newline in the token never reaches the command',
    );
  });

  it('refuses unbounded output', async () => {
    assert.equal(await verifier({ maxOutputBytes: 1024 }).verifyBearer('flood', undefined), null);
  });

  it('rejects after the timeout and kills the whole process group', async () => {
    const started = Date.now();
    await assert.rejects(verifier({ timeoutMs: 300 }).verifyBearer('hang', undefined), /timed out/);
    assert.ok(Date.now() - started < 5000);
    const pid = Number((await readFile(pidFile, 'utf8')).trim());
    // Killed means gone or a zombie: in a container, PID 1 may never reap the orphaned grandchild.
    const running = async () => {
      try {
        return !/^\d+ \(.*\) Z /.test(await readFile(`/proc/${pid}/stat`, 'utf8'));
      } catch {
        return false;
      }
    };
    let alive = true;
    for (let i = 0; i < 50 && alive; i++) {
      alive = await running();
      if (alive) await sleep(20);
    }
    assert.equal(alive, false, 'the grandchild (sleep) is gone');
  });

  it('rejects when the command cannot be run', async () => {
    const missing = createCommandBearerVerifier([join(dir, 'no-such-command')], { lookup });
    await assert.rejects(missing.verifyBearer('good-tim', undefined));
    assert.throws(() => createCommandBearerVerifier([], { lookup }), TypeError);
  });

  it('runs at most maxConcurrent commands at once', async () => {
    const counter = join(dir, 'concurrency.sh');
    await writeFile(
      counter,
      `#!/bin/sh\nread -r t\nd="${dir}/running"\nmkdir -p "$d"\ntouch "$d/$$"\nls "$d" | wc -l >> "${dir}/peaks"\nsleep 0.1\nrm "$d/$$"\necho tim\n`,
    );
    await chmod(counter, 0o755);
    const v = createCommandBearerVerifier([counter], { lookup, maxConcurrent: 2 });
    const results = await Promise.all(Array.from({ length: 6 }, () => v.verifyBearer('x', undefined)));
    assert.ok(results.every((r) => r?.user === 'tim'));
    const peaks = (await readFile(join(dir, 'peaks'), 'utf8')).trim().split('\n').map(Number);
    assert.ok(Math.max(...peaks) <= 2, `peaks ${peaks}`);
  });
});
