/** Starts a real Pop3Server on 127.0.0.1 with an in-memory store, for transcript tests. */
import { generate } from 'selfsigned';
import type { Authenticator, Principal } from '../../src/auth/passwd.ts';
import { makeScramCredentials, SCRAM_DEFAULT_ITERATIONS } from '../../src/auth/sasl/scram.ts';
import type { ScramCredentials } from '../../src/auth/sasl/types.ts';
import { overridesPolicy, type UserSettings } from '../../src/auth/user-settings.ts';
import { parseConfig } from '../../src/config/config.ts';
import { silentLogger } from '../../src/observability/log.ts';
import type { Limits } from '../../src/server/context.ts';
import { Pop3Server, type ServerOptions } from '../../src/server/server.ts';
import { MemoryStore } from '../../src/storage/memory/store.ts';

export interface TestUser {
  password: string;
  secret?: string;
  settings?: UserSettings;
}

/** Users with plaintext passwords and, optionally, an APOP/CRAM-MD5 shared secret and policy settings. */
export class TestAuthenticator implements Authenticator {
  verifyCalls = 0;
  constructor(readonly users: Record<string, TestUser>) {}
  async verifyPassword(user: string, password: string): Promise<Principal | null> {
    this.verifyCalls++;
    const u = Object.hasOwn(this.users, user) ? this.users[user] : undefined;
    return u && u.password === password ? { user, mailboxId: user, settings: u.settings } : null;
  }
  async sharedSecret(user: string): Promise<string | null> {
    return Object.hasOwn(this.users, user) ? (this.users[user].secret ?? null) : null;
  }
  hasSharedSecrets(): boolean {
    return Object.values(this.users).some((u) => u.secret !== undefined);
  }
  async lookup(user: string): Promise<Principal | null> {
    return Object.hasOwn(this.users, user) ? { user, mailboxId: user, settings: this.users[user].settings } : null;
  }
  private readonly scram = new Map<string, ScramCredentials>();
  /** Keys made once per user (a stable salt, like a real store) with the count unknown users are shown. */
  async scramCredentials(user: string): Promise<ScramCredentials | null> {
    const u = Object.hasOwn(this.users, user) ? this.users[user] : undefined;
    if (!u) return null;
    let c = this.scram.get(`${user}\0${u.password}`);
    if (!c) {
      c = makeScramCredentials(u.password, { iterations: SCRAM_DEFAULT_ITERATIONS });
      this.scram.set(`${user}\0${u.password}`, c);
    }
    return c;
  }
  hasPolicyOverrides(): boolean {
    return Object.values(this.users).some((u) => overridesPolicy(u.settings));
  }
}

let certPromise: Promise<{ cert: string; key: string }> | undefined;
export function testCert(): Promise<{ cert: string; key: string }> {
  certPromise ??= generate([{ name: 'commonName', value: 'localhost' }], {
    keyType: 'ec',
    curve: 'P-256',
    algorithm: 'sha256',
    extensions: [
      {
        name: 'subjectAltName',
        altNames: [
          { type: 2, value: 'localhost' },
          { type: 7, ip: '127.0.0.1' },
        ],
      },
    ],
  }).then((p) => ({ cert: p.cert, key: p.private }));
  return certPromise;
}

export const defaultLimits: Limits = {
  ...parseConfig('').limits,
  failedLoginDelayMs: 0,
  failedLoginMaxDelayMs: 0,
};

/** A Pop3Server with test defaults (memory store, alice/wonderland, silent logs); not yet listening. */
export async function makeServer(overrides: Partial<ServerOptions> = {}): Promise<Pop3Server> {
  return new Pop3Server({
    store: new MemoryStore(),
    authenticator: new TestAuthenticator({ alice: { password: 'wonderland' } }),
    logger: silentLogger,
    limits: defaultLimits,
    hostname: 'test.invalid',
    greeting: 'ready',
    implementation: true,
    allowPlaintextAuth: false,
    loopbackIsSecure: true,
    tls: await testCert(),
    ...overrides,
  });
}

export interface TestServer {
  server: Pop3Server;
  store: MemoryStore;
  auth: TestAuthenticator;
  /** Port with STLS. */
  port: number;
  /** Port with implicit TLS. */
  tlsPort: number;
  close(): Promise<void>;
}

export async function startTestServer(
  opts: {
    users?: Record<string, TestUser>;
    limits?: Partial<Limits>;
    store?: MemoryStore;
    server?: Partial<ServerOptions>;
  } = {},
): Promise<TestServer> {
  const store = opts.store ?? new MemoryStore();
  const auth = new TestAuthenticator(opts.users ?? { alice: { password: 'wonderland' } });
  const { cert, key } = await testCert();
  const server = new Pop3Server({
    store,
    authenticator: auth,
    logger: silentLogger,
    limits: { ...defaultLimits, ...opts.limits },
    hostname: 'test.invalid',
    greeting: 'Postern test server ready.',
    implementation: true,
    allowPlaintextAuth: false,
    loopbackIsSecure: true,
    tls: { cert, key },
    ...opts.server,
  });
  const bound = await server.listen([
    { address: '127.0.0.1', port: 0, tls: 'starttls' },
    { address: '127.0.0.1', port: 0, tls: 'implicit' },
  ]);
  return {
    server,
    store,
    auth,
    port: bound[0].port,
    tlsPort: bound[1].port,
    close: () => server.close(0),
  };
}
