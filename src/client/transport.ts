/**
 * Opening the transport: TCP, implicit TLS (RFC 8314) or the TLS upgrade after STLS (RFC 2595). Certificates
 * are verified by default (chain and host name, Node's defaults); `pinSha256` replaces that with an exact
 * match on the certificate's SHA-256 fingerprint, like mpop's tls_fingerprint, for self-signed servers.
 */
import { isIP, connect as netConnect, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { ConnectionOptions, PeerCertificate, TLSSocket } from 'node:tls';
import { nodeCrypto } from '../mail/crypto.ts';
import { Pop3AbortError, Pop3ClientError, Pop3ErrorCode, Pop3TimeoutError, Pop3TlsError } from './errors.ts';

/** What the client reports about an established TLS session. */
export interface TlsInfo {
  protocol: string | null;
  cipher: string;
  /** Whether the chain verified against the trusted CAs and the host name matched. */
  authorized: boolean;
  /** Why not, when not (e.g. 'DEPTH_ZERO_SELF_SIGNED_CERT'). */
  authorizationError: string | undefined;
  /** The leaf certificate as Node reports it (subject, issuer, valid_from, valid_to, subjectaltname…). */
  certificate: PeerCertificate;
  /** SHA-256 of the leaf certificate (DER), lower-case hex with colons, as `openssl x509 -fingerprint` prints. */
  fingerprint256: string;
}

export interface TlsParams {
  host: string;
  tlsOptions: ConnectionOptions | undefined;
  pinSha256: readonly string[] | undefined;
}

/** "AB:CD:…" or "abcd…" → "ab:cd:…"; also accepts "sha256/…" prefixes and base64 is not accepted (ambiguous). */
export function normalizeFingerprint(fp: string): string {
  const hex = fp
    .replace(/^sha256[:/]/i, '')
    .replace(/[:\s]/g, '')
    .toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(hex)) throw new TypeError(`not a SHA-256 fingerprint: ${fp}`);
  return hex.replace(/(..)(?!$)/g, '$1:');
}

export function certFingerprint(cert: PeerCertificate): string {
  return nodeCrypto()
    .createHash('sha256')
    .update(cert.raw)
    .digest('hex')
    .replace(/(..)(?!$)/g, '$1:');
}

export function tlsInfo(s: TLSSocket): TlsInfo {
  const certificate = s.getPeerCertificate(false);
  const err = s.authorizationError as unknown;
  return {
    protocol: s.getProtocol(),
    cipher: s.getCipher()?.name ?? '',
    authorized: s.authorized,
    authorizationError: err === null || err === undefined ? undefined : String(err),
    certificate,
    fingerprint256: certificate?.raw ? certFingerprint(certificate) : '',
  };
}

function tlsConnectOptions(p: TlsParams): ConnectionOptions {
  const pinned = p.pinSha256 !== undefined && p.pinSha256.length > 0;
  return {
    // SNI only for names (RFC 6066 §3 forbids IP literals).
    servername: isIP(p.host) ? undefined : p.host,
    minVersion: 'TLSv1.2',
    rejectUnauthorized: !pinned,
    ...p.tlsOptions,
  };
}

/** Checks the pin (if any) right after the handshake, before a single byte is read from or written to the server. */
function checkPin(s: TLSSocket, p: TlsParams): void {
  if (p.pinSha256 === undefined || p.pinSha256.length === 0) return;
  const cert = s.getPeerCertificate(false);
  const fp = cert?.raw ? certFingerprint(cert) : '';
  const pins = p.pinSha256.map(normalizeFingerprint);
  if (!pins.includes(fp)) {
    throw new Pop3TlsError(`server certificate ${fp || '(none)'} does not match the pinned SHA-256 fingerprint`);
  }
}

function tlsFailure(err: Error): Pop3TlsError {
  return new Pop3TlsError(`TLS handshake failed: ${err.message}`, { cause: err });
}

/**
 * Runs `start` (which creates a socket and returns it) and waits for `readyEvent`, bounded by timeoutMs and the
 * signal. Errors before TCP connects are POP3_ERR_CONNECT, after it POP3_ERR_TLS when TLS is involved.
 */
function open<S extends Socket>(
  start: () => S,
  readyEvent: 'connect' | 'secureConnect',
  opts: { timeoutMs: number; signal: AbortSignal | undefined; tls: boolean; what: string },
  onReady: (s: S) => void = () => {},
): Promise<S> {
  return new Promise((resolve, reject) => {
    if (opts.signal?.aborted) {
      reject(new Pop3AbortError(opts.signal.reason));
      return;
    }
    let tcpUp = false;
    const s = start();
    const done = (err: Error | null) => {
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
      s.off('error', onError);
      s.off(readyEvent, onReadyEvent);
      if (err) {
        s.destroy();
        reject(err);
      } else resolve(s);
    };
    const onError = (err: Error) => {
      if (opts.tls && tcpUp) done(tlsFailure(err));
      else
        done(
          new Pop3ClientError(Pop3ErrorCode.Connect, `cannot connect to ${opts.what}: ${err.message}`, { cause: err }),
        );
    };
    const onReadyEvent = () => {
      try {
        onReady(s);
        done(null);
      } catch (err) {
        done(err as Error);
      }
    };
    const onAbort = () => done(new Pop3AbortError(opts.signal?.reason));
    const timer = setTimeout(
      () =>
        done(
          new Pop3TimeoutError(
            `${opts.tls && tcpUp ? 'TLS handshake with' : 'connecting to'} ${opts.what} took longer than ${opts.timeoutMs} ms`,
          ),
        ),
      opts.timeoutMs,
    );
    s.once('connect', () => {
      tcpUp = true;
    });
    s.on('error', onError);
    s.once(readyEvent, onReadyEvent);
    opts.signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Size of the one read buffer of a plain connection (see openTcp). */
const READ_BUFFER_SIZE = 64 * 1024;

/**
 * Where a socket opened with one reused read buffer delivers its bytes. Each chunk is valid only during the
 * call (the next read overwrites it): a consumer that keeps bytes must copy them. Bytes that arrive before
 * a consumer is set are copied and kept for it.
 */
export interface ReusedBufferReads {
  onData: ((chunk: Buffer) => void) | undefined;
  early: Buffer[];
}

/** The reader of a socket made by openTcp({ reuseBuffer: true }), when it is one. */
export const REUSED_BUFFER_READS = Symbol('postern.reusedBufferReads');

/**
 * A TCP connection. With `reuseBuffer`, every read lands in one buffer allocated once (net's `onread`), so a
 * download of any size allocates nothing per read: no garbage for the collector to chase, and a peak RSS that
 * does not grow with the transfer. Only for connections that stay plain: a TLS upgrade needs stream reads.
 */
export function openTcp(
  host: string,
  port: number,
  timeoutMs: number,
  signal: AbortSignal | undefined,
  opts: { reuseBuffer?: boolean } = {},
): Promise<Socket> {
  const start = () => {
    if (!opts.reuseBuffer) return netConnect({ host, port });
    const reads: ReusedBufferReads = { onData: undefined, early: [] };
    const s = netConnect({
      host,
      port,
      onread: {
        buffer: Buffer.allocUnsafe(READ_BUFFER_SIZE),
        callback: (n: number, buf: Uint8Array) => {
          const chunk = Buffer.from(buf.buffer, buf.byteOffset, n);
          if (reads.onData) reads.onData(chunk);
          else reads.early.push(Buffer.from(chunk));
          return true; // keep reading; pause() still works as usual
        },
      },
    });
    (s as Socket & { [REUSED_BUFFER_READS]?: ReusedBufferReads })[REUSED_BUFFER_READS] = reads;
    return s;
  };
  return open(start, 'connect', { timeoutMs, signal, tls: false, what: `${host}:${port}` });
}

/**
 * node:tls (and the root certificates it parses) costs a few MB and milliseconds at start: loaded only when a
 * connection uses TLS.
 */
function tlsModule(): Promise<typeof import('node:tls')> {
  return import('node:tls');
}

export async function openImplicitTls(
  p: TlsParams,
  port: number,
  timeoutMs: number,
  signal: AbortSignal | undefined,
): Promise<TLSSocket> {
  const { connect: tlsConnect } = await tlsModule();
  return open(
    () => tlsConnect({ host: p.host, port, ...tlsConnectOptions(p) }),
    'secureConnect',
    { timeoutMs, signal, tls: true, what: `${p.host}:${port}` },
    (s) => checkPin(s, p),
  );
}

/** The TLS handshake on an existing connection, after STLS's +OK. */
export async function upgradeToTls(
  socket: Duplex,
  p: TlsParams,
  timeoutMs: number,
  signal: AbortSignal | undefined,
): Promise<TLSSocket> {
  const { connect: tlsConnect } = await tlsModule();
  return new Promise((resolve, reject) => {
    const s = tlsConnect({ socket: socket as Socket, ...tlsConnectOptions(p) });
    const done = (err: Error | null) => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      s.off('error', onError);
      if (err) {
        s.destroy();
        reject(err);
      } else resolve(s);
    };
    const onError = (err: Error) => done(tlsFailure(err));
    const onAbort = () => done(new Pop3AbortError(signal?.reason));
    const timer = setTimeout(
      () => done(new Pop3TimeoutError(`TLS handshake after STLS took longer than ${timeoutMs} ms`)),
      timeoutMs,
    );
    s.on('error', onError);
    s.once('secureConnect', () => {
      try {
        checkPin(s, p);
        done(null);
      } catch (err) {
        done(err as Error);
      }
    });
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
