/**
 * Verifies OAuth bearer tokens that are JWTs (RFC 7519), for OAUTHBEARER and XOAUTH2: the signature
 * against a JWKS (a local file, or the provider's URL), the issuer, the audience, the expiry, and then maps
 * one claim to a local user who must exist. Uses `jose` rather than hand-made JWT parsing: the subtle parts
 * (algorithm confusion, `alg: none`, key selection by `kid`, clock handling) are where home-grown checks fail.
 *
 * Tokens that are not JWTs (opaque tokens checked by introspection) need `createCommandBearerVerifier`
 * (bearer-command.ts) with a command that asks the provider.
 */
import { readFile, stat } from 'node:fs/promises';
import {
  createLocalJWKSet,
  createRemoteJWKSet,
  errors,
  type JSONWebKeySet,
  type JWTPayload,
  type JWTVerifyGetKey,
  jwtVerify,
} from 'jose';
import { userNameProblem } from '../names.ts';
import type { AuthLogger, Principal } from '../types.ts';
import type { SaslVerifier } from './types.ts';
import { MAX_BEARER_PAYLOAD_BYTES } from './util.ts';

export type BearerVerifier = Pick<SaslVerifier, 'verifyBearer'>;

export interface JwtBearerOptions {
  /** A JWKS document on disk, re-read when it changes (rotate keys without a restart). */
  readonly jwksFile?: string;
  /** The provider's `jwks_uri`; fetched on demand and cached by jose (refetched for an unknown `kid`). */
  readonly jwksUrl?: string;
  /** The `iss` the provider puts in its tokens, exactly. */
  readonly issuer: string | readonly string[];
  /** The `aud` this server is registered as, exactly: without it any token of the provider would do. */
  readonly audience: string | readonly string[];
  /**
   * The claim naming the user; default `email` (what Google and most providers put in an ID or access
   * token for mail). `sub` is stable but usually opaque, so it needs `mapUser`. With `email`, a token that
   * says `email_verified: false` is refused.
   */
  readonly userClaim?: string;
  /** From the claim's value to a local user name (e.g. strip the domain); null refuses the token. */
  readonly mapUser?: (claimValue: string, payload: JWTPayload) => string | null;
  /** The user database: the mapped user must exist. */
  readonly lookup: (user: string) => Promise<Principal | null>;
  /** Signature algorithms accepted; default: whatever the JWKS keys declare (never `none`). */
  readonly algorithms?: readonly string[];
  /** Allowed clock skew with the provider, in seconds; default 30. */
  readonly clockToleranceSeconds?: number;
  /** Where refused tokens are logged (reason code only, never the token). */
  readonly logger?: AuthLogger;
}

const DEFAULT_CLOCK_TOLERANCE_SECONDS = 30;

/**
 * `verifyBearer` resolves the principal for a good token and null for any bad one (bad signature, expired,
 * wrong issuer or audience, unknown user, or a token for another user than the SASL one). It rejects only
 * when the keys cannot be had (unreadable JWKS file, provider unreachable): a temporary failure.
 */
export function createJwtBearerVerifier(options: JwtBearerOptions): BearerVerifier {
  if ((options.jwksFile === undefined) === (options.jwksUrl === undefined)) {
    throw new TypeError('createJwtBearerVerifier needs exactly one of jwksFile and jwksUrl');
  }
  const keys: () => Promise<JWTVerifyGetKey> =
    options.jwksFile !== undefined
      ? fileKeySet(options.jwksFile)
      : constant(createRemoteJWKSet(new URL(options.jwksUrl ?? '')));
  const userClaim = options.userClaim ?? 'email';
  const logger = options.logger;
  const refuse = (reason: string): null => {
    logger?.warn({ reason }, 'bearer token refused');
    return null;
  };

  return {
    async verifyBearer(token: string, user: string | undefined): Promise<Principal | null> {
      if (token.length === 0 || token.length > MAX_BEARER_PAYLOAD_BYTES) return refuse('token size');
      const getKey = await keys();
      // Errors from the key lookup are the key source's fault unless they are about the token's header.
      const guardedKey: JWTVerifyGetKey = async (header, input) => {
        try {
          return await getKey(header, input);
        } catch (err) {
          throw isTokenFault(err) ? err : new KeySourceError(err);
        }
      };
      let payload: JWTPayload;
      try {
        ({ payload } = await jwtVerify(token, guardedKey, {
          issuer: options.issuer as string | string[],
          audience: options.audience as string | string[],
          algorithms: options.algorithms as string[] | undefined,
          clockTolerance: options.clockToleranceSeconds ?? DEFAULT_CLOCK_TOLERANCE_SECONDS,
          // jose accepts a JWT without `exp` by default; a bearer token that never expires is refused here.
          requiredClaims: ['exp'],
        }));
      } catch (err) {
        if (err instanceof KeySourceError) throw err.cause;
        return refuse(err instanceof errors.JOSEError ? err.code : 'malformed token');
      }
      const claim = payload[userClaim];
      if (typeof claim !== 'string' || claim === '') return refuse(`no ${userClaim} claim`);
      if (userClaim === 'email' && payload.email_verified === false) return refuse('email not verified');
      const mapped = options.mapUser ? options.mapUser(claim, payload) : claim;
      if (mapped === null || userNameProblem(mapped) !== null) return refuse('claim maps to no valid user name');
      const principal = await options.lookup(mapped);
      if (!principal) return refuse('unknown user');
      // The SASL identity (OAUTHBEARER a=, XOAUTH2 user=) must be the token's user: a valid token of one
      // user must not open another's mailbox.
      if (user !== undefined && user !== principal.user) return refuse('token belongs to another user');
      return principal;
    },
  };
}

/**
 * The key lookup failed because of what the token asked for (a `kid` or `alg` the key set does not have).
 * Anything else (JWKS unreachable, timed out, not a key set) means the keys cannot be had: not the token's
 * fault, so the caller answers with a temporary error instead of a failed login.
 */
function isTokenFault(err: unknown): boolean {
  return (
    err instanceof errors.JWKSNoMatchingKey ||
    err instanceof errors.JWKSMultipleMatchingKeys ||
    err instanceof errors.JOSEAlgNotAllowed ||
    err instanceof errors.JOSENotSupported
  );
}

class KeySourceError extends Error {
  constructor(override readonly cause: unknown) {
    super('JWKS unavailable');
  }
}

function constant<T>(value: T): () => Promise<T> {
  return async () => value;
}

/** The JWKS file's key set, re-read when its size, mtime or inode changes (one stat per verification). */
function fileKeySet(path: string): () => Promise<JWTVerifyGetKey> {
  let cached: { stamp: string; keys: JWTVerifyGetKey } | null = null;
  return async () => {
    const s = await stat(path);
    const stamp = `${s.ino}:${s.size}:${s.mtimeMs}:${s.ctimeMs}`;
    if (cached?.stamp !== stamp) {
      const text = await readFile(path, 'utf8');
      let jwks: JSONWebKeySet;
      try {
        jwks = JSON.parse(text) as JSONWebKeySet;
      } catch {
        throw new errors.JWKSInvalid(`JWKS file ${path} is not JSON`);
      }
      // createLocalJWKSet checks the shape ({keys: [...]}) and throws JWKSInvalid otherwise.
      cached = { stamp, keys: createLocalJWKSet(jwks) };
    }
    return cached.keys;
  };
}
