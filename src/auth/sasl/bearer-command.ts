/**
 * Bearer tokens checked by an operator's command, for tokens that are not JWTs (opaque tokens the provider
 * must introspect) or for any rule the JWT verifier cannot express.
 *
 * The protocol with the command, kept small so a shell script can speak it:
 *   - argv is exactly the configured command; the token is never in it (argv is world-readable in `ps`
 *     and /proc). The token arrives on stdin, followed by a newline.
 *   - `POSTERN_SASL_USER` holds the user the client named, when it named one (not a secret).
 *   - Exit 0 and the user name on the first line of stdout: accepted as that user. Anything else: refused.
 *   - The command runs in its own process group, which is killed after `timeoutMs`; stdout past
 *     `maxOutputBytes` is refused and the group killed; stderr is discarded (it might echo the token).
 */
import { spawn } from 'node:child_process';
import { userNameProblem } from '../names.ts';
import type { AuthLogger, Principal } from '../types.ts';
import type { BearerVerifier } from './jwt.ts';
import { MAX_BEARER_PAYLOAD_BYTES } from './util.ts';

export interface CommandBearerOptions {
  /** The user database: the named user must exist. */
  readonly lookup: (user: string) => Promise<Principal | null>;
  /** A hung command must not hold a login forever; 10 s covers a slow introspection round trip. */
  readonly timeoutMs?: number;
  /** One user name and a newline need far less; anything bigger is a misbehaving command. */
  readonly maxOutputBytes?: number;
  /** At most this many commands at once; further logins wait their turn (a login flood forks no storm). */
  readonly maxConcurrent?: number;
  /** Where refusals and command failures are logged (never the token, never stderr). */
  readonly logger?: AuthLogger;
}

export const COMMAND_TIMEOUT_MS = 10_000;
export const COMMAND_MAX_OUTPUT_BYTES = 4096;
export const COMMAND_MAX_CONCURRENT = 8;

/** The command's verdict: the first stdout line on exit 0, null on any refusal. */
type Outcome = { readonly kind: 'user'; readonly name: string } | { readonly kind: 'refused'; readonly reason: string };

/**
 * `verifyBearer` resolves the principal when the command accepts, null when it refuses (non-zero exit, no
 * or bad user name, too much output, unknown user, a user other than the SASL one). It rejects when the
 * command cannot be run or times out: a temporary failure, answered `-ERR [SYS/TEMP]`.
 */
export function createCommandBearerVerifier(command: readonly string[], options: CommandBearerOptions): BearerVerifier {
  if (command.length === 0 || command[0] === '') throw new TypeError('createCommandBearerVerifier needs a command');
  const timeoutMs = options.timeoutMs ?? COMMAND_TIMEOUT_MS;
  const maxOutput = options.maxOutputBytes ?? COMMAND_MAX_OUTPUT_BYTES;
  const slots = new Semaphore(options.maxConcurrent ?? COMMAND_MAX_CONCURRENT);
  const refuse = (reason: string): null => {
    options.logger?.warn({ reason }, 'bearer token refused');
    return null;
  };

  return {
    async verifyBearer(token: string, user: string | undefined): Promise<Principal | null> {
      if (token.length === 0 || token.length > MAX_BEARER_PAYLOAD_BYTES || /[\r\n\0]/.test(token)) {
        return refuse('token size or characters');
      }
      const outcome = await slots.run(() => runCommand(command, token, user, timeoutMs, maxOutput));
      if (outcome.kind === 'refused') return refuse(outcome.reason);
      if (userNameProblem(outcome.name) !== null) return refuse('command printed no valid user name');
      const principal = await options.lookup(outcome.name);
      if (!principal) return refuse('unknown user');
      if (user !== undefined && user !== principal.user) return refuse('token belongs to another user');
      return principal;
    },
  };
}

function runCommand(
  command: readonly string[],
  token: string,
  user: string | undefined,
  timeoutMs: number,
  maxOutput: number,
): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const env: NodeJS.ProcessEnv = { ...process.env };
    delete env.POSTERN_SASL_USER;
    if (user !== undefined) env.POSTERN_SASL_USER = user;
    const child = spawn(command[0], command.slice(1), {
      stdio: ['pipe', 'pipe', 'pipe'],
      env,
      // Its own process group, so a timeout also kills whatever the command started (curl, sleep …).
      detached: true,
    });
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    let overflow = false;

    const killGroup = () => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
      } catch {
        child.kill('SIGKILL');
      }
    };
    const settle = (fn: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      fn();
    };
    const timer = setTimeout(() => {
      killGroup();
      // Do not wait for 'close': a grandchild holding stdout open could delay it.
      settle(() => reject(new Error(`bearer token command timed out after ${timeoutMs} ms`)));
    }, timeoutMs);

    child.on('error', (err) => settle(() => reject(err)));
    // The command may exit without reading stdin; the resulting EPIPE is not an error of ours.
    child.stdin.on('error', () => {});
    child.stdin.end(`${token}\n`);
    child.stderr.resume();
    child.stdout.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > maxOutput) {
        if (!overflow) {
          overflow = true;
          killGroup();
        }
        return;
      }
      chunks.push(chunk);
    });
    child.on('close', (code) => {
      settle(() => {
        if (overflow) return resolve({ kind: 'refused', reason: 'command output too long' });
        if (code !== 0) return resolve({ kind: 'refused', reason: `command exit ${code ?? 'by signal'}` });
        const out = Buffer.concat(chunks).toString('utf8');
        const name = out.split('\n', 1)[0].replace(/\r$/, '').trim();
        resolve(name === '' ? { kind: 'refused', reason: 'command printed no user name' } : { kind: 'user', name });
      });
    });
  });
}

/** A counting semaphore: at most `limit` tasks run at once, the others wait in arrival order. */
class Semaphore {
  private running = 0;
  private readonly waiting: Array<() => void> = [];

  constructor(private readonly limit: number) {}

  async run<T>(task: () => Promise<T>): Promise<T> {
    // A finishing task hands its slot straight to the next waiter, so no newcomer can slip in between.
    if (this.running >= this.limit) await new Promise<void>((r) => this.waiting.push(r));
    else this.running++;
    try {
      return await task();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.running--;
    }
  }
}
