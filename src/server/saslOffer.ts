/**
 * Which SASL mechanisms (RFC 5034) can work on a connection, as one rule shared by the session (what CAPA and
 * AUTH offer) and `postern check-config` (what it reports, with the reason for each mechanism left out).
 */

/** What the decision depends on; the session knows it per connection, check-config per kind of connection. */
export interface SaslFacts {
  /** A password or token may be sent as is: TLS, loopback (unless configured otherwise) or allow_plaintext_auth. */
  readonly plaintextAllowed: boolean;
  /** Some user has a shared secret ({PLAIN} or apop_secret=), which CRAM-MD5 needs. */
  readonly sharedSecrets: boolean;
  /** The user store holds SCRAM keys. */
  readonly scram: boolean;
  /** An [oauth] token check is configured. */
  readonly bearer: boolean;
  /** The client presented a certificate issued by tls.client_ca (check-config: client_ca is set). */
  readonly clientCertificate: boolean;
}

/** Why `mechanism` is not offered under `facts`; undefined when it is. */
export function saslUnavailable(mechanism: string, facts: SaslFacts): string | undefined {
  switch (mechanism) {
    case 'PLAIN':
    case 'LOGIN':
      return facts.plaintextAllowed
        ? undefined
        : 'sends the password as is: needs TLS, loopback or allow_plaintext_auth';
    case 'CRAM-MD5':
      return facts.sharedSecrets ? undefined : 'no user has a shared secret ({PLAIN} or apop_secret=)';
    case 'SCRAM-SHA-256':
      return facts.scram ? undefined : 'the user store has no SCRAM keys';
    case 'OAUTHBEARER':
    case 'XOAUTH2':
      if (!facts.bearer) return 'no [oauth] token check configured';
      return facts.plaintextAllowed ? undefined : 'sends the token as is: needs TLS, loopback or allow_plaintext_auth';
    case 'EXTERNAL':
      return facts.clientCertificate ? undefined : 'needs tls.client_ca and a client certificate issued by it';
    default:
      return 'unknown mechanism';
  }
}

/** The enabled mechanisms that can work under `facts`, in the configured order. */
export function saslOffered(enabled: readonly string[], facts: SaslFacts): string[] {
  return enabled.filter((m) => saslUnavailable(m, facts) === undefined);
}
