/**
 * The PROXY protocol, versions 1 (text) and 2 (binary), as sent by HAProxy, nginx, AWS NLB and others in
 * front of a server, so that limits, penalties, loopback checks and logs see the real client address.
 * Accepted only from configured trusted networks (anyone else could claim any address).
 * Pure parsing: bytes in, a result out.
 */

import type { Socket } from 'node:net';
import { isIP } from 'node:net';
import { Duplex } from 'node:stream';

/** v2 signature: \r\n\r\n\0\r\nQUIT\n */
const V2_SIG = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
/** v1 lines are at most 107 bytes including CRLF (spec §2.1). */
const V1_MAX = 107;
/** We accept v2 headers up to this size (addresses + TLVs); real ones are far smaller. */
export const V2_MAX = 1024;

const PP2_TYPE_SSL = 0x20;
const PP2_CLIENT_SSL = 0x01;

export type ProxyResult =
  | { kind: 'incomplete' }
  | { kind: 'invalid'; reason: string }
  | {
      kind: 'ok';
      /** Bytes of the header; what follows belongs to the client's stream. */
      consumed: number;
      /** The real client, or undefined for LOCAL / UNKNOWN (health checks from the proxy itself). */
      source?: { address: string; port: number };
      /** v2 SSL TLV with the client-SSL flag: the proxy terminated TLS for this client. */
      ssl: boolean;
    };

export function parseProxyHeader(buf: Buffer): ProxyResult {
  if (buf.length === 0) return { kind: 'incomplete' };
  const sigLen = Math.min(buf.length, V2_SIG.length);
  if (buf.subarray(0, sigLen).equals(V2_SIG.subarray(0, sigLen))) {
    return buf.length < 16 ? { kind: 'incomplete' } : parseV2(buf);
  }
  const v1 = Buffer.from('PROXY ');
  const n = Math.min(buf.length, v1.length);
  if (!buf.subarray(0, n).equals(v1.subarray(0, n))) return { kind: 'invalid', reason: 'no PROXY header' };
  const end = buf.indexOf('\r\n');
  if (end < 0) return buf.length >= V1_MAX ? { kind: 'invalid', reason: 'v1 line too long' } : { kind: 'incomplete' };
  if (end + 2 > V1_MAX) return { kind: 'invalid', reason: 'v1 line too long' };
  return parseV1(buf.subarray(0, end).toString('latin1'), end + 2);
}

function parseV1(line: string, consumed: number): ProxyResult {
  const parts = line.split(' ');
  if (parts[1] === 'UNKNOWN') return { kind: 'ok', consumed, ssl: false };
  if (parts.length !== 6 || (parts[1] !== 'TCP4' && parts[1] !== 'TCP6')) {
    return { kind: 'invalid', reason: 'malformed v1 header' };
  }
  const [, proto, src, , sport] = parts;
  const family = isIP(src);
  if ((proto === 'TCP4' && family !== 4) || (proto === 'TCP6' && family !== 6)) {
    return { kind: 'invalid', reason: 'bad v1 source address' };
  }
  const port = /^\d{1,5}$/.test(sport) ? Number(sport) : -1;
  if (port < 0 || port > 65535) return { kind: 'invalid', reason: 'bad v1 source port' };
  return { kind: 'ok', consumed, source: { address: src, port }, ssl: false };
}

function parseV2(buf: Buffer): ProxyResult {
  const verCmd = buf[12];
  if (verCmd >> 4 !== 2) return { kind: 'invalid', reason: 'unsupported v2 version' };
  const cmd = verCmd & 0x0f;
  if (cmd > 1) return { kind: 'invalid', reason: 'unsupported v2 command' };
  const fam = buf[13];
  const len = buf.readUInt16BE(14);
  if (16 + len > V2_MAX) return { kind: 'invalid', reason: 'v2 header too large' };
  if (buf.length < 16 + len) return { kind: 'incomplete' };
  const body = buf.subarray(16, 16 + len);
  const consumed = 16 + len;
  if (cmd === 0) return { kind: 'ok', consumed, ssl: false }; // LOCAL: the proxy's own connection
  let source: { address: string; port: number } | undefined;
  let tlvStart: number;
  switch (fam >> 4) {
    case 0x1: // AF_INET
      if (len < 12) return { kind: 'invalid', reason: 'short v2 IPv4 block' };
      source = { address: [...body.subarray(0, 4)].join('.'), port: body.readUInt16BE(8) };
      tlvStart = 12;
      break;
    case 0x2: {
      // AF_INET6
      if (len < 36) return { kind: 'invalid', reason: 'short v2 IPv6 block' };
      const groups: string[] = [];
      for (let i = 0; i < 16; i += 2) groups.push(body.readUInt16BE(i).toString(16));
      source = { address: compressIPv6(groups), port: body.readUInt16BE(32) };
      tlvStart = 36;
      break;
    }
    case 0x0: // AF_UNSPEC
      return { kind: 'ok', consumed, ssl: false };
    default:
      // AF_UNIX and anything newer carry no IP address we can use for limits.
      return { kind: 'ok', consumed, ssl: false };
  }
  let ssl = false;
  for (let i = tlvStart; i + 3 <= body.length; ) {
    const type = body[i];
    const tlen = body.readUInt16BE(i + 1);
    if (i + 3 + tlen > body.length) return { kind: 'invalid', reason: 'truncated v2 TLV' };
    if (type === PP2_TYPE_SSL && tlen >= 5 && (body[i + 3] & PP2_CLIENT_SSL) !== 0) ssl = true;
    i += 3 + tlen;
  }
  return { kind: 'ok', consumed, source, ssl };
}

function compressIPv6(groups: string[]): string {
  const full = groups.join(':');
  // Longest run of zero groups becomes '::' (RFC 5952), so addresses compare equal to Node's own form.
  let best = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== '0') {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === '0') j++;
    if (j - i > bestLen && j - i > 1) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (best < 0) return full;
  return `${groups.slice(0, best).join(':')}::${groups.slice(best + bestLen).join(':')}`;
}

/** A duplex over `socket` whose readable side starts with `prefix` (bytes already read from it). */
export function withPrefix(socket: Socket, prefix: Buffer): Duplex {
  const d = new Duplex({
    read() {
      socket.resume();
    },
    write(chunk, _enc, cb) {
      socket.write(chunk, cb);
    },
    final(cb) {
      socket.end(cb);
    },
    destroy(err, cb) {
      socket.destroy(err ?? undefined);
      cb(err);
    },
  });
  d.push(prefix);
  socket.on('data', (c: Buffer) => {
    if (!d.push(c)) socket.pause();
  });
  socket.on('end', () => d.push(null));
  socket.on('close', () => d.destroy());
  return d;
}
