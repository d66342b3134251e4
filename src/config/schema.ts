/**
 * A small, strict schema for postern.toml. Every key has a type, a default and (where it matters) a check;
 * an unknown key or a wrong type is an error that names the key and its line in the file, because a typo in
 * a mail server's config should stop it at start, not silently run it with a default.
 */

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
    },
  },
  tls: {
    kind: 'table',
    doc: 'TLS certificate and key (PEM files).',
    fields: {
      cert: { type: 'string', doc: 'Certificate chain file (PEM).' },
      key: { type: 'string', doc: 'Private key file (PEM).' },
      min_version: {
        type: 'string',
        default: 'TLSv1.2',
        enum: ['TLSv1.2', 'TLSv1.3'],
        doc: 'Lowest TLS version accepted.',
      },
    },
  },
  storage: {
    kind: 'table',
    doc: 'Where mail is kept.',
    fields: {
      driver: { type: 'string', default: 'maildir', enum: ['maildir'], doc: 'Store driver.' },
      root: { type: 'string', default: './var/mail', doc: 'Root folder of the Maildirs.' },
      layout: {
        type: 'string',
        default: '%u/Maildir',
        doc: 'Path of a user’s Maildir under root; %u is the mailbox id.',
      },
    },
  },
  auth: {
    kind: 'table',
    doc: 'User database.',
    fields: {
      users_file: {
        type: 'string',
        default: './var/users',
        doc: 'passwd-style user file (Dovecot passwd-file compatible).',
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
        min: 255,
        max: 65536,
        doc: 'Longest command line in octets (RFC 2449 §4 allows 255; longer passwords need more).',
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
        min: 600,
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
      shutdown_grace: {
        type: 'number',
        default: 10,
        min: 0,
        doc: 'Seconds sessions get to finish on SIGTERM before they are closed with -ERR [SYS/TEMP].',
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
