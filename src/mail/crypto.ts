/**
 * node:crypto, loaded on first use rather than at start-up. Loading it took `postern fetch` ~6 ms of CPU
 * (hrtime around the require, pinned to one core; ~10 ms in a CPU profile) before its first byte, while a fetch
 * needs it only for TLS, APOP and SASL (issue 11). Maildir names, lock tokens and temporary names do not need
 * it: they are unique by time, pid, a counter and the host name, as Dovecot's and qmail's are.
 */
import { createRequire } from 'node:module';

type Crypto = typeof import('node:crypto');

let loaded: Crypto | undefined;

/** node:crypto (synchronously: callers such as the APOP digest and a certificate's fingerprint are sync). */
export function nodeCrypto(): Crypto {
  loaded ??= createRequire(import.meta.url)('node:crypto') as Crypto;
  return loaded;
}
