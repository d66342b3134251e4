import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { describe, it } from 'node:test';
import { readSecret, SecretInputError, type SecretInputStream } from '../../src/cli/prompt.ts';
import { textSink } from '../helpers/text-sink.ts';

/** A PassThrough that says it is a terminal and records raw-mode switches. */
function fakeTty(): PassThrough & SecretInputStream & { rawModes: boolean[] } {
  const rawModes: boolean[] = [];
  return Object.assign(new PassThrough(), {
    isTTY: true,
    rawModes,
    setRawMode(mode: boolean) {
      rawModes.push(mode);
    },
  });
}

/** Types `keys` one chunk at a time, after the reader has started listening. */
function type(tty: PassThrough, ...keys: string[]): void {
  setImmediate(() => {
    for (const k of keys) tty.write(k);
  });
}

const errCode = (code: string) => (err: unknown) => err instanceof SecretInputError && err.code === code;

describe('readSecret from a pipe', () => {
  it('reads the first line and strips LF or CRLF', async () => {
    const stderr = textSink();
    for (const input of ['pass word\n', 'pass word\r\n', 'pass word']) {
      const stdin = new PassThrough();
      stdin.end(input);
      assert.equal(await readSecret('Password: ', { stdin, stderr, confirm: true }), 'pass word');
    }
    assert.equal(stderr.text(), '', 'no prompt when not on a terminal');
  });

  it('leaves what follows the first line on the stream', async () => {
    const stdin = new PassThrough();
    stdin.end('first\nsecond\n');
    const stderr = textSink();
    assert.equal(await readSecret('', { stdin, stderr }), 'first');
    assert.equal(await readSecret('', { stdin, stderr }), 'second');
  });

  it('handles a line split across chunks, and UTF-8 split inside a character', async () => {
    const stdin = new PassThrough();
    const bytes = Buffer.from('pässwörd\n');
    const p = readSecret('', { stdin, stderr: textSink() });
    for (const b of bytes) stdin.write(Buffer.from([b]));
    assert.equal(await p, 'pässwörd');
  });

  it('refuses an empty password and an empty stdin', async () => {
    for (const input of ['\n', '\r\n', '']) {
      const stdin = new PassThrough();
      stdin.end(input);
      await assert.rejects(readSecret('', { stdin, stderr: textSink() }), errCode('EMPTY'));
    }
  });

  it('refuses bytes that are not UTF-8', async () => {
    const stdin = new PassThrough();
    stdin.end(Buffer.from([0x70, 0xff, 0x0a]));
    await assert.rejects(readSecret('', { stdin, stderr: textSink() }), errCode('NOT_UTF8'));
  });
});

describe('readSecret on a terminal', () => {
  it('prompts on stderr without echo, in raw mode, and restores the mode', async () => {
    const tty = fakeTty();
    const stderr = textSink();
    type(tty, 'sec', 'ret\r');
    assert.equal(await readSecret('Password: ', { stdin: tty, stderr }), 'secret');
    assert.equal(stderr.text(), 'Password: \n');
    assert.deepEqual(tty.rawModes, [true, false]);
  });

  it('handles backspace (DEL and BS, whole characters), Ctrl-U and arrow keys', async () => {
    const tty = fakeTty();
    type(tty, 'abx\u007f', 'c😀\b', 'd', 'zz\u0015xy', '\u001b[D', '\u001bOA', '!\n');
    assert.equal(await readSecret('', { stdin: tty, stderr: textSink() }), 'xy!');
    const tty2 = fakeTty();
    type(tty2, 'abx\u007fc😀\bd\r');
    assert.equal(await readSecret('', { stdin: tty2, stderr: textSink() }), 'abcd');
  });

  it('asks twice with confirm and accepts the same answer', async () => {
    const tty = fakeTty();
    const stderr = textSink();
    type(tty, 'pw1\r', 'pw1\r');
    assert.equal(await readSecret('New: ', { stdin: tty, stderr, confirm: true }), 'pw1');
    assert.equal(stderr.text(), 'New: \nRetype to confirm: \n');
  });

  it('refuses two different answers', async () => {
    const tty = fakeTty();
    type(tty, 'pw1\rpw2\r');
    await assert.rejects(readSecret('', { stdin: tty, stderr: textSink(), confirm: true }), errCode('MISMATCH'));
    assert.deepEqual(tty.rawModes, [true, false]);
  });

  it('aborts on Ctrl-C, restoring the terminal', async () => {
    const tty = fakeTty();
    type(tty, 'half', '\u0003', 'more\r');
    await assert.rejects(readSecret('', { stdin: tty, stderr: textSink() }), errCode('ABORTED'));
    assert.deepEqual(tty.rawModes, [true, false]);
  });

  it('aborts on Ctrl-D on an empty line and on end of input', async () => {
    const tty = fakeTty();
    type(tty, '\u0004');
    await assert.rejects(readSecret('', { stdin: tty, stderr: textSink() }), errCode('ABORTED'));
    const tty2 = fakeTty();
    setImmediate(() => tty2.end('abc'));
    await assert.rejects(readSecret('', { stdin: tty2, stderr: textSink() }), errCode('ABORTED'));
  });

  it('refuses an empty password', async () => {
    const tty = fakeTty();
    type(tty, '\r');
    await assert.rejects(readSecret('', { stdin: tty, stderr: textSink(), confirm: true }), errCode('EMPTY'));
  });

  it('refuses a terminal without raw mode rather than echo the password', async () => {
    const stdin = Object.assign(new PassThrough(), { isTTY: true });
    await assert.rejects(readSecret('', { stdin, stderr: textSink() }), errCode('NO_RAW_MODE'));
  });
});
