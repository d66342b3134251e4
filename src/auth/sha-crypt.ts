/**
 * SHA-256-crypt and SHA-512-crypt (`$5$`, `$6$`, Drepper's "Unix crypt using SHA-256 and SHA-512") for
 * password files imported from Dovecot ({SHA256-CRYPT}, {SHA512-CRYPT}) or /etc/shadow.
 *
 * `unixcrypt` computes the hash synchronously, and a default 5000-round hash takes tens of milliseconds in
 * JavaScript: done on the main thread, every such login would stall every other session. So the hash is
 * computed on one worker thread, started on first use and unreferenced while idle so it never keeps the
 * process alive. Verifications queue on that one thread; legacy hashes are expected to be rare and to be
 * replaced by argon2id with `postern user passwd`.
 */
import { Worker } from 'node:worker_threads';
import { timingSafeEqualStrings } from './compare.ts';

/**
 * Rounds above this are refused (the user cannot log in, with a reason) rather than computed: the rounds
 * count comes from the file, and unixcrypt allocates an array of that length and needs about 6 s per million
 * rounds. glibc's default is 5000; passlib's 656 000 still passes.
 */
export const MAX_SHA_CRYPT_ROUNDS = 1_000_000;

const SHA_CRYPT = /^\$([56])\$(?:rounds=(\d{1,9})\$)?([./0-9A-Za-z]{0,16})\$([./0-9A-Za-z]+)$/;

/** Why `hash` is not a SHA-crypt hash that we can verify, or null when it is one. */
export function shaCryptProblem(hash: string): string | null {
  const m = SHA_CRYPT.exec(hash);
  if (!m) return 'malformed SHA-crypt hash';
  const expectedLength = m[1] === '6' ? 86 : 43;
  if (m[4].length !== expectedLength) return 'malformed SHA-crypt hash (wrong digest length)';
  if (m[2] !== undefined && Number(m[2]) > MAX_SHA_CRYPT_ROUNDS) {
    return `SHA-crypt rounds above ${MAX_SHA_CRYPT_ROUNDS} are refused`;
  }
  return null;
}

/** True when `password` hashes to `hash`. The caller has checked `shaCryptProblem(hash) === null`. */
export async function verifyShaCrypt(hash: string, password: string): Promise<boolean> {
  const setting = hash.slice(0, hash.lastIndexOf('$'));
  const computed = await worker().encrypt(password, setting);
  return timingSafeEqualStrings(computed, hash);
}

// The worker is plain JavaScript evaluated from a string, so it runs the same whether the parent runs from
// TypeScript sources through tsx or from a build. It gets unixcrypt's resolved URL from the parent.
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
import(workerData.unixcrypt).then(({ encrypt }) => {
  parentPort.on('message', ({ id, password, setting }) => {
    try {
      parentPort.postMessage({ id, hash: encrypt(password, setting) });
    } catch (e) {
      parentPort.postMessage({ id, error: String((e && e.message) || e) });
    }
  });
});
`;

interface Reply {
  readonly id: number;
  readonly hash?: string;
  readonly error?: string;
}

class CryptWorker {
  private readonly worker: Worker;
  private readonly pending = new Map<number, { resolve(h: string): void; reject(e: Error): void }>();
  private nextId = 1;

  constructor(onGone: () => void) {
    this.worker = new Worker(WORKER_SOURCE, {
      eval: true,
      workerData: { unixcrypt: import.meta.resolve('unixcrypt') },
      // Do not inherit the parent's loaders (e.g. `--import tsx`): the worker is plain JavaScript.
      execArgv: [],
    });
    this.worker.unref();
    this.worker.on('message', (reply: Reply) => {
      const p = this.pending.get(reply.id);
      if (!p) return;
      this.pending.delete(reply.id);
      if (this.pending.size === 0) this.worker.unref();
      if (reply.hash !== undefined) p.resolve(reply.hash);
      else p.reject(new Error(`sha-crypt worker: ${reply.error ?? 'no result'}`));
    });
    const fail = (err: Error): void => {
      onGone();
      for (const p of this.pending.values()) p.reject(err);
      this.pending.clear();
    };
    this.worker.on('error', fail);
    this.worker.on('exit', (code) => fail(new Error(`sha-crypt worker exited with code ${code}`)));
  }

  encrypt(password: string, setting: string): Promise<string> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      // Referenced while a request is in flight, so a short script awaiting a verification does not exit.
      this.worker.ref();
      this.worker.postMessage({ id, password, setting });
    });
  }
}

let current: CryptWorker | null = null;

function worker(): CryptWorker {
  if (!current) {
    const w: CryptWorker = new CryptWorker(() => {
      if (current === w) current = null;
    });
    current = w;
  }
  return current;
}
