/**
 * The frames every mechanism is built in, so that each mechanism's file holds only what it says on the wire:
 * the server side's exactly-once exchange (ServerMechanism) and the client-first message frame
 * (MessageServer); the client sides that only answer challenges (ChallengeClient) or only send one message
 * (InitialResponseClient); and the errors a client side throws.
 */
import {
  type ClientFirstSaslClient,
  type SaslClient,
  SaslError,
  SaslErrorCode,
  type SaslServer,
  type ServerStep,
} from './types.ts';
import { challenge, decodeUtf8, failure, MAX_PAYLOAD_BYTES } from './util.ts';

/**
 * The frame of every server side: tells the first call (the initial response) from the later ones, and makes
 * the exchange end exactly once. A mechanism only writes `next`; once it returns success or failure, every
 * further call is a failure, so a confused caller can never be handed a second success.
 */
export abstract class ServerMechanism<V, O = Record<string, never>> implements SaslServer {
  abstract readonly mechanism: string;
  private started = false;
  private busy = false;
  private ended: ServerStep | null = null;

  /** `verifier`: the part of the user database the mechanism uses; `options`: its own settings. */
  constructor(
    protected readonly verifier: V,
    protected readonly options: O,
  ) {}

  async step(response: Buffer | null): Promise<ServerStep> {
    if (this.ended) {
      return failure(this.ended.kind === 'failure' ? this.ended.reason : 'authentication exchange already finished');
    }
    if (this.busy) {
      this.ended = failure('step called while the previous one was pending');
      return this.ended;
    }
    const initial = !this.started;
    this.started = true;
    this.busy = true;
    try {
      const result = await this.next(initial ? response : (response ?? Buffer.alloc(0)), initial);
      if (result.kind !== 'challenge') this.ended = result;
      return result;
    } catch (err) {
      // The verifier failed (e.g. the database is down): the exchange is over, and the caller learns why.
      this.ended = failure('verifier error');
      throw err;
    } finally {
      this.busy = false;
    }
  }

  /** `response` is null only on the initial call when the client sent no initial response. */
  protected abstract next(response: Buffer | null, initial: boolean): Promise<ServerStep>;
}

/**
 * A client-first server side (PLAIN, SCRAM, OAUTHBEARER, XOAUTH2): without an initial response an empty
 * challenge asks for the message (RFC 4422 §5); each message is size-checked and strict UTF-8 before `message`
 * sees it.
 */
export abstract class MessageServer<V, O = Record<string, never>> extends ServerMechanism<V, O> {
  /** The largest message accepted. */
  protected readonly maxBytes: number = MAX_PAYLOAD_BYTES;

  protected async next(response: Buffer | null): Promise<ServerStep> {
    if (response === null) return challenge(Buffer.alloc(0));
    if (response.length > this.maxBytes) return failure('message too long');
    const text = decodeUtf8(response);
    if (text === null) return failure('message is not UTF-8');
    return this.message(text);
  }

  protected abstract message(text: string): Promise<ServerStep>;
}

/** The caller's credentials cannot be sent with this mechanism. */
export function credentialsError(message: string): SaslError {
  return new SaslError(SaslErrorCode.BadCredentials, message);
}

/** The server sent what the mechanism cannot accept. */
export function challengeError(mechanism: string, message: string): SaslError {
  return new SaslError(SaslErrorCode.BadChallenge, `${mechanism}: ${message}`);
}

/** A user name and a password or secret, both required (LOGIN, CRAM-MD5). */
export function requirePassword(
  mechanism: string,
  credentials: { readonly username: string; readonly password: string },
  secretName: string,
): void {
  if (credentials.username === '' || credentials.password === '') {
    throw credentialsError(`${mechanism} needs a user name and ${secretName}`);
  }
}

/**
 * A server-first client side (LOGIN, CRAM-MD5): no initial response, and nothing to check when the server
 * says +OK; `answer` turns each challenge into the response.
 */
export abstract class ChallengeClient implements SaslClient {
  abstract readonly mechanism: string;
  abstract readonly done: boolean;

  constructor(
    protected readonly username: string,
    protected readonly secret: string,
  ) {}

  start(): null {
    return null;
  }

  abstract step(challengeData: Buffer): Buffer;

  finish(): void {}
}

/**
 * A mechanism whose whole client part is one initial response (PLAIN, and the OAuth ones reuse the frame).
 * An empty challenge asks for it when it was not sent inline; any other challenge is refused.
 */
export class InitialResponseClient implements ClientFirstSaslClient {
  private sent = false;

  constructor(
    readonly mechanism: string,
    private readonly message: Buffer,
  ) {}

  get done(): boolean {
    return this.sent;
  }

  start(): Buffer {
    this.sent = true;
    return Buffer.from(this.message);
  }

  step(challengeData: Buffer): Buffer {
    if (challengeData.length === 0) return this.start();
    throw challengeError(this.mechanism, 'unexpected server challenge');
  }

  finish(): void {}
}
