/**
 * Matches a POP3 server's replies to the commands a client sent, one answer per command, in order, the way a
 * client must read them (RFC 1939 §3, RFC 2449, RFC 5034): a status line, plus a multi-line body for the +OK of
 * CAPA, RETR, TOP, and a bare LIST, UIDL, AUTH or LANG; a `+ ` SASL challenge makes the next line sent a
 * continuation rather than a command. For fuzz and soak tests that must prove every command got its own answer
 * (not merely that "\r\n.\r\n" showed up somewhere), and account for the deletions a generated DELE … QUIT made.
 */
import { parseCommand } from '../../src/protocol/command.ts';

export interface Answer {
  /** The line the client sent (a command or a SASL continuation). */
  readonly sent: string;
  /** The status line received for it (`+OK …`, `-ERR …` or a `+ ` challenge). */
  readonly status: string;
}

export interface Matched {
  readonly answers: Answer[];
  /**
   * `all`: every line sent has its answer. `more`: some answer has not (fully) arrived yet. `ended`: the
   * session ended legitimately before the rest (+OK to QUIT or STLS, after which nothing more is read in clear).
   */
  readonly state: 'all' | 'more' | 'ended';
  /** Messages (msn) a QUIT committed as deleted, when the answers show one. */
  readonly committed: ReadonlySet<number>;
  /** Whatever followed the last answer (more than the answers to the lines sent is a protocol error). */
  readonly extra: string;
}

const MULTI_ALWAYS = new Set(['CAPA', 'RETR', 'TOP']);
const MULTI_BARE = new Set(['LIST', 'UIDL', 'AUTH', 'LANG']);

/**
 * Reads `received` (latin1) against `sent` (command lines without CRLF). `loggedIn` is the session state
 * before the first line. Stops at the first answer that has not fully arrived.
 */
export function matchAnswers(sent: readonly Buffer[], received: string, loggedIn: boolean): Matched {
  const answers: Answer[] = [];
  let pos = 0;
  let continuation = false;
  let inTransaction = loggedIn;
  let marked = new Set<number>();
  let committed = new Set<number>();
  for (const line of sent) {
    const eol = received.indexOf('\r\n', pos);
    if (eol < 0) return { answers, state: 'more', committed, extra: '' };
    const status = received.slice(pos, eol);
    let next = eol + 2;
    const text = line.toString('latin1');
    const wasContinuation = continuation;
    const parsed = continuation ? null : parseCommand(line);
    const cmd = parsed && !('error' in parsed) ? parsed : null;
    continuation = status.startsWith('+ ');
    const multi = cmd !== null && (MULTI_ALWAYS.has(cmd.verb) || (MULTI_BARE.has(cmd.verb) && cmd.args.length === 0));
    if (status.startsWith('+OK') && multi) {
      const end = received.startsWith('.\r\n', next) ? next - 2 : received.indexOf('\r\n.\r\n', next - 2);
      if (end < 0) return { answers, state: 'more', committed, extra: '' };
      next = end + 5;
    }
    answers.push({ sent: text, status });
    pos = next;
    const ok = status.startsWith('+OK');
    // A login: +OK to PASS or APOP, to an AUTH with an initial response, or at the end of a SASL exchange.
    const login = wasContinuation || cmd?.verb === 'PASS' || cmd?.verb === 'APOP' || (cmd?.verb === 'AUTH' && !multi);
    if (ok && login) inTransaction = true;
    if (ok && cmd?.verb === 'DELE' && inTransaction) marked.add(Number(cmd.args[0]));
    if (ok && cmd?.verb === 'RSET' && inTransaction) marked = new Set();
    if (ok && cmd?.verb === 'QUIT') {
      if (inTransaction) committed = marked;
      return { answers, state: 'ended', committed, extra: received.slice(pos) };
    }
    if (ok && cmd?.verb === 'STLS') return { answers, state: 'ended', committed, extra: received.slice(pos) };
  }
  return { answers, state: 'all', committed, extra: received.slice(pos) };
}
