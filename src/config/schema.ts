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

export { SERVER_SASL_MECHANISMS };

export type Field =
  | { type: 'string'; default?: string; enum?: readonly string[]; doc: string }
  | { type: 'boolean'; default: boolean; doc: string }
  | { type: 'integer'; default?: number; min?: number; max?: number; doc: string }
  | { type: 'number'; default?: number; min?: number; max?: number; doc: string }
  | { type: 'string[]'; default: readonly string[]; doc: string };

export interface Table {
  readonly kind: 'table';
  readonly fields: Readonly<Record<string, Field>>;
  readonly doc: string;
}
export interface TableArray {
  readonly kind: 'array';
  readonly fields: Readonly<Record<string, Field>>;
  readonly doc: string;
}

export const schema = {
  server: {
    kind: 'table',
    doc: 'Identity and behaviour of the POP3 server.',
    fields: {
      hostname: { type: 'string', doc: 'Name used in the greeting and APOP timestamp (default: the OS host name).' },
      greeting: { type: 'string', default: 'Postern POP3 server ready.', doc: 'Text of the +OK greeting.' },
      implementation: {
        type: 'boolean',
        default: true,
        doc: 'Advertise "IMPLEMENTATION Postern" in CAPA (RFC 2449 §6.9).',
      },
      allow_plaintext_auth: {
        type: 'boolean',
        default: false,
        doc: 'Allow USER/PASS on unencrypted connections from non-loopback addresses.',
      },
      loopback_is_secure: {
        type: 'boolean',
        default: true,
        doc: 'Treat loopback connections as secure for plaintext login (set false behind a local TCP proxy).',
      },
      workers: {
        type: 'integer',
        default: 1,
        min: 1,
        max: 256,
        doc: 'Worker processes (Node cluster); locks are shared through the store.',
      },
    },
  },
  listen: {
    kind: 'array',
    doc: 'One [[listen]] table per listening socket.',
    fields: {
      address: { type: 'string', default: '127.0.0.1', doc: 'Address to bind.' },
      port: { type: 'integer', min: 0, max: 65535, doc: 'TCP port (110 for POP3 with STLS, 995 for POP3S).' },
      tls: {
        type: 'string',
        default: 'starttls',
        enum: ['starttls', 'implicit', 'none'],
        doc: '"implicit" (RFC 8314, port 995), "starttls" (plain with STLS, RFC 2595), or "none".',
      },
      proxy_protocol: {
        type: 'boolean',
        default: false,
        doc: 'Expect a PROXY protocol v1/v2 header first; only peers in proxy.trusted may connect.',
      },
    },
  },
  tls: {
    kind: 'table',
    doc: 'TLS certificate and key (PEM files).',
    fields: {
      cert: { type: 'string', doc: 'Certificate chain file (PEM).' },
      key: { type: 'string', doc: 'Private key file (PEM).' },
      client_ca: {
        type: 'string',
        doc: 'CA file (PEM) for client certificates; enables SASL EXTERNAL for clients that present one.',
      },
      client_cert_user: {
        type: 'string',
        default: 'CN',
        enum: ['CN', 'emailAddress'],
        doc: 'Subject field of a client certificate that names the user.',
      },
      min_version: {
        type: 'string',
        default: 'TLSv1.2',
        enum: ['TLSv1.2', 'TLSv1.3'],
        doc: 'Lowest TLS version accepted.',
      },
    },
  },
  policy: {
    kind: 'table',
    doc: 'RFC 2449 LOGIN-DELAY and EXPIRE; users override them with passwd extra fields login_delay= and expire=.',
    fields: {
      login_delay: {
        type: 'integer',
        default: 0,
        min: 0,
        doc: 'Minimum seconds between two logins of one user (0: no limit, not advertised).',
      },
      expire: {
        type: 'string',
        default: 'never',
        doc: 'Days a message is kept after it was first retrieved ("never"; "0": deleted at the QUIT of the session that retrieved it).',
      },
    },
  },
  certificate: {
    kind: 'array',
    doc: 'More certificates, chosen by the name the client asks for (SNI); [tls] is the default.',
    fields: {
      names: {
        type: 'string[]',
        default: [],
        doc: 'Host names this certificate serves; "*.example.com" matches one label.',
      },
      cert: { type: 'string', doc: 'Certificate chain file (PEM).' },
      key: { type: 'string', doc: 'Private key file (PEM).' },
    },
  },
  proxy: {
    kind: 'table',
    doc: 'PROXY protocol (HAProxy, nginx, load balancers) for listeners with proxy_protocol = true.',
    fields: {
      trusted: {
        type: 'string[]',
        default: [],
        doc: 'Networks allowed to send PROXY headers, as CIDRs ("10.0.0.0/8", "::1/128").',
      },
      timeout: { type: 'number', default: 5, min: 0.1, doc: 'Seconds to wait for the PROXY header.' },
    },
  },
  storage: {
    kind: 'table',
    doc: 'Where mail is kept.',
    fields: {
      driver: {
        type: 'string',
        default: 'maildir',
        enum: ['maildir', 'postgres'],
        doc: '"maildir" (one machine) or "postgres" (any number of servers sharing one database; run `postern db migrate` first).',
      },
      root: { type: 'string', default: './var/mail', doc: 'Root folder of the Maildirs.' },
      url: {
        type: 'string',
        doc: 'PostgreSQL connection URL (postgres://user:password@host:5432/db); unset: the PGHOST, PGUSER, PGPASSWORD, PGDATABASE… environment variables.',
      },
      pool_size: {
        type: 'integer',
        default: 10,
        min: 1,
        max: 1000,
        doc: 'PostgreSQL connections per server process (sessions hold none between commands).',
      },
      statement_timeout: {
        type: 'number',
        default: 30,
        min: 0.1,
        doc: 'Seconds a PostgreSQL statement may take before it fails with -ERR [SYS/TEMP].',
      },
      lease: {
        type: 'number',
        default: 60,
        min: 1,
        doc: 'Seconds of the PostgreSQL maildrop lock lease, renewed every third of it; after a crash the mailbox is free again this long after the last renewal.',
      },
      layout: {
        type: 'string',
        default: '%u/Maildir',
        doc: 'Path of a user’s Maildir under root; %u is the mailbox id.',
      },
      sync_small_reads: {
        type: 'boolean',
        default: true,
        doc: 'Read messages up to 128 KiB with synchronous calls (3x RETR rate on local disks); false on NFS.',
      },
    },
  },
  auth: {
    kind: 'table',
    doc: 'User database.',
    fields: {
      driver: {
        type: 'string',
        default: 'passwd-file',
        enum: ['passwd-file', 'postgres'],
        doc: '"passwd-file" (users_file) or "postgres" (the users table of the database at storage.url, or auth.url).',
      },
      users_file: {
        type: 'string',
        default: './var/users',
        doc: 'passwd-style user file (Dovecot passwd-file compatible).',
      },
      url: {
        type: 'string',
        doc: 'PostgreSQL URL of the user database when it is not the store’s (default: storage.url, else the PG* variables).',
      },
      mechanisms: {
        type: 'string[]',
        default: SERVER_SASL_MECHANISMS,
        doc: 'SASL mechanisms (RFC 5034 AUTH) to offer; each only where it can work (see README, "Login").',
      },
      apop: { type: 'boolean', default: true, doc: 'Offer APOP to users with a shared secret.' },
      cache_size: {
        type: 'integer',
        default: 10000,
        min: 0,
        max: 10000000,
        doc: 'Verified credentials kept in memory (keyed HMAC, never the password), so a returning client costs no argon2; 0 turns the cache off.',
      },
      cache_ttl: {
        type: 'number',
        default: 3600,
        min: 0,
        doc: 'Seconds a verified credential is trusted without verifying again; cleared sooner when the users file changes or on SIGHUP.',
      },
      scram_iterations: {
        type: 'integer',
        default: 10000,
        min: 4096,
        max: 10000000,
        doc: 'PBKDF2 iterations of SCRAM-SHA-256 keys written by `postern user`, and announced for unknown users so that they look like real ones (RFC 7677: at least 4096).',
      },
    },
  },
  oauth: {
    kind: 'table',
    doc: 'OAUTHBEARER / XOAUTH2 token checks: a JWKS (file or URL) with issuer and audience, or a command.',
    fields: {
      jwks_file: { type: 'string', doc: 'JWKS document on disk (re-read when it changes).' },
      jwks_url: { type: 'string', doc: 'The provider’s jwks_uri.' },
      issuer: { type: 'string', doc: 'Required "iss" of tokens.' },
      audience: { type: 'string', doc: 'Required "aud" of tokens.' },
      user_claim: { type: 'string', default: 'email', doc: 'Claim that names the user.' },
      strip_domain: {
        type: 'boolean',
        default: false,
        doc: 'Map "alice@example.com" in the claim to the user "alice".',
      },
      command: {
        type: 'string[]',
        default: [],
        doc: 'Instead of a JWKS: a command that gets the token on stdin and prints the user name.',
      },
    },
  },
  limits: {
    kind: 'table',
    doc: 'Limits on every input and every wait.',
    fields: {
      max_line_length: {
        type: 'integer',
        default: 1024,
        min: MIN_LINE_LENGTH,
        max: 65536,
        doc: 'Longest command line in octets (RFC 2449 §4 allows 255; longer passwords need more).',
      },
      max_auth_line_length: {
        type: 'integer',
        default: 32768,
        min: MIN_AUTH_LINE_LENGTH,
        max: 1048576,
        doc: 'Longest SASL continuation line (RFC 5034); OAuth tokens are large.',
      },
      idle_timeout_auth: {
        type: 'number',
        default: 60,
        min: 1,
        doc: 'Seconds of inactivity before login after which the connection is closed.',
      },
      idle_timeout: {
        type: 'number',
        default: 600,
        min: MIN_IDLE_TIMEOUT_MS / 1000,
        doc: 'Seconds of inactivity after login (RFC 1939 §3: at least 10 minutes).',
      },
      max_bad_commands: {
        type: 'integer',
        default: 10,
        min: 1,
        doc: 'Bad or unknown commands in a row before the connection is closed.',
      },
      max_connections: { type: 'integer', default: 1000, min: 1, doc: 'Concurrent connections per process.' },
      max_connections_per_address: {
        type: 'integer',
        default: 20,
        min: 1,
        doc: 'Concurrent connections from one client address.',
      },
      max_auth_failures: {
        type: 'integer',
        default: 3,
        min: 1,
        doc: 'Failed logins on one connection before it is closed.',
      },
      failed_login_delay: {
        type: 'number',
        default: 2,
        min: 0,
        doc: 'Seconds to wait before answering a failed login; doubles per recent failure from the address.',
      },
      failed_login_max_delay: {
        type: 'number',
        default: 15,
        min: 0,
        doc: 'Cap on the failed-login delay, in seconds.',
      },
      tls_handshake_timeout: {
        type: 'number',
        default: 30,
        min: 0.1,
        doc: 'Seconds a TLS handshake may take, after STLS and on implicit-TLS listeners alike; then the connection is closed.',
      },
      shutdown_grace: {
        type: 'number',
        default: 10,
        min: 0,
        doc: 'Seconds sessions get to finish on SIGTERM before they are closed with -ERR [SYS/TEMP].',
      },
    },
  },
  lmtp: {
    kind: 'table',
    doc: 'LMTP delivery listener (RFC 2033) for an MTA such as Postfix; off unless `port` or `socket` is set.',
    fields: {
      address: { type: 'string', default: '127.0.0.1', doc: 'Address to bind when `port` is set.' },
      port: {
        type: 'integer',
        min: 0,
        max: 65535,
        doc: 'TCP port (24 is LMTP’s registered port); unset: no TCP listener.',
      },
      socket: {
        type: 'string',
        doc: 'Unix socket path instead of a TCP port (for Postfix: /var/spool/postfix/postern/lmtp, see docs/delivery.md).',
      },
      socket_mode: {
        type: 'string',
        default: '0660',
        doc: 'Permissions of the Unix socket, in octal (the MTA’s user or group needs write access).',
      },
      hostname: { type: 'string', doc: 'Name in the LMTP greeting (default: server.hostname, else the OS host name).' },
      max_message_size: {
        type: 'integer',
        default: 104857600,
        min: 0,
        doc: 'Largest message accepted, in octets, advertised with SIZE (RFC 1870); 0 means no limit.',
      },
      max_recipients: {
        type: 'integer',
        default: 100,
        min: 1,
        doc: 'Recipients per transaction; more are answered 452 4.5.3 and the MTA sends them in a later one.',
      },
      max_connections: { type: 'integer', default: 100, min: 1, doc: 'Concurrent LMTP connections.' },
      idle_timeout: {
        type: 'number',
        default: 300,
        min: 1,
        doc: 'Seconds of inactivity after which a connection is closed.',
      },
      recipient_lookup: {
        type: 'string',
        default: 'address-then-localpart',
        enum: ['address-then-localpart', 'address', 'localpart'],
        doc: 'How a recipient address names a user: the whole address, its local part, or the address and then the local part.',
      },
      recipient_delimiter: {
        type: 'string',
        default: '',
        doc: 'Characters that start an address extension, as Postfix’s recipient_delimiter ("+": alice+lists@ is alice@).',
      },
    },
  },
  quota: {
    kind: 'table',
    doc: 'Mailbox quotas, enforced at delivery. Per-user overrides: `quota_bytes=` and `quota_messages=` in the users file.',
    fields: {
      bytes: { type: 'integer', default: 0, min: 0, doc: 'Default size limit of a mailbox in octets; 0 means none.' },
      messages: { type: 'integer', default: 0, min: 0, doc: 'Default message count limit of a mailbox; 0 means none.' },
      tempfail: {
        type: 'boolean',
        default: false,
        doc: 'Over quota is temporary: LMTP 452 4.2.2 and deliver exit 75, so the MTA retries (default: 552 5.2.2 / exit 73, a bounce).',
      },
    },
  },
  metrics: {
    kind: 'table',
    doc: 'Prometheus metrics and a health check over HTTP; off by default.',
    fields: {
      enabled: { type: 'boolean', default: false, doc: 'Serve GET /metrics (Prometheus text format) and GET /health.' },
      address: {
        type: 'string',
        default: '127.0.0.1',
        doc: 'Address to bind; metrics are not secret but not for the world.',
      },
      port: { type: 'integer', default: 9110, min: 0, max: 65535, doc: 'TCP port of the metrics endpoint.' },
      process_metrics: {
        type: 'boolean',
        default: true,
        doc: 'Include Node.js process metrics (CPU, memory, event loop lag, file descriptors).',
      },
      max_connections: {
        type: 'integer',
        default: 32,
        min: 1,
        max: 10000,
        doc: 'Concurrent connections to the endpoint; more are closed at once, and idle ones after a few seconds, so it can never take the file descriptors POP3 and LMTP need.',
      },
    },
  },
  log: {
    kind: 'table',
    doc: 'Logging (pino, JSON lines on stdout).',
    fields: {
      level: {
        type: 'string',
        default: 'info',
        enum: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'],
        doc: 'Log level.',
      },
    },
  },
} as const satisfies Record<string, Table | TableArray>;
