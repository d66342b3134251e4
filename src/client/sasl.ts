/**
 * The SASL client mechanisms, from src/auth/sasl (the same state machines the server uses), behind the
 * small interface client.ts needs.
 */
import { createSaslClient, SASL_MECHANISMS } from '../auth/sasl/index.ts';
import type { SaslClient } from '../auth/sasl/types.ts';

export interface SaslCredentials {
  user: string;
  /** Password, or access token for OAUTHBEARER / XOAUTH2. */
  secret: string;
  authzid: string | undefined;
  host: string;
  port: number | undefined;
}

const TOKEN_MECHANISMS = new Set(['OAUTHBEARER', 'XOAUTH2']);

export function saslMechanismsAvailable(): ReadonlySet<string> {
  return new Set<string>(SASL_MECHANISMS);
}

export function saslClientFor(mechanism: string, c: SaslCredentials): SaslClient {
  const token = TOKEN_MECHANISMS.has(mechanism);
  const client = createSaslClient(mechanism, {
    username: c.user,
    password: token ? undefined : c.secret,
    token: token ? c.secret : undefined,
    authzid: c.authzid,
    host: c.host,
    port: c.port,
  });
  if (!client) throw new TypeError(`SASL ${mechanism} cannot be used with these credentials`);
  return client;
}
