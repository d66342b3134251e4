/**
 * Reading a password for the admin commands.
 *
 * On a terminal the password is typed without echo: the terminal is put in raw mode, so we see each key and
 * handle Enter, Backspace, Ctrl-U (erase the line), Ctrl-C (abort) and Ctrl-D on an empty line (abort)
 * ourselves; escape sequences (arrow keys) are dropped. Raw mode is always switched off again.
 * When stdin is not a terminal (a pipe, a file, a test), the first line is the password, so scripts can run
 * `printf '%s\n' "$pw" | postern user add alice`; whatever follows that line is left unread on the stream.
 * The password is never echoed or written anywhere.
 */
import { StringDecoder } from 'node:string_decoder';

/** A stdin-like stream; `setRawMode` is what a tty.ReadStream adds. */
export type SecretInputStream = NodeJS.ReadableStream & {
  isTTY?: boolean;
  setRawMode?: (mode: boolean) => unknown;
  readableEnded?: boolean;
};

export interface ReadSecretOptions {
  readonly stdin: SecretInputStream;
  /** Prompts and the line break after a hidden entry go here (never stdout, which a script may capture). */
  readonly stderr: NodeJS.WritableStream;
  /** On a terminal, ask a second time and require the same answer. Ignored when stdin is not a terminal. */
  readonly confirm?: boolean;
  /** The second prompt (default `Retype to confirm: `). */
  readonly confirmPrompt?: string;
}

export type SecretInputErrorCode = 'ABORTED' | 'EMPTY' | 'MISMATCH' | 'TOO_LONG' | 'NOT_UTF8' | 'NO_RAW_MODE';

export class SecretInputError extends Error {
  override readonly name = 'SecretInputError';
  constructor(
    readonly code: SecretInputErrorCode,
    message: string,
  ) {
    super(message);
  }
}

/** Longest line accepted. Passwords are capped lower (1024 bytes) by the caller with a clearer message. */
const MAX_SECRET_BYTES = 64 * 1024;

export async function readSecret(prompt: string, opts: ReadSecretOptions): Promise<string> {
  const secret = opts.stdin.isTTY ? await readFromTerminal(prompt, opts) : await readFirstLine(opts.stdin);
  if (secret === '') throw new SecretInputError('EMPTY', 'empty password');
  return secret;
}

async function readFromTerminal(prompt: string, opts: ReadSecretOptions): Promise<string> {
  const { stdin, stderr } = opts;
  if (typeof stdin.setRawMode !== 'function') {
    throw new SecretInputError('NO_RAW_MODE', 'cannot turn off echo on this terminal');
  }
  const keys = new KeyQueue(stdin);
  stdin.setRawMode(true);
  stdin.resume();
  try {
    const first = await readHidden(prompt, keys, stderr);
    if (first === '' || !opts.confirm) return first;
    const second = await readHidden(opts.confirmPrompt ?? 'Retype to confirm: ', keys, stderr);
    if (second !== first) throw new SecretInputError('MISMATCH', 'the two passwords differ');
    return first;
  } finally {
    stdin.setRawMode(false);
    keys.close();
    stdin.pause();
  }
}

async function readHidden(prompt: string, keys: KeyQueue, stderr: NodeJS.WritableStream): Promise<string> {
  stderr.write(prompt);
  // Code points, so that Backspace removes a whole character even outside the BMP.
  let chars: string[] = [];
  for (;;) {
    const c = await keys.next();
    if (c === null) {
      stderr.write('\n');
      throw new SecretInputError('ABORTED', 'input ended before the password was entered');
    }
    switch (c) {
      case '\r':
      case '\n':
        stderr.write('\n');
        return chars.join('');
      case '\u0003': // Ctrl-C
        stderr.write('^C\n');
        throw new SecretInputError('ABORTED', 'aborted');
      case '\u0004': // Ctrl-D: end of input on an empty line, ignored otherwise
        if (chars.length === 0) {
          stderr.write('\n');
          throw new SecretInputError('ABORTED', 'aborted');
        }
        break;
      case '\u007f': // Backspace as most terminals send it
      case '\b':
        chars.pop();
        break;
      case '\u0015': // Ctrl-U
        chars = [];
        break;
      case '\u001b':
        keys.dropEscapeSequence();
        break;
      default:
        if (c < ' ') break; // other control keys mean nothing here
        chars.push(c);
        if (Buffer.byteLength(chars.join(''), 'utf8') > MAX_SECRET_BYTES) {
          stderr.write('\n');
          throw new SecretInputError('TOO_LONG', 'password is too long');
        }
    }
  }
}

/** Keys from a raw-mode terminal, one code point at a time. */
class KeyQueue {
  private readonly chars: string[] = [];
  private readonly decoder = new StringDecoder('utf8');
  private ended = false;
  private wake: (() => void) | null = null;
  private readonly onData = (chunk: Buffer | string): void => {
    const text = typeof chunk === 'string' ? chunk : this.decoder.write(chunk);
    for (const c of text) this.chars.push(c);
    this.notify();
  };
  private readonly onEnd = (): void => {
    this.ended = true;
    this.notify();
  };

  constructor(private readonly stream: SecretInputStream) {
    stream.on('data', this.onData);
    stream.on('end', this.onEnd);
    stream.on('error', this.onEnd);
    if (stream.readableEnded) this.ended = true;
  }

  async next(): Promise<string | null> {
    while (this.chars.length === 0) {
      if (this.ended) return null;
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
    }
    return this.chars.shift()!;
  }

  /**
   * After ESC: drops the rest of a CSI/SS3 sequence (`ESC [ … final`, `ESC O x`) if it arrived with it, as
   * terminals send a key's whole sequence at once. A lone Escape key press drops nothing else.
   */
  dropEscapeSequence(): void {
    const intro = this.chars[0];
    if (intro !== '[' && intro !== 'O') return;
    this.chars.shift();
    while (this.chars.length > 0) {
      const c = this.chars.shift()!;
      if (intro === 'O' || (c >= '@' && c <= '~')) return;
    }
  }

  close(): void {
    this.stream.removeListener('data', this.onData);
    this.stream.removeListener('end', this.onEnd);
    this.stream.removeListener('error', this.onEnd);
  }

  private notify(): void {
    const wake = this.wake;
    this.wake = null;
    wake?.();
  }
}

/** The first line of a non-terminal stdin, without its CR/LF; the bytes after it are pushed back. */
function readFirstLine(stream: SecretInputStream): Promise<string> {
  if (stream.readableEnded) return Promise.resolve('');
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let size = 0;
    const finish = (rest: Buffer | null, err: Error | null): void => {
      stream.removeListener('data', onData);
      stream.removeListener('end', onEnd);
      stream.removeListener('error', onError);
      stream.pause();
      if (rest && rest.length > 0) stream.unshift(rest);
      if (err) {
        reject(err);
        return;
      }
      let line = Buffer.concat(parts);
      if (line.at(-1) === 0x0d) line = line.subarray(0, -1);
      try {
        resolve(new TextDecoder('utf-8', { fatal: true }).decode(line));
      } catch {
        reject(new SecretInputError('NOT_UTF8', 'the password on stdin is not valid UTF-8'));
      }
    };
    const onData = (chunk: Buffer | string): void => {
      const buf = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk;
      const nl = buf.indexOf(0x0a);
      const head = nl < 0 ? buf : buf.subarray(0, nl);
      parts.push(head);
      size += head.length;
      if (size > MAX_SECRET_BYTES) {
        finish(null, new SecretInputError('TOO_LONG', 'the first line of stdin is too long for a password'));
      } else if (nl >= 0) {
        finish(buf.subarray(nl + 1), null);
      }
    };
    const onEnd = (): void => finish(null, null);
    const onError = (err: Error): void => finish(null, err);
    stream.on('data', onData);
    stream.on('end', onEnd);
    stream.on('error', onError);
    stream.resume();
  });
}
