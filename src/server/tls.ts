/** The TLS material of the server's listeners and STLS, and the settings every secure context gets. */
import { constants as cryptoConstants } from 'node:crypto';
import { createSecureContext, type SecureContext } from 'node:tls';

export interface TlsMaterial {
  readonly cert: string | Buffer;
  readonly key: string | Buffer;
  readonly minVersion?: 'TLSv1.2' | 'TLSv1.3';
  /** CA for client certificates (SASL EXTERNAL), and the subject field naming the user. */
  readonly clientCa?: string | Buffer;
  readonly clientCertUser?: 'CN' | 'emailAddress';
  /** More certificates chosen by SNI; `names` may hold "*.example.com" (one label). */
  readonly sni?: readonly {
    readonly names: readonly string[];
    readonly cert: string | Buffer;
    readonly key: string | Buffer;
  }[];
}

/**
 * TLS settings for both implicit TLS and STLS. Ciphers are Node's defaults (OpenSSL's TLS 1.3 suites and
 * forward-secret AEAD suites for 1.2), the server's preference wins, and TLS 1.2 is the floor (RFC 8314 §5).
 */
export function secureContextOf(
  cert: string | Buffer,
  key: string | Buffer,
  minVersion: 'TLSv1.2' | 'TLSv1.3',
  ca?: string | Buffer,
): SecureContext {
  return createSecureContext({
    cert,
    key,
    ca,
    minVersion,
    honorCipherOrder: true,
    ciphers: 'ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20',
    // Client-initiated renegotiation (TLS 1.2) only costs the server CPU; nothing in POP3 needs it.
    secureOptions: cryptoConstants.SSL_OP_NO_RENEGOTIATION,
  });
}
