/**
 * `postern fetch --probe HOST`: what a server offers, before any login, like mpop's --serverinfo. The
 * certificate is shown even when it does not verify (that is often why one probes), with the reason.
 */
import { Pop3Client, type TlsMode } from '../client/client.ts';
import type { TlsInfo } from '../client/transport.ts';

export interface ProbeOptions {
  host: string;
  port: number;
  tls: TlsMode;
  timeoutMs: number;
  ca?: Buffer;
  signal?: AbortSignal;
}

export async function probe(opts: ProbeOptions): Promise<string> {
  const client = await Pop3Client.connect({
    host: opts.host,
    port: opts.port,
    tls: opts.tls,
    timeoutMs: opts.timeoutMs,
    signal: opts.signal,
    // Verification is reported, not enforced: nothing secret is sent by a probe.
    tlsOptions: { rejectUnauthorized: false, ...(opts.ca ? { ca: opts.ca } : {}) },
  });
  try {
    const lines: string[] = [];
    const mode = { implicit: 'implicit TLS', starttls: 'STLS', none: 'no TLS' }[opts.tls];
    lines.push(`POP3 server at ${opts.host}:${opts.port} (${mode})`);
    lines.push(`Greeting: ${client.greeting}`);
    if (client.tls) lines.push(...describeTls(client.tls));
    const caps = client.capabilities;
    if (caps.known) {
      lines.push('Capabilities:');
      for (const c of caps.lines) lines.push(`  ${c}`);
    } else {
      lines.push('Capabilities: none (the server does not implement CAPA, RFC 2449)');
    }
    const auth: string[] = [];
    if (client.apopTimestamp) auth.push('APOP');
    if (caps.has('USER') || !caps.known) auth.push('USER');
    auth.push(...caps.sasl);
    lines.push(`Authentication: ${auth.length > 0 ? auth.join(' ') : 'none offered'}`);
    if (caps.loginDelay !== undefined) lines.push(`Login delay: ${caps.loginDelay} s`);
    if (caps.expire !== undefined) {
      lines.push(`Expire: ${caps.expire === Number.POSITIVE_INFINITY ? 'never' : `${caps.expire} days`}`);
    }
    return `${lines.join('\n')}\n`;
  } finally {
    await client.quit().catch(() => client.destroy());
  }
}

function describeTls(t: TlsInfo): string[] {
  const c = t.certificate;
  const name = (o: Record<string, string | string[]> | undefined) =>
    o
      ? Object.entries(o)
          .map(([k, v]) => `${k}=${Array.isArray(v) ? v.join('+') : v}`)
          .join(', ')
      : '(none)';
  return [
    `TLS: ${t.protocol ?? '?'}, ${t.cipher}`,
    'Certificate:',
    `  Subject: ${name(c.subject as unknown as Record<string, string>)}`,
    `  Issuer: ${name(c.issuer as unknown as Record<string, string>)}`,
    ...(c.subjectaltname ? [`  Alternative names: ${c.subjectaltname}`] : []),
    `  Valid: ${c.valid_from} to ${c.valid_to}`,
    `  SHA-256 fingerprint: ${t.fingerprint256}`,
    `  Trusted: ${t.authorized ? 'yes' : `NO (${t.authorizationError ?? 'unknown reason'})`}`,
  ];
}
