/**
 * A small, strict schema for postern.toml. Every key has a type, a default and (where it matters) a check;
 * an unknown key or a wrong type is an error that names the key and its line in the file, because a typo in
 * a mail server's config should stop it at start, not silently run it with a default.
 */
import {
  MIN_AUTH_LINE_LENGTH,
  MIN_IDLE_TIMEOUT_MS,
  MIN_LINE_LENGTH,
  SERVER_SASL_MECHANISMS,
} from '../server/options.ts';
import { bool, type InferSchema, int, num, type Schema, str, strs } from '../toml/schema.ts';

export { SERVER_SASL_MECHANISMS };

export const schema = {
  server: {
    kind: 'table',
    doc: 'Identity and behaviour of the POP3 server.',
    fields: {
      hostname: str('Name used in the greeting and APOP timestamp (default: the OS host name).'),
      greeting: str('Text of the +OK greeting.', { default: 'Postern POP3 server ready.' }),
      implementation: bool('Advertise "IMPLEMENTATION Postern" in CAPA (RFC 2449 §6.9).', true),
      allow_plaintext_auth: bool('Allow USER/PASS on unencrypted connections from non-loopback addresses.', false),
      loopback_is_secure: bool(
        'Treat loopback connections as secure for plaintext login (set false behind a local TCP proxy).',
        true,
      ),
      workers: int('Worker processes (Node cluster); locks are shared through the store.', {
        default: 1,
        min: 1,
        max: 256,
      }),
    },
  },
  listen: {
    kind: 'array',
    doc: 'One [[listen]] table per listening socket.',
    fields: {
      address: str('Address to bind.', { default: '127.0.0.1' }),
      port: int('TCP port (110 for POP3 with STLS, 995 for POP3S).', { min: 0, max: 65535, required: true }),
      tls: str('"implicit" (RFC 8314, port 995), "starttls" (plain with STLS, RFC 2595), or "none".', {
        default: 'starttls',
        enum: ['starttls', 'implicit', 'none'],
      }),
      proxy_protocol: bool(
        'Expect a PROXY protocol v1/v2 header first; only peers in proxy.trusted may connect.',
        false,
      ),
    },
  },
  tls: {
    kind: 'table',
    doc: 'TLS certificate and key (PEM files).',
    fields: {
      cert: str('Certificate chain file (PEM).'),
      key: str('Private key file (PEM).'),
      client_ca: str('CA file (PEM) for client certificates; enables SASL EXTERNAL for clients that present one.'),
      client_cert_user: str('Subject field of a client certificate that names the user.', {
        default: 'CN',
        enum: ['CN', 'emailAddress'],
      }),
      min_version: str('Lowest TLS version accepted.', { default: 'TLSv1.2', enum: ['TLSv1.2', 'TLSv1.3'] }),
    },
  },
  policy: {
    kind: 'table',
    doc: 'RFC 2449 LOGIN-DELAY and EXPIRE; users override them with passwd extra fields login_delay= and expire=.',
    fields: {
      login_delay: int('Minimum seconds between two logins of one user (0: no limit, not advertised).', {
        default: 0,
        min: 0,
      }),
      expire: str(
        'Days a message is kept after it was first retrieved ("never"; "0": deleted at the QUIT of the session that retrieved it).',
        { default: 'never' },
      ),
    },
  },
  certificate: {
    kind: 'array',
    doc: 'More certificates, chosen by the name the client asks for (SNI); [tls] is the default.',
    fields: {
      names: strs('Host names this certificate serves; "*.example.com" matches one label.', []),
      cert: str('Certificate chain file (PEM).'),
      key: str('Private key file (PEM).'),
    },
  },
  proxy: {
    kind: 'table',
    doc: 'PROXY protocol (HAProxy, nginx, load balancers) for listeners with proxy_protocol = true.',
    fields: {
      trusted: strs('Networks allowed to send PROXY headers, as CIDRs ("10.0.0.0/8", "::1/128").', []),
      timeout: num('Seconds to wait for the PROXY header.', { default: 5, min: 0.1 }),
    },
  },
  storage: {
    kind: 'table',
    doc: 'Where mail is kept.',
    fields: {
      driver: str(
        '"maildir" (one machine) or "postgres" (any number of servers sharing one database; run `postern db migrate` first).',
        { default: 'maildir', enum: ['maildir', 'postgres'] },
      ),
      root: str('Root folder of the Maildirs.', { default: './var/mail' }),
      url: str(
        'PostgreSQL connection URL (postgres://user:password@host:5432/db); unset: the PGHOST, PGUSER, PGPASSWORD, PGDATABASE… environment variables.',
      ),
      pool_size: int('PostgreSQL connections per server process (sessions hold none between commands).', {
        default: 10,
        min: 1,
        max: 1000,
      }),
      statement_timeout: num('Seconds a PostgreSQL statement may take before it fails with -ERR [SYS/TEMP].', {
        default: 30,
        min: 0.1,
      }),
      lease: num(
        'Seconds of the PostgreSQL maildrop lock lease, renewed every third of it; after a crash the mailbox is free again this long after the last renewal.',
        { default: 60, min: 1 },
      ),
      layout: str('Path of a user’s Maildir under root; %u is the mailbox id.', { default: '%u/Maildir' }),
      sync_small_reads: bool(
        'Read messages up to 128 KiB with synchronous calls (3x RETR rate on local disks); false on NFS.',
        true,
      ),
    },
  },
  auth: {
    kind: 'table',
    doc: 'User database.',
    fields: {
      driver: str(
        '"passwd-file" (users_file) or "postgres" (the users table of the database at storage.url, or auth.url).',
        { default: 'passwd-file', enum: ['passwd-file', 'postgres'] },
      ),
      users_file: str('passwd-style user file (Dovecot passwd-file compatible).', { default: './var/users' }),
      url: str(
        'PostgreSQL URL of the user database when it is not the store’s (default: storage.url, else the PG* variables).',
      ),
      mechanisms: strs(
        'SASL mechanisms (RFC 5034 AUTH) to offer; each only where it can work (see README, "Login").',
        SERVER_SASL_MECHANISMS,
      ),
      apop: bool('Offer APOP to users with a shared secret.', true),
      cache_size: int(
        'Verified credentials kept in memory (keyed HMAC, never the password), so a returning client costs no argon2; 0 turns the cache off.',
        { default: 10000, min: 0, max: 10000000 },
      ),
      cache_ttl: num(
        'Seconds a verified credential is trusted without verifying again; cleared sooner when the users file changes or on SIGHUP.',
        { default: 3600, min: 0 },
      ),
      scram_iterations: int(
        'PBKDF2 iterations of SCRAM-SHA-256 keys written by `postern user`, and announced for unknown users so that they look like real ones (RFC 7677: at least 4096).',
        { default: 10000, min: 4096, max: 10000000 },
      ),
    },
  },
  oauth: {
    kind: 'table',
    doc: 'OAUTHBEARER / XOAUTH2 token checks: a JWKS (file or URL) with issuer and audience, or a command.',
    fields: {
      jwks_file: str('JWKS document on disk (re-read when it changes).'),
      jwks_url: str('The provider’s jwks_uri.'),
      issuer: str('Required "iss" of tokens.'),
      audience: str('Required "aud" of tokens.'),
      user_claim: str('Claim that names the user.', { default: 'email' }),
      strip_domain: bool('Map "alice@example.com" in the claim to the user "alice".', false),
      command: strs('Instead of a JWKS: a command that gets the token on stdin and prints the user name.', []),
    },
  },
  limits: {
    kind: 'table',
    doc: 'Limits on every input and every wait.',
    fields: {
      max_line_length: int('Longest command line in octets (RFC 2449 §4 allows 255; longer passwords need more).', {
        default: 1024,
        min: MIN_LINE_LENGTH,
        max: 65536,
      }),
      max_auth_line_length: int('Longest SASL continuation line (RFC 5034); OAuth tokens are large.', {
        default: 32768,
        min: MIN_AUTH_LINE_LENGTH,
        max: 1048576,
      }),
      idle_timeout_auth: num('Seconds of inactivity before login after which the connection is closed.', {
        default: 60,
        min: 1,
      }),
      idle_timeout: num('Seconds of inactivity after login (RFC 1939 §3: at least 10 minutes).', {
        default: 600,
        min: MIN_IDLE_TIMEOUT_MS / 1000,
      }),
      max_bad_commands: int('Bad or unknown commands in a row before the connection is closed.', {
        default: 10,
        min: 1,
      }),
      max_connections: int('Concurrent connections per process.', { default: 1000, min: 1 }),
      max_connections_per_address: int('Concurrent connections from one client address.', { default: 20, min: 1 }),
      max_auth_failures: int('Failed logins on one connection before it is closed.', { default: 3, min: 1 }),
      failed_login_delay: num(
        'Seconds to wait before answering a failed login; doubles per recent failure from the address.',
        { default: 2, min: 0 },
      ),
      failed_login_max_delay: num('Cap on the failed-login delay, in seconds.', { default: 15, min: 0 }),
      tls_handshake_timeout: num(
        'Seconds a TLS handshake may take, after STLS and on implicit-TLS listeners alike; then the connection is closed.',
        { default: 30, min: 0.1 },
      ),
      shutdown_grace: num('Seconds sessions get to finish on SIGTERM before they are closed with -ERR [SYS/TEMP].', {
        default: 10,
        min: 0,
      }),
    },
  },
  lmtp: {
    kind: 'table',
    doc: 'LMTP delivery listener (RFC 2033) for an MTA such as Postfix; off unless `port` or `socket` is set.',
    fields: {
      address: str('Address to bind when `port` is set.', { default: '127.0.0.1' }),
      port: int('TCP port (24 is LMTP’s registered port); unset: no TCP listener.', { min: 0, max: 65535 }),
      socket: str(
        'Unix socket path instead of a TCP port (for Postfix: /var/spool/postfix/postern/lmtp, see docs/delivery.md).',
      ),
      socket_mode: str('Permissions of the Unix socket, in octal (the MTA’s user or group needs write access).', {
        default: '0660',
      }),
      hostname: str('Name in the LMTP greeting (default: server.hostname, else the OS host name).'),
      max_message_size: int('Largest message accepted, in octets, advertised with SIZE (RFC 1870); 0 means no limit.', {
        default: 104857600,
        min: 0,
      }),
      max_recipients: int(
        'Recipients per transaction; more are answered 452 4.5.3 and the MTA sends them in a later one.',
        { default: 100, min: 1 },
      ),
      max_connections: int('Concurrent LMTP connections.', { default: 100, min: 1 }),
      idle_timeout: num('Seconds of inactivity after which a connection is closed.', { default: 300, min: 1 }),
      recipient_lookup: str(
        'How a recipient address names a user: the whole address, its local part, or the address and then the local part.',
        { default: 'address-then-localpart', enum: ['address-then-localpart', 'address', 'localpart'] },
      ),
      recipient_delimiter: str(
        'Characters that start an address extension, as Postfix’s recipient_delimiter ("+": alice+lists@ is alice@).',
        { default: '' },
      ),
    },
  },
  quota: {
    kind: 'table',
    doc: 'Mailbox quotas, enforced at delivery. Per-user overrides: `quota_bytes=` and `quota_messages=` in the users file.',
    fields: {
      bytes: int('Default size limit of a mailbox in octets; 0 means none.', { default: 0, min: 0 }),
      messages: int('Default message count limit of a mailbox; 0 means none.', { default: 0, min: 0 }),
      tempfail: bool(
        'Over quota is temporary: LMTP 452 4.2.2 and deliver exit 75, so the MTA retries (default: 552 5.2.2 / exit 73, a bounce).',
        false,
      ),
    },
  },
  metrics: {
    kind: 'table',
    doc: 'Prometheus metrics and a health check over HTTP; off by default.',
    fields: {
      enabled: bool('Serve GET /metrics (Prometheus text format) and GET /health.', false),
      address: str('Address to bind; metrics are not secret but not for the world.', { default: '127.0.0.1' }),
      port: int('TCP port of the metrics endpoint.', { default: 9110, min: 0, max: 65535 }),
      process_metrics: bool('Include Node.js process metrics (CPU, memory, event loop lag, file descriptors).', true),
      max_connections: int(
        'Concurrent connections to the endpoint; more are closed at once, and idle ones after a few seconds, so it can never take the file descriptors POP3 and LMTP need.',
        { default: 32, min: 1, max: 10000 },
      ),
    },
  },
  log: {
    kind: 'table',
    doc: 'Logging (pino, JSON lines on stdout).',
    fields: {
      level: str('Log level.', {
        default: 'info',
        enum: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'],
      }),
    },
  },
} as const satisfies Schema;

/** postern.toml as checked against the schema: the types come from the declaration above. */
export type ConfigFile = InferSchema<typeof schema>;
