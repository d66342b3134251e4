/**
 * CRAM-MD5, RFC 2195. The server sends a fresh msg-id challenge; the client answers
 * `user SP hex(HMAC-MD5(secret, challenge))`. The server must hold the secret in plaintext, so only users
 * stored with one can use it (auth/types.ts `sharedSecret`), and the server advertises it only when such
 * users exist. Its strength is only that the password does not cross the wire; prefer SCRAM-SHA-256.
 */
import { nodeCrypto } from '../../mail/crypto.ts';
import { ChallengeClient, challengeError, requirePassword, ServerMechanism } from './mechanism.ts';
import type { PasswordCredentials } from './plain.ts';
import type { SaslClient, SaslServer, SaslVerifier, ServerStep } from './types.ts';
import { badCredentials, challenge, decodeUtf8, failure, MAX_PAYLOAD_BYTES, userProblem } from './util.ts';

export interface CramMd5ServerOptions {
  /** Put in the challenge (RFC 2195 §2: a fully qualified host name); default `localhost`. */
  readonly hostname?: string;
  /** Makes the whole challenge; tests inject RFC 2195's. Must be fresh and unguessable for every exchange. */
  readonly makeChallenge?: () => string;
}

/** `<random.time@host>`: the random part makes a captured answer useless for any later challenge. */
export function cramMd5Challenge(hostname = 'localhost'): string {
  const host = hostname.replace(/[^A-Za-z0-9.-]/g, '') || 'localhost';
  return `<${nodeCrypto().randomBytes(8).readBigUInt64BE()}.${Date.now()}@${host}>`;
}

/** Lower-case hex HMAC-MD5 keyed with the secret, over the challenge's exact bytes (RFC 2195 §2). */
export function cramMd5Digest(secret: string, challengeData: Buffer | string): string {
  const data = typeof challengeData === 'string' ? Buffer.from(challengeData, 'utf8') : challengeData;
  return nodeCrypto().createHmac('md5', Buffer.from(secret, 'utf8')).update(data).digest('hex');
}

export function createCramMd5Server(
  verifier: Pick<SaslVerifier, 'sharedSecret' | 'lookup'>,
  options: CramMd5ServerOptions = {},
): SaslServer {
  return new CramMd5Server(verifier, options);
}

const DIGEST = /^[0-9a-fA-F]{32}$/;

class CramMd5Server extends ServerMechanism<Pick<SaslVerifier, 'sharedSecret' | 'lookup'>, CramMd5ServerOptions> {
  readonly mechanism = 'CRAM-MD5';
  private sentChallenge: string | null = null;

  protected async next(response: Buffer | null, initial: boolean): Promise<ServerStep> {
    if (initial) {
      // Server-first (RFC 4422 §5): an initial response, even an empty one, is a protocol error.
      if (response !== null) return failure('CRAM-MD5 takes no initial response');
      this.sentChallenge = this.options.makeChallenge?.() ?? cramMd5Challenge(this.options.hostname);
      return challenge(this.sentChallenge);
    }
    const sent = this.sentChallenge ?? '';
    if (!response || response.length > MAX_PAYLOAD_BYTES) return failure('malformed response');
    const text = decodeUtf8(response);
    if (text === null) return failure('response is not UTF-8');
    // RFC 2195 §2: the user name, a space, the digest. The name is everything before the last space.
    const space = text.lastIndexOf(' ');
    if (space <= 0) return failure('malformed response');
    const user = text.slice(0, space);
    const digest = text.slice(space + 1);
    if (!DIGEST.test(digest)) return failure('malformed digest');
    if (userProblem(user) !== null) return failure('malformed user name');
    const secret = await this.verifier.sharedSecret(user);
    // Without a secret, still compute and compare against a random one, so that "no such user" and "wrong
    // digest" take the same path and the same time.
    const expected = Buffer.from(cramMd5Digest(secret ?? nodeCrypto().randomBytes(32).toString('base64'), sent), 'hex');
    const match = nodeCrypto().timingSafeEqual(expected, Buffer.from(digest, 'hex'));
    if (!match || secret === null) return badCredentials(user);
    const principal = await this.verifier.lookup(user);
    return principal ? { kind: 'success', principal } : badCredentials(user);
  }
}

/** `password` is the shared secret (the same string the user would give APOP). */
export function createCramMd5Client(credentials: Omit<PasswordCredentials, 'authzid'>): SaslClient {
  requirePassword('CRAM-MD5', credentials, 'a secret');
  return new CramMd5Client(credentials.username, credentials.password);
}

class CramMd5Client extends ChallengeClient {
  readonly mechanism = 'CRAM-MD5';
  private answered = false;

  get done(): boolean {
    return this.answered;
  }

  step(challengeData: Buffer): Buffer {
    if (this.answered) throw challengeError('CRAM-MD5', 'unexpected second challenge');
    if (challengeData.length === 0) throw challengeError('CRAM-MD5', 'empty challenge');
    this.answered = true;
    const digest = cramMd5Digest(this.secret, challengeData);
    return Buffer.from(`${this.username} ${digest}`, 'utf8');
  }
}
