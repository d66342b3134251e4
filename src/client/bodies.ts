/**
 * The bodies of positive multi-line replies (RFC 1939 §3), once the Connection has framed them: the dot-decoded
 * bytes of a LIST/UIDL/CAPA listing become lines, a RETR/TOP body becomes a MessageStream or goes to a
 * RetrieveSink. The Connection owns the socket and the order of replies; these functions say what each kind of
 * reply does with its bytes.
 */
import { DotDecoder } from '../protocol/dot.ts';
import { Pop3ProtocolError } from './errors.ts';
import { LfDecoder } from './lfDecoder.ts';
import { type MessageSource, MessageStream } from './message.ts';
import { type Pending, settle } from './pipeline.ts';
import { MAX_LIST_LINE } from './status.ts';

const LF = 0x0a;
const CR = 0x0d;

/** What the body functions need of the Connection. */
export interface BodyHost {
  /** The head command's reply is complete: drop it, settle it, send what waited for it. */
  complete(head: Pending, err: Error | null, value?: unknown): void;
  /** What every message stream of the connection calls back (one object for all of them, not closures per stream). */
  readonly streamSource: MessageSource;
  /** A message stream's consumer is behind: stop reading the socket. */
  pauseForStream(): void;
  resumeForStream(): void;
  /** A sink's end() returned a promise: the reply is complete, but read nothing more until it settles. */
  blockOn(p: Promise<void>, head: Pending): void;
}

/** +OK came for a command whose positive reply has a body: get ready to read it. */
export function openBody(host: BodyHost, head: Pending, text: string): void {
  const kind = head.kind;
  switch (kind.type) {
    case 'sink':
      head.decoder = kind.batch.sink.crlfToLf === true ? new LfDecoder() : new DotDecoder();
      if (!kind.batch.error) kind.batch.sink.begin?.(kind.index);
      return;
    case 'lines':
      head.decoder = new DotDecoder();
      head.resolve = wrapLines(head.resolve, text, kind.lines);
      return;
    case 'stream': {
      head.decoder = new DotDecoder();
      const stream = new MessageStream(host.streamSource);
      kind.stream = stream;
      settle(head, null, stream);
      return;
    }
    default:
      host.complete(head, null, { text });
  }
}

/**
 * Decoded body bytes for `head`. `owned`: the bytes may be kept; otherwise they are a view of a transport's reused
 * read buffer (see openTcp), valid during this call only.
 */
export function bodyData(host: BodyHost, head: Pending, data: Buffer, owned: boolean): void {
  if (data.length === 0) return;
  const kind = head.kind;
  if (kind.type === 'lines') {
    // Every line's length is checked as the bytes come (a server's endless line is refused before it is held),
    // without a Buffer per line: the lines are made from one decode of the whole listing at its end. Not one
    // search per line (a native call each: 4 ms of a fresh fetch's listing of 2 000 messages) but one per window
    // of the longest allowed line: the last LF in the window ends a run of lines that all fit, since only the
    // first of them can be longer than the window, by what came before this chunk (`tail`).
    let tail = kind.tail;
    let cr = kind.cr;
    for (let at = 0; ; ) {
      // Where the current line's LF may be at the latest: MAX_LIST_LINE octets of line, then a CR, then the LF.
      const limit = at + MAX_LIST_LINE + 1 - tail;
      const lf = data.lastIndexOf(LF, Math.min(limit, data.length - 1));
      if (lf < at) {
        if (limit < data.length) throw tooLong(head); // no LF anywhere the line's end may be
        tail += data.length - at;
        cr = data[data.length - 1] === CR;
        if (tail > MAX_LIST_LINE + 1 || (tail === MAX_LIST_LINE + 1 && !cr)) throw tooLong(head);
        break;
      }
      if (lf === limit) {
        // The last LF found is at the latest place: fine only if it is the current line's own (not a later
        // line's, which would leave the current one without its LF in reach) and a CR comes right before it.
        const first = data.indexOf(LF, at);
        if (first === lf) {
          const crBefore = lf > at ? data[lf - 1] === CR : tail > 0 && cr;
          if (!crBefore) throw tooLong(head);
        }
      }
      tail = 0;
      cr = false;
      at = lf + 1;
    }
    kind.tail = tail;
    kind.cr = cr;
    kind.parts.push(owned ? data : Buffer.from(data));
  } else if (kind.type === 'sink') {
    if (!kind.batch.error) kind.batch.sink.data(data, kind.index);
  } else if (kind.type === 'stream' && kind.stream && !kind.stream.abandoned) {
    // deliver() copies nothing; `data` is a view of the socket's chunk, which Node never reuses, or of a copy of
    // it when the transport reuses its one read buffer (Connection.consume makes that copy).
    if (!kind.stream.deliver(owned ? data : Buffer.from(data))) host.pauseForStream();
  }
}

/** The terminating "." of `head`'s body was read. */
export function closeBody(host: BodyHost, head: Pending): void {
  const kind = head.kind;
  if (kind.type === 'lines') {
    splitLines(kind.parts, kind.lines);
    host.complete(head, null);
  } else if (kind.type === 'stream') {
    if (kind.stream) {
      if (kind.stream.abandoned) kind.stream.complete = true;
      else kind.stream.finish();
    }
    host.resumeForStream();
    host.complete(head, null);
  } else if (kind.type === 'sink') {
    const r = kind.batch.error ? undefined : kind.batch.sink.end(kind.index);
    if (!r) host.complete(head, null);
    // The reply is complete, but the command is settled only when the sink is done with it.
    else host.blockOn(r, head);
  }
}

function tooLong(head: Pending): Pop3ProtocolError {
  return new Pop3ProtocolError(`${head.verb}: listing line too long`);
}

/**
 * The lines of a listing's bytes, decoded as UTF-8: a bare LF also ends a line, a CR right before the LF is
 * stripped, any other CR is data; bytes after the last LF (none from a well-formed server) are a last line.
 */
function splitLines(parts: Buffer[], lines: string[]): void {
  if (parts.length === 0) return;
  const text = (parts.length === 1 ? parts[0] : Buffer.concat(parts)).toString('utf8');
  const pieces = text.split('\n');
  const last = pieces.length - 1;
  for (let i = 0; i < last; i++) {
    const p = pieces[i];
    lines.push(p.length > 0 && p.charCodeAt(p.length - 1) === 13 ? p.slice(0, -1) : p);
  }
  if (pieces[last].length > 0) lines.push(pieces[last]);
}

function wrapLines(resolve: (v: unknown) => void, text: string, lines: string[]) {
  return () => resolve({ text, lines });
}
