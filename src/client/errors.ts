/**
 * Errors thrown by Pop3Client. Every class has a stable `code` (undici's UND_ERR_* idea): match on `err.code`,
 * not on the message. Messages never contain a password, a token, an APOP digest or a SASL payload: the
 * client builds them from the command verb only, never from its arguments.
 */
import { type RespCode, RespCode as RespCodes } from '../protocol/errors.ts';

export const Pop3ErrorCode = {
  /** The server answered -ERR. `respCode` holds the RFC 2449/3206 code when it sent one. */
  Response: 'POP3_ERR_RESPONSE',
  /** Authentication was refused (-ERR to PASS/APOP/AUTH without a more specific code), or no usable mechanism. */
  Auth: 'POP3_ERR_AUTH',
  /** No reply (or no progress of a message body) within timeoutMs. */
  Timeout: 'POP3_ERR_TIMEOUT',
  /** TLS handshake, certificate verification or pin check failed, or STLS was refused. */
  Tls: 'POP3_ERR_TLS',
  /** The server broke the protocol: an unparsable or too-long line, a reply where none was due. */
  Protocol: 'POP3_ERR_PROTOCOL',
  /** The TCP connection could not be opened (refused, unreachable, DNS failure). */
  Connect: 'POP3_ERR_CONNECT',
  /** The connection is closed (by the server, by quit(), by destroy()), or broke. */
  Closed: 'POP3_ERR_CLOSED',
  /** A command was used in the wrong state (e.g. STAT before login), or the client was misused. */
  State: 'POP3_ERR_STATE',
  /** The AbortSignal fired. The connection was closed without QUIT, so nothing was deleted. */
  Aborted: 'POP3_ERR_ABORTED',
  /** connect() was given an invalid or missing option (e.g. no `tls`); nothing was sent. */
  Options: 'POP3_ERR_OPTIONS',
} as const;
export type Pop3ErrorCode = (typeof Pop3ErrorCode)[keyof typeof Pop3ErrorCode];

export class Pop3ClientError extends Error {
  override name = 'Pop3ClientError';
  constructor(
    readonly code: Pop3ErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** A -ERR reply. `command` is the verb (never its arguments), `text` the server's words after the code. */
export class Pop3ResponseError extends Pop3ClientError {
  override name = 'Pop3ResponseError';
  constructor(
    readonly command: string,
    readonly text: string,
    readonly respCode: RespCode | string | undefined,
    code: Pop3ErrorCode = Pop3ErrorCode.Response,
  ) {
    super(code, `${command}: -ERR ${respCode ? `[${respCode}] ` : ''}${text}`);
  }

  /** RFC 2449 §8.1.1 / RFC 3206: the condition is temporary; retrying later may work. */
  get temporary(): boolean {
    return (
      this.respCode === RespCodes.InUse || this.respCode === RespCodes.LoginDelay || this.respCode === RespCodes.SysTemp
    );
  }
}

/** Credentials refused. A -ERR carrying [IN-USE], [LOGIN-DELAY] or [SYS/…] is a Pop3ResponseError instead. */
export class Pop3AuthError extends Pop3ResponseError {
  override name = 'Pop3AuthError';
  constructor(command: string, text: string, respCode: RespCode | string | undefined) {
    super(command, text, respCode, Pop3ErrorCode.Auth);
  }
}

/** A Pop3ClientError class whose code and name are fixed, taking the message (and a cause). */
function withCode(code: Pop3ErrorCode, name: string) {
  return class extends Pop3ClientError {
    override name = name;
    constructor(message: string, options?: { cause?: unknown }) {
      super(code, message, options);
    }
  };
}

export class Pop3TimeoutError extends withCode(Pop3ErrorCode.Timeout, 'Pop3TimeoutError') {}
export class Pop3TlsError extends withCode(Pop3ErrorCode.Tls, 'Pop3TlsError') {}
export class Pop3ProtocolError extends withCode(Pop3ErrorCode.Protocol, 'Pop3ProtocolError') {}
export class Pop3ClosedError extends withCode(Pop3ErrorCode.Closed, 'Pop3ClosedError') {}

export class Pop3AbortError extends Pop3ClientError {
  override name = 'Pop3AbortError';
  constructor(reason?: unknown) {
    super(Pop3ErrorCode.Aborted, 'operation aborted; connection closed without QUIT', { cause: reason });
  }
}

/** Parses the text after "-ERR " into an RFC 2449 §8 response code and the rest. */
export function splitRespCode(text: string): { respCode: string | undefined; text: string } {
  const m = /^\[([^\]]*)\]\s?(.*)$/s.exec(text);
  if (!m) return { respCode: undefined, text };
  return { respCode: m[1], text: m[2] };
}
