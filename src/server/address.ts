import { isIP } from 'node:net';

/** Normalises an IPv4-mapped IPv6 address (`::ffff:1.2.3.4`) to its IPv4 form, for limits and logs. */
export function normalizeAddress(address: string | undefined): string {
  if (!address) return 'unknown';
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  return m ? m[1] : address;
}

/** True for 127.0.0.0/8 and ::1: connections that never leave the machine. */
export function isLoopback(address: string): boolean {
  const a = normalizeAddress(address);
  if (isIP(a) === 4) return a.startsWith('127.');
  return a === '::1';
}

/** Parses "addr/prefix" (or a bare address) into a BlockList-ready form; undefined when malformed. */
export function parseCidr(cidr: string): { address: string; prefix: number; family: 'ipv4' | 'ipv6' } | undefined {
  const [address, p] = cidr.split('/');
  const v = isIP(address);
  if (v === 0) return undefined;
  const max = v === 4 ? 32 : 128;
  const prefix = p === undefined ? max : /^\d{1,3}$/.test(p) ? Number(p) : -1;
  if (prefix < 0 || prefix > max) return undefined;
  return { address, prefix, family: v === 4 ? 'ipv4' : 'ipv6' };
}
