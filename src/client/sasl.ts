/**
 * The SASL client mechanisms the library can use, from src/auth/sasl (shared with the server).
 */
import type { SaslClient } from '../auth/sasl/types.ts';

export interface SaslCredentials {
  user: string;
  /** Password, or access token for OAUTHBEARER / XOAUTH2. */
  secret: string;
  authzid: string | undefined;
  host: string;
  port: number | undefined;
}

const FACTORIES: Record<string, (c: SaslCredentials) => SaslClient> = {};

export function saslMechanismsAvailable(): ReadonlySet<string> {
  return new Set(Object.keys(FACTORIES));
}

export function saslClientFor(mechanism: string, creds: SaslCredentials): SaslClient {
  const f = FACTORIES[mechanism];
  if (!f) throw new TypeError(`no SASL client for ${mechanism}`);
  return f(creds);
}
