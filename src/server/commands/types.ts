/**
 * What a command sees of its session (CommandSession) and the shape of one verb (CommandSpec). Commands
 * depend on this interface only, never on the Session class, so session.ts → commands/* is the one direction.
 */
import type { Logger } from 'pino';
import type { Principal } from '../../auth/passwd.ts';
import type { ParsedCommand } from '../../protocol/command.ts';
import type { Pop3Error } from '../../protocol/errors.ts';
import type { LineResult } from '../../protocol/lineReader.ts';
import type { Maildrop, MaildropState, MessageInfo } from '../../storage/types.ts';
import type { TlsUpgrade } from '../connection.ts';
import type { ServerContext } from '../context.ts';
import type { Catalogue } from '../messages.ts';
import type { UserPolicy } from '../policy.ts';

export type SessionState = 'AUTHORIZATION' | 'TRANSACTION' | 'UPDATE';

/**
 * One POP3 session as the commands use it. Numberings (as Dovecot's pop3): msn is the 1-based number a client
 * sees, fixed for the session (RFC 1939 §4); index is msn − 1, the position in `maildrop.messages` and in
 * `deleted`; id is the store's own key of a message (never shown to clients; the uidl is).
 */
export interface CommandSession {
  readonly ctx: ServerContext;
  readonly log: Logger;
  readonly remoteAddress: string;
  /** Reply texts in the session's language. */
  readonly text: Catalogue;
  state: SessionState;
  /** TLS is up (implicit, ended by a trusted proxy, or after STLS). */
  readonly secure: boolean;
  readonly isClosed: boolean;
  /** The APOP timestamp of the greeting, when APOP is offered (RFC 1939 §7). */
  readonly apopTimestamp: string | undefined;
  /** USER given and waiting for PASS (RFC 1939 §7). */
  pendingUser: string | undefined;
  principal: Principal | undefined;
  maildrop: Maildrop | undefined;
  /** The mailbox's bookkeeping as read at login, when a policy needs it. */
  maildropState: MaildropState | undefined;
  authFailures: number;
  /** RFC 6856 LANG: the language of reply texts. */
  lang: string;
  /** RFC 6856 UTF8: the client said it accepts UTF-8. */
  utf8: boolean;
  /** Indexes (msn − 1) marked by DELE; applied only in UPDATE (RFC 1939 §6). */
  readonly deleted: Set<number>;
  /** Snapshot messages retrieved (RETR) in this session, by index; EXPIRE counts from the first retrieval. */
  readonly retrieved: Set<number>;
  readonly counters: { retrieved: number; deleted: number; commands: number };

  /** Plaintext passwords (USER/PASS) are allowed on TLS, on loopback, or when the operator says so. */
  readonly plaintextAllowed: boolean;
  readonly stlsAvailable: boolean;
  /** SASL mechanisms offered on this connection now. */
  saslOffered(): string[];
  /** The user named by a verified client certificate (SASL EXTERNAL), if any. */
  certificateUser(): string | undefined;
  /** The LOGIN-DELAY and EXPIRE that apply to a user. */
  policyFor(principal: Principal | undefined): UserPolicy;

  /** Queues one reply line (without CRLF). */
  reply(line: string): void;
  /** Queues the -ERR line of an error value. */
  replyError(err: Pop3Error): void;
  /** Queues wire bytes behind the pending replies. */
  queue(buf: Buffer): void;
  flush(): void;
  /**
   * Writes wire bytes now, waiting while the socket is full. `sent`, when given, is called once the socket no
   * longer needs `buf` (handed to the kernel, or the connection is gone), so the caller may fill it again.
   */
  write(buf: Buffer, sent?: () => void): Promise<void>;
  /** A multi-line reply of short lines, dot-stuffed, with backpressure. */
  sendLines(first: string, lines: Iterable<string>): Promise<void>;
  /** The next client line inside a command (SASL), or null once the connection is gone. */
  readContinuation(): Promise<LineResult | null>;
  /** Swaps to TLS after STLS's +OK is queued. */
  startTls(upgrade: TlsUpgrade): void;
  /** Restarts the idle timer (its timeout depends on the state). */
  resetIdle(): void;
  /** Ends the session after queued replies are written. Deletes nothing. */
  close(reason: string): void;
  /** Drops the connection at once (a failure after +OK was sent). Deletes nothing. */
  destroy(reason: string): void;

  requireMaildrop(): Maildrop;
  /** Resolves a message-number argument: `-ERR` for a bad number, one beyond the maildrop, or a deleted one. */
  message(arg: string | undefined): { msn: number; info: MessageInfo };
  /** Messages not marked deleted, with their msn. */
  live(): Iterable<{ msn: number; info: MessageInfo }>;
  /** `[count, octets]` of the maildrop without deleted messages. */
  totals(): [number, number];
}

/** One verb: the states it is valid in (checked in one place, Session.execute) and what it does. */
export interface CommandSpec {
  readonly states: readonly SessionState[];
  run(session: CommandSession, cmd: ParsedCommand): void | Promise<void>;
}

export const AUTHORIZATION: readonly SessionState[] = ['AUTHORIZATION'];
export const TRANSACTION: readonly SessionState[] = ['TRANSACTION'];
export const BOTH: readonly SessionState[] = ['AUTHORIZATION', 'TRANSACTION'];
