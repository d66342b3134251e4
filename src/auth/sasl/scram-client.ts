/**
 * The client side of SCRAM-SHA-256 (RFC 5802, RFC 7677), used by the POP3 client: it proves knowledge of the
 * password without sending it and checks the server's signature (mutual authentication). The shared
 * primitives and the server side are in scram.ts.
 */
import { nodeCrypto } from '../../mail/crypto.ts';
import type { PasswordCredentials } from './plain.ts';
import { saslprep } from './saslprep.ts';
import {
  attributes,
  hmac,
  NONCE,
  SCRAM_MAX_CLIENT_ITERATIONS,
  SCRAM_MIN_ITERATIONS,
  saltedKeys,
  xor,
} from './scram.ts';
import { type ClientFirstSaslClient, SaslError, SaslErrorCode } from './types.ts';
import { decodeBase64Strict, decodeUtf8, encodeSaslName } from './util.ts';

export interface ScramClientOptions extends PasswordCredentials {
  /** The client nonce; tests inject RFC 7677's. Default 24 random bytes, base64. */
  readonly nonce?: string;
  /** Refuse a server asking for fewer iterations (default 4096, RFC 7677 §4). */
  readonly minIterations?: number;
  /** Refuse a server asking for more (default SCRAM_MAX_CLIENT_ITERATIONS). */
  readonly maxIterations?: number;
}

/**
 * Throws SaslError(BadCredentials) for an empty user name or password, a NUL in the user name, or a
 * password SASLprep prohibits.
 */
export function createScramSha256Client(options: ScramClientOptions): ClientFirstSaslClient {
  return new ScramClient(options);
}

type ClientState =
  | { readonly name: 'initial' }
  | { readonly name: 'first-sent' }
  | { readonly name: 'final-sent'; readonly serverSignature: Buffer }
  | { readonly name: 'done' };

class ScramClient implements ClientFirstSaslClient {
  readonly mechanism = 'SCRAM-SHA-256';
  private state: ClientState = { name: 'initial' };
  private readonly gs2Header: string;
  private readonly clientFirstBare: string;
  private readonly clientNonce: string;
  private readonly password: string;
  private readonly minIterations: number;
  private readonly maxIterations: number;

  constructor(options: ScramClientOptions) {
    const { username, password, authzid } = options;
    if (username === '' || password === '') {
      throw new SaslError(SaslErrorCode.BadCredentials, 'SCRAM needs a user name and a password');
    }
    if (username.includes('\0') || authzid?.includes('\0')) {
      throw new SaslError(SaslErrorCode.BadCredentials, 'SCRAM cannot carry a NUL in a name');
    }
    const prepared = saslprep(password);
    if (prepared === null) {
      throw new SaslError(SaslErrorCode.BadCredentials, 'password holds a character SASLprep prohibits');
    }
    this.password = prepared;
    this.clientNonce = options.nonce ?? nodeCrypto().randomBytes(24).toString('base64');
    if (!NONCE.test(this.clientNonce)) throw new SaslError(SaslErrorCode.BadCredentials, 'invalid SCRAM nonce');
    this.minIterations = options.minIterations ?? SCRAM_MIN_ITERATIONS;
    this.maxIterations = options.maxIterations ?? SCRAM_MAX_CLIENT_ITERATIONS;
    this.gs2Header = authzid ? `n,a=${encodeSaslName(authzid)},` : 'n,,';
    this.clientFirstBare = `n=${encodeSaslName(username)},r=${this.clientNonce}`;
  }

  get done(): boolean {
    return this.state.name === 'done';
  }

  start(): Buffer {
    if (this.state.name !== 'initial' && this.state.name !== 'first-sent') {
      throw new SaslError(SaslErrorCode.BadChallenge, 'SCRAM exchange already under way');
    }
    this.state = { name: 'first-sent' };
    return Buffer.from(this.gs2Header + this.clientFirstBare, 'utf8');
  }

  step(challengeData: Buffer): Buffer {
    switch (this.state.name) {
      case 'initial':
      case 'first-sent':
        // An empty challenge asks for the client-first message (it was not sent as initial response).
        if (challengeData.length === 0) return this.start();
        if (this.state.name === 'initial') throw bad('server challenge before the client-first message');
        return this.serverFirst(challengeData);
      case 'final-sent':
        this.verifyServerFinal(challengeData, this.state.serverSignature);
        return Buffer.alloc(0);
      case 'done':
        throw bad('challenge after the exchange finished');
    }
  }

  finish(additionalData?: Buffer | null): void {
    if (this.state.name === 'final-sent' && additionalData && additionalData.length > 0) {
      this.verifyServerFinal(additionalData, this.state.serverSignature);
    }
    if (this.state.name !== 'done') {
      throw new SaslError(
        SaslErrorCode.ServerNotVerified,
        'SCRAM: the server reported success without proving it knows the password',
      );
    }
  }

  private serverFirst(data: Buffer): Buffer {
    const text = decodeUtf8(data);
    if (text === null) throw bad('server-first message is not UTF-8');
    if (text.startsWith('e=')) throw serverError(text);
    const attrs = attributes(text);
    if (!attrs || attrs.length < 3) throw bad('malformed server-first message');
    if (attrs[0][0] === 'm') throw bad('server requires an unsupported extension');
    const [[rk, nonce], [sk, saltB64], [ik, iterText]] = attrs;
    if (rk !== 'r' || sk !== 's' || ik !== 'i') throw bad('malformed server-first message');
    // The combined nonce must extend ours: otherwise this may be a replay of another exchange.
    if (!NONCE.test(nonce) || !nonce.startsWith(this.clientNonce) || nonce.length === this.clientNonce.length) {
      throw bad('server nonce does not extend the client nonce');
    }
    const salt = decodeBase64Strict(saltB64);
    if (!salt || salt.length === 0) throw bad('malformed salt');
    if (!/^[1-9][0-9]{0,9}$/.test(iterText)) throw bad('malformed iteration count');
    const iterations = Number(iterText);
    if (iterations < this.minIterations) throw bad(`iteration count ${iterations} below ${this.minIterations}`);
    if (iterations > this.maxIterations) throw bad(`iteration count ${iterations} above ${this.maxIterations}`);

    const { clientKey, storedKey, serverKey } = saltedKeys(this.password, salt, iterations);
    const withoutProof = `c=${Buffer.from(this.gs2Header, 'utf8').toString('base64')},r=${nonce}`;
    const authMessage = `${this.clientFirstBare},${text},${withoutProof}`;
    const proof = xor(clientKey, hmac(storedKey, authMessage));
    this.state = { name: 'final-sent', serverSignature: hmac(serverKey, authMessage) };
    return Buffer.from(`${withoutProof},p=${proof.toString('base64')}`, 'utf8');
  }

  private verifyServerFinal(data: Buffer, expected: Buffer): void {
    const text = decodeUtf8(data);
    if (text === null) throw bad('server-final message is not UTF-8');
    if (text.startsWith('e=')) throw serverError(text);
    const first = text.split(',')[0];
    const signature = first.startsWith('v=') ? decodeBase64Strict(first.slice(2)) : null;
    if (!signature) throw bad('malformed server-final message');
    if (signature.length !== expected.length || !nodeCrypto().timingSafeEqual(signature, expected)) {
      throw new SaslError(SaslErrorCode.ServerNotVerified, 'SCRAM: wrong server signature');
    }
    this.state = { name: 'done' };
  }
}

function bad(message: string): SaslError {
  return new SaslError(SaslErrorCode.BadChallenge, `SCRAM: ${message}`);
}

function serverError(text: string): SaslError {
  // server-error-value is a short token (RFC 5802 §7); keep only its safe characters for the message.
  const value = text
    .slice(2)
    .split(',')[0]
    .replace(/[^A-Za-z0-9-]/g, '')
    .slice(0, 64);
  return new SaslError(SaslErrorCode.ServerError, `SCRAM: server error ${value}`);
}
