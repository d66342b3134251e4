/**
 * The `postern` command. Each sub-command parses its own options with node:util parseArgs and answers
 * `--help`; exit codes: 0 ok, 1 failure, 64 usage error (sysexits EX_USAGE), 78 config error (EX_CONFIG).
 */
import { existsSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { type PasswdIssue, parsePasswdBytes } from '../auth/passwd-format.ts';
import { type Config, ConfigError, loadConfig, parseConfig } from '../config/config.ts';
import { createLogger } from '../observability/log.ts';
import { runDeliver } from './deliver.ts';
import { devBanner, prepareDev } from './dev.ts';
import { runMailboxCommand } from './mailbox.ts';
import { serveForever } from './serve.ts';
import { runUserCommand } from './user.ts';

export const EX_USAGE = 64;
export const EX_CONFIG = 78;

const HELP = `postern — a POP3 mail system

Usage: postern <command> [options]

Commands:
  serve          Run the POP3 server (--dev: the embedded development setup in ./var)
  user           Manage users: add, passwd, del, list
  deliver        Deliver one message from stdin to a user (for an MTA; sysexits exit codes)
  mailbox        Look into and fill mailboxes: stats, list, import
  check-config   Validate a config file and print what it sets up
  fetch          Download mail from POP3 accounts (postern fetch --help)

Common options:
  -c, --config FILE   Config file (default: ./postern.toml if present; otherwise the built-in defaults)
  -h, --help          Help for a command, e.g. \`postern serve --help\`
  -v, --version       Print the version
`;

const SERVE_HELP = `Usage: postern serve [--config FILE] [--dev]

Runs the POP3 server until SIGTERM or SIGINT (graceful: sessions get limits.shutdown_grace seconds to
finish; nothing is deleted for a session that did not QUIT). SIGHUP reloads the certificate and user file.

  -c, --config FILE   TOML config (see README.md, "Configuration")
      --dev           Development setup in ./var: config, self-signed certificate, Maildir tree and a demo
                      user are created on first start; listens on 127.0.0.1:1110 (STLS) and :1995 (TLS)
`;

const CHECK_HELP = `Usage: postern check-config [--config FILE]

Validates the config (unknown keys and wrong types are errors naming the key and line) and prints the
listeners, store and user file it sets up. Exit code 0 when valid, 78 when not.
`;

interface Io {
  stdin: NodeJS.ReadableStream & { isTTY?: boolean };
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
}

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

/** The config named by --config, else ./postern.toml, else the built-in defaults (paths under ./var). */
function resolveConfig(file: string | undefined): Config {
  if (file) return loadConfig(file);
  if (existsSync('postern.toml')) return loadConfig('postern.toml');
  return parseConfig('', 'postern.toml');
}

export async function main(argv: string[], io: Io = process): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case undefined:
      case '-h':
      case '--help':
      case 'help':
        io.stdout.write(HELP);
        return command === undefined ? EX_USAGE : 0;
      case '-v':
      case '--version':
        io.stdout.write(`${version()}\n`);
        return 0;
      case 'serve':
        return await serve(rest, io);
      case 'user': {
        const { config: file, args } = takeConfig(rest);
        const config = resolveConfig(file);
        return await runUserCommand(args, {
          usersFile: config.auth.usersFile,
          scramIterations: config.auth.scramIterations,
          ...io,
        });
      }
      case 'fetch':
        return await (await import('./fetch.ts')).runFetchCommand(rest, io);
      case 'check-config':
        return await checkConfig(rest, io);
      case 'deliver': {
        const { config: file, args } = takeConfig(rest);
        return await runDeliver(args, { ...io, config: () => resolveConfig(file) });
      }
      case 'mailbox': {
        const { config: file, args } = takeConfig(rest);
        return await runMailboxCommand(args, { ...io, config: () => resolveConfig(file) });
      }
      default:
        io.stderr.write(`postern: unknown command "${command}"\n\n${HELP}`);
        return EX_USAGE;
    }
  } catch (err) {
    if (err instanceof ConfigError) {
      io.stderr.write(`postern: config error: ${err.message}\n`);
      return EX_CONFIG;
    }
    if (err instanceof TypeError && (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      io.stderr.write(`postern: ${err.message}\n`);
      return EX_USAGE;
    }
    io.stderr.write(`postern: ${(err as Error).message}\n`);
    return 1;
  }
}

/** Takes `--config X` / `-c X` / `--config=X` out, so a sub-command's own parser sees only its options. */
function takeConfig(args: string[]): { config: string | undefined; args: string[] } {
  const out: string[] = [];
  let config: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === '-c' || a === '--config') config = args[++i];
    else if (a.startsWith('--config=')) config = a.slice('--config='.length);
    else out.push(a);
  }
  return { config, args: out };
}

async function serve(args: string[], io: Io): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      config: { type: 'string', short: 'c' },
      dev: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    io.stdout.write(SERVE_HELP);
    return 0;
  }
  let config: Config;
  if (values.dev) {
    if (values.config) throw new ConfigError('--dev and --config cannot be used together');
    const setup = await prepareDev();
    config = setup.config;
    io.stderr.write(devBanner(setup));
  } else {
    config = resolveConfig(values.config);
    if (config.listen.length === 0) {
      throw new ConfigError('no [[listen]] table: nothing to serve (try `postern serve --dev` for a local setup)');
    }
  }
  const logger = createLogger(config.log.level);
  return serveForever(config, logger);
}

async function checkConfig(args: string[], io: Io): Promise<number> {
  const { values } = parseArgs({
    args,
    options: { config: { type: 'string', short: 'c' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help) {
    io.stdout.write(CHECK_HELP);
    return 0;
  }
  const config = resolveConfig(values.config);
  const users = await usersFileReport(config.auth.usersFile);
  const lines = [
    'config OK',
    ...config.listen.map((l) => `  listen  ${l.address}:${l.port} (${l.tls})`),
    `  store   ${config.storage.driver} ${config.storage.root}/${config.storage.layout}`,
    `  users   ${config.auth.usersFile} (${users.summary})`,
    `  tls     ${config.tls ? `${config.tls.cert} (min ${config.tls.minVersion})` : 'not configured'}`,
    `  lmtp    ${config.lmtp ? (config.lmtp.socket ?? `${config.lmtp.address}:${config.lmtp.port}`) : 'off'}`,
    `  metrics ${config.metrics.enabled ? `http://${config.metrics.address}:${config.metrics.port}/metrics` : 'off'}`,
    `  sasl    ${config.auth.mechanisms.join(' ')}${config.oauth ? ` (oauth: ${config.oauth.kind})` : ''}`,
  ];
  io.stdout.write(`${lines.join('\n')}\n`);
  // What the server will skip (and log) when it reads the users file: by line number, never the line's text.
  for (const issue of users.issues) {
    io.stdout.write(`  warning ${config.auth.usersFile}:${issue.lineNo}: ${issue.message}\n`);
  }
  return 0;
}

/** The users file as the server will read it: how many users, and the lines it skips or warns about. */
async function usersFileReport(path: string): Promise<{ summary: string; issues: readonly PasswdIssue[] }> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (err) {
    const missing = (err as NodeJS.ErrnoException).code === 'ENOENT';
    return { summary: missing ? 'missing: no user can log in' : `unreadable: ${(err as Error).message}`, issues: [] };
  }
  const { users, issues } = parsePasswdBytes(bytes);
  const n = issues.length;
  return { summary: `${users.size} users${n > 0 ? `; ${n} line${n === 1 ? '' : 's'} to check, below` : ''}`, issues };
}
