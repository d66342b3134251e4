/**
 * SCRAM-SHA-256, RFC 5802 with RFC 7677's hash. The user store keeps only the salted keys (StoredKey and
 * ServerKey), never the password; the client proves it knows the password without sending it, and the
 * server proves it knows the keys, which the client checks (mutual authentication). No channel binding:
 * only SCRAM-SHA-256, never -PLUS, is offered, so a client asking for binding (`p=`) is refused.
 *
 *   C: n,,n=user,r=<cnonce>                                  client-first (gs2 header + bare)
 *   S: r=<cnonce><snonce>,s=<salt>,i=<iterations>            server-first
 *   C: c=biws,r=<cnonce><snonce>,p=<ClientProof>             client-final
 *   S: v=<ServerSignature>                                   server-final (additional data with success)
 *
 * This file: the stored keys and the server side, and the primitives both sides use; scram-client.ts: the client.
 */
import { nodeCrypto } from '../../mail/crypto.ts';
import { MessageServer } from './mechanism.ts';
import { saslprep } from './saslprep.ts';
import type { ProxyAuthorization, SaslServer, SaslVerifier, ScramCredentials, ServerStep } from './types.ts';
import {
  authorize,
  badCredentials,
  challenge,
  decodeBase64Strict,
  decodeSaslName,
  failure,
  parseGs2Header,
  userProblem,
} from './util.ts';

/** RFC 7677 §4: the iteration count must be at least 4096. */
export const SCRAM_MIN_ITERATIONS = 4096;
/**
 * The iteration count Postern writes for new SCRAM keys (`postern user add`/`passwd`) and announces for
 * users without keys, unless `auth.scram_iterations` says otherwise. One number for both, so a reply to `n=`
 * never tells a real user from a made-up one (issue 13 #3: `i=10000` for real users and `i=4096` for
 * unknown ones did).
 */
export const SCRAM_DEFAULT_ITERATIONS = 10_000;
/**
 * The most a client agrees to compute. PBKDF2 runs synchronously in `step`; a hostile server asking for a
 * billion iterations would stall the client for minutes. 1 000 000 is about half a second.
 */
export const SCRAM_MAX_CLIENT_ITERATIONS = 1_000_000;
const SCHEME_PREFIX = '{SCRAM-SHA-256}';
const KEY_BYTES = 32;
/** Salt length of keys made here (and of made-up salts for unknown users). */
const SALT_BYTES = 16;

/** printable = %x21-2B / %x2D-7E (RFC 5802 §7): any visible ASCII but `,`. */
export const NONCE = /^[\x21-\x2B\x2D-\x7E]+$/;

export function hmac(key: Buffer, data: string | Buffer): Buffer {
  return nodeCrypto().createHmac('sha256', key).update(data).digest();
}

function sha256(data: Buffer): Buffer {
  return nodeCrypto().createHash('sha256').update(data).digest();
}

export function xor(a: Buffer, b: Buffer): Buffer {
  const out = Buffer.alloc(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i] ^ b[i];
  return out;
}

export function saltedKeys(password: string, salt: Buffer, iterations: number) {
  const salted = nodeCrypto().pbkdf2Sync(password, salt, iterations, KEY_BYTES, 'sha256');
  const clientKey = hmac(salted, 'Client Key');
  return { clientKey, storedKey: sha256(clientKey), serverKey: hmac(salted, 'Server Key') };
}

export interface MakeScramOptions {
  /** Default and minimum 4096 (RFC 7677 §4). */
  readonly iterations?: number;
  /** Default 16 random bytes. */
  readonly salt?: Buffer;
}

/**
 * What a user store keeps for SCRAM-SHA-256. The password is SASLprep'd first (RFC 5802 §2.2), like the
 * client does; throws a RangeError when it holds a character SASLprep prohibits (e.g. a control character).
 */
export function makeScramCredentials(password: string, options: MakeScramOptions = {}): ScramCredentials {
  const iterations = options.iterations ?? SCRAM_MIN_ITERATIONS;
  if (!Number.isSafeInteger(iterations) || iterations < SCRAM_MIN_ITERATIONS) {
    throw new RangeError(`SCRAM iterations must be an integer of at least ${SCRAM_MIN_ITERATIONS}`);
  }
  const prepared = saslprep(password);
  if (prepared === null) throw new RangeError('password holds a character SASLprep prohibits');
  const salt = options.salt ?? nodeCrypto().randomBytes(SALT_BYTES);
  if (salt.length === 0) throw new RangeError('SCRAM salt must not be empty');
  const { storedKey, serverKey } = saltedKeys(prepared, salt, iterations);
  return { salt: Buffer.from(salt), iterations, storedKey, serverKey };
}

/** Dovecot's form: `{SCRAM-SHA-256}iterations,salt,StoredKey,ServerKey`, the last three in base64. */
export function encodeScramCredentials(c: ScramCredentials): string {
  return `${SCHEME_PREFIX}${c.iterations},${c.salt.toString('base64')},${c.storedKey.toString('base64')},${c.serverKey.toString('base64')}`;
}

/** Parses `encodeScramCredentials`'s form (the `{SCRAM-SHA-256}` prefix is optional); null when malformed. */
export function parseScramCredentials(encoded: string): ScramCredentials | null {
  const body = encoded.startsWith(SCHEME_PREFIX) ? encoded.slice(SCHEME_PREFIX.length) : encoded;
  const parts = body.split(',');
  if (parts.length !== 4 || !/^[1-9][0-9]{0,9}$/.test(parts[0])) return null;
  const iterations = Number(parts[0]);
  const [salt, storedKey, serverKey] = parts.slice(1).map(decodeBase64Strict);
  if (!salt || !storedKey || !serverKey || iterations > 0x7fffffff) return null;
  if (salt.length === 0 || storedKey.length !== KEY_BYTES || serverKey.length !== KEY_BYTES) return null;
  return { salt, iterations, storedKey, serverKey };
}

/** `k=v` attributes of a SCRAM message, in order. Null when one is not of that shape. */
export function attributes(message: string): Array<[string, string]> | null {
  const out: Array<[string, string]> = [];
  for (const part of message.split(',')) {
    if (!/^[A-Za-z]=/.test(part)) return null;
    out.push([part[0], part.slice(2)]);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------- server

export interface ScramServerOptions {
  /** Lets an authenticated user act as another (`a=` in the GS2 header); refused without it. */
  readonly allowProxy?: ProxyAuthorization;
  /** The server's part of the nonce; tests inject RFC 7677's. Default 18 random bytes, base64. */
  readonly makeNonce?: () => string;
  /**
   * For users without SCRAM keys the server answers with a made-up salt, so the exchange looks the same as
   * for a real user and fails only at the proof: the reply to `n=` must not tell who exists. The salt is an
   * HMAC of the name, so asking twice gives the same answer. Pass one key to all server processes (cluster
   * workers, machines) or they will answer differently for the same unknown name. Default: random per process.
   */
  readonly fakeSaltKey?: Buffer;
  /**
   * Iterations announced for users without keys: the count real users' keys are written with (the server
   * passes `auth.scram_iterations`). Default SCRAM_DEFAULT_ITERATIONS.
   */
  readonly fakeIterations?: number;
}

/** The default fakeSaltKey, made on first use (so that loading this module does not load node:crypto). */
let fakeSaltKeyOfProcess: Buffer | undefined;
function processFakeSaltKey(): Buffer {
  fakeSaltKeyOfProcess ??= nodeCrypto().randomBytes(32);
  return fakeSaltKeyOfProcess;
}

export function createScramSha256Server(
  verifier: Pick<SaslVerifier, 'scramCredentials' | 'lookup'>,
  options: ScramServerOptions = {},
): SaslServer {
  return new ScramServer(verifier, options);
}

interface ServerExchange {
  readonly user: string;
  readonly authzid: string | undefined;
  readonly gs2Header: string;
  readonly clientFirstBare: string;
  readonly serverFirst: string;
  readonly nonce: string;
  readonly credentials: ScramCredentials;
  readonly real: boolean;
}

class ScramServer extends MessageServer<Pick<SaslVerifier, 'scramCredentials' | 'lookup'>, ScramServerOptions> {
  readonly mechanism = 'SCRAM-SHA-256';
  private exchange: ServerExchange | null = null;

  protected async message(text: string): Promise<ServerStep> {
    if (this.exchange === null) {
      // The first message may come as the initial response or after our empty challenge.
      return this.clientFirst(text);
    }
    return this.clientFinal(text, this.exchange);
  }

  private async clientFirst(text: string): Promise<ServerStep> {
    const gs2 = parseGs2Header(text);
    if (typeof gs2 === 'string') return failure(gs2);
    // RFC 5802 §6: `p=` asks for channel binding, which this server does not offer (no -PLUS). `y` means
    // the client could bind but believes the server cannot; that is true here, so it is accepted.
    if (gs2.cbind === 'p') return failure('channel binding requested but not supported');
    const attrs = attributes(gs2.rest);
    if (!attrs || attrs.length < 2) return failure('malformed client-first message');
    if (attrs[0][0] === 'm') return failure('unsupported mandatory extension');
    if (attrs[0][0] !== 'n' || attrs[1][0] !== 'r') return failure('malformed client-first message');
    const user = decodeSaslName(attrs[0][1]);
    if (user === null || user === '') return failure('malformed user name');
    if (userProblem(user) !== null) return failure('malformed user name');
    const clientNonce = attrs[1][1];
    if (!NONCE.test(clientNonce)) return failure('malformed nonce');
    if (gs2.authzid !== undefined && gs2.authzid !== user && !this.options.allowProxy) {
      return failure('authorization identity differs from authentication identity');
    }

    const stored = await this.verifier.scramCredentials(user);
    const usable =
      stored !== null &&
      stored.storedKey.length === KEY_BYTES &&
      stored.serverKey.length === KEY_BYTES &&
      stored.salt.length > 0 &&
      Number.isSafeInteger(stored.iterations) &&
      stored.iterations > 0;
    const credentials = usable ? stored : this.fakeCredentials(user);
    const serverNonce = this.options.makeNonce?.() ?? nodeCrypto().randomBytes(18).toString('base64');
    if (!NONCE.test(serverNonce)) throw new Error('SCRAM makeNonce returned a nonce with invalid characters');
    const nonce = clientNonce + serverNonce;
    const serverFirst = `r=${nonce},s=${credentials.salt.toString('base64')},i=${credentials.iterations}`;
    this.exchange = {
      user,
      authzid: gs2.authzid,
      gs2Header: gs2.raw,
      clientFirstBare: gs2.rest,
      serverFirst,
      nonce,
      credentials,
      real: usable,
    };
    return challenge(serverFirst);
  }

  private fakeCredentials(user: string): ScramCredentials {
    const key = this.options.fakeSaltKey ?? processFakeSaltKey();
    // 16 bytes, like the random salts makeScramCredentials writes: the same length and form in `s=`.
    return {
      salt: hmac(key, `scram-salt\0${user}`).subarray(0, SALT_BYTES),
      iterations: this.options.fakeIterations ?? SCRAM_DEFAULT_ITERATIONS,
      storedKey: nodeCrypto().randomBytes(KEY_BYTES),
      serverKey: nodeCrypto().randomBytes(KEY_BYTES),
    };
  }

  private async clientFinal(text: string, ex: ServerExchange): Promise<ServerStep> {
    // client-final-message = client-final-message-without-proof "," proof; the proof comes last.
    const proofAt = text.lastIndexOf(',p=');
    if (proofAt < 0) return failure('malformed client-final message');
    const withoutProof = text.slice(0, proofAt);
    const proof = decodeBase64Strict(text.slice(proofAt + 3));
    if (!proof || proof.length !== KEY_BYTES) return failure('malformed proof');
    const attrs = attributes(withoutProof);
    if (!attrs || attrs.length < 2 || attrs[0][0] !== 'c' || attrs[1][0] !== 'r') {
      return failure('malformed client-final message');
    }
    // Without channel binding, c= is exactly the GS2 header the client sent first (RFC 5802 §7), so a
    // man in the middle cannot strip a `p=` or change the authzid between the two messages.
    const binding = decodeBase64Strict(attrs[0][1]);
    if (!binding?.equals(Buffer.from(ex.gs2Header, 'utf8'))) return failure('channel binding mismatch');
    if (attrs[1][1] !== ex.nonce) return failure('nonce mismatch');

    const authMessage = `${ex.clientFirstBare},${ex.serverFirst},${withoutProof}`;
    const clientSignature = hmac(ex.credentials.storedKey, authMessage);
    const clientKey = xor(proof, clientSignature);
    const proofOk = nodeCrypto().timingSafeEqual(sha256(clientKey), ex.credentials.storedKey);
    if (!proofOk || !ex.real) return badCredentials(ex.user);
    const principal = await this.verifier.lookup(ex.user);
    if (!principal) return badCredentials(ex.user);
    const serverSignature = hmac(ex.credentials.serverKey, authMessage);
    const serverFinal = Buffer.from(`v=${serverSignature.toString('base64')}`, 'utf8');
    return authorize(this.verifier, principal, ex.authzid, this.options.allowProxy, serverFinal);
  }
}
