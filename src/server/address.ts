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
