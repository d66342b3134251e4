/**
 * Writes postern.example.toml from src/config/schema.ts: every table and key, each with its documentation
 * as a comment and its default (commented out, so the file changes nothing by being there), plus the
 * settings a typical installation sets (listeners, certificate, paths, LMTP socket) active.
 * `node --import tsx scripts/example-config.ts > postern.example.toml`; test/ops/example-config.test.ts
 * checks that the file in the repository covers every key of the schema and is a valid config.
 */
import { schema } from '../src/config/schema.ts';
import type { Field } from '../src/toml/schema.ts';

type Value = string | number | boolean | readonly string[];

/** Active settings of the sample installation (systemd unit: contrib/postern.service). */
const ACTIVE: Record<string, Record<string, Value> | Record<string, Value>[]> = {
  listen: [
    { address: '0.0.0.0', port: 110, tls: 'starttls' },
    { address: '0.0.0.0', port: 995, tls: 'implicit' },
  ],
  tls: { cert: '/etc/postern/tls/fullchain.pem', key: '/etc/postern/tls/privkey.pem' },
  storage: { root: '/var/mail/postern' },
  auth: { users_file: '/etc/postern/users' },
  lmtp: { socket: '/run/postern/lmtp.sock' },
};

/** Placeholders shown (commented out) for keys without a default. */
const PLACEHOLDER: Record<string, Value> = {
  'server.hostname': 'mail.example.com',
  'lmtp.port': 24,
  'lmtp.hostname': 'mail.example.com',
};

const WIDTH = 100;

function wrap(text: string, prefix: string): string[] {
  const out: string[] = [];
  let line = prefix;
  for (const word of text.split(/\s+/)) {
    if (line.length + word.length + 1 > WIDTH && line !== prefix) {
      out.push(line.trimEnd());
      line = prefix;
    }
    line += `${word} `;
  }
  if (line !== prefix) out.push(line.trimEnd());
  return out;
}

function toml(v: Value): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map((s) => JSON.stringify(s)).join(', ')}]`;
  return String(v);
}

function placeholder(table: string, key: string, f: Field): Value {
  const p = PLACEHOLDER[`${table}.${key}`];
  if (p !== undefined) return p;
  if ('default' in f && f.default !== undefined) return f.default;
  // Booleans and string lists always have a default (the schema's types say so), so only these remain.
  if (f.type === 'string') return 'enum' in f && f.enum ? f.enum[0] : '';
  return 'min' in f && f.min !== undefined ? f.min : 0;
}

function fieldLines(table: string, key: string, f: Field, active: Record<string, Value> | undefined): string[] {
  const lines: string[] = [''];
  let doc = f.doc;
  if (f.type === 'string' && 'enum' in f && f.enum) doc += ` One of: ${f.enum.map((e) => `"${e}"`).join(', ')}.`;
  if ((f.type === 'integer' || f.type === 'number') && ('min' in f || 'max' in f)) {
    const range = [f.min !== undefined ? `at least ${f.min}` : '', f.max !== undefined ? `at most ${f.max}` : '']
      .filter((s) => s !== '')
      .join(', ');
    if (range !== '') doc += ` (${f.type}, ${range})`;
  }
  lines.push(...wrap(doc, '# '));
  const dflt = 'default' in f && f.default !== undefined;
  if (active && key in active) {
    if (dflt) lines.push(`# default: ${toml(f.default as Value)}`);
    lines.push(`${key} = ${toml(active[key])}`);
  } else {
    lines.push(`#${key} = ${toml(placeholder(table, key, f))}`);
  }
  return lines;
}

export function exampleConfig(): string {
  const out: string[] = [
    '# postern.toml — a sample configuration for Postern, with every key the server reads.',
    '#',
    '# Each key is shown with its documentation; keys that are commented out show their default (or, when',
    '# there is none, an example value) and change nothing. The active lines are what a typical installation',
    '# sets: POP3 on 110 (STLS) and 995 (TLS), the certificate, the mail and user paths used by',
    '# contrib/postern.service, and an LMTP socket for the MTA. Check a config with `postern check-config`.',
    '#',
    '# Generated from src/config/schema.ts by scripts/example-config.ts; do not edit by hand.',
  ];
  for (const [name, table] of Object.entries(schema)) {
    const active = ACTIVE[name];
    out.push('', `# ${'-'.repeat(WIDTH - 2)}`);
    out.push(...wrap(table.doc, '# '));
    if (table.kind === 'array') {
      const entries = Array.isArray(active) ? active : [];
      if (entries.length === 0) {
        out.push(`#[[${name}]]`);
        for (const [key, f] of Object.entries(table.fields)) {
          out.push(
            ...fieldLines(name, key, f as Field, undefined).map((l) => (l.startsWith('#') || l === '' ? l : `#${l}`)),
          );
        }
      }
      entries.forEach((entry, i) => {
        if (i > 0) out.push('');
        out.push(`[[${name}]]`);
        for (const [key, f] of Object.entries(table.fields)) {
          // Documentation once, on the first entry; the others only set their values.
          if (i === 0) out.push(...fieldLines(name, key, f as Field, entry));
          else if (key in entry) out.push(`${key} = ${toml(entry[key])}`);
        }
      });
    } else {
      out.push(`[${name}]`);
      const values = Array.isArray(active) ? undefined : active;
      for (const [key, f] of Object.entries(table.fields)) out.push(...fieldLines(name, key, f as Field, values));
    }
  }
  return `${out.join('\n')}\n`;
}

if (import.meta.url === `file://${process.argv[1]}`) process.stdout.write(exampleConfig());
