/**
 * The `postern` command. Each sub-command parses its own options with node:util parseArgs and answers
 * `--help`; exit codes: 0 ok, 1 failure, 64 usage error (sysexits EX_USAGE), 78 config error (EX_CONFIG).
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { parseArgs } from 'node:util';
import type { Config } from '../config/config.ts';
import { EX_CONFIG, EX_USAGE } from './sysexits.ts';

type ConfigModule = typeof import('../config/config.ts');
const configModule = (): Promise<ConfigModule> => import('../config/config.ts');

// Sub-commands are imported when they run, not here: `postern --version` loads nothing else, and
// `postern fetch` never loads the server, the store, argon2 or selfsigned (test/ops/package.test.ts checks).

const HELP = `postern — a POP3 mail system

Usage: postern <command> [options]

Commands:
  serve          Run the POP3 server (--dev: the embedded development setup in ./var)
  user           Manage users: add, passwd, del, list
  deliver        Deliver one message from stdin to a user (for an MTA; sysexits exit codes)
  mailbox        Look into and fill mailboxes: stats, list, import
  db             PostgreSQL schema: migrate, version
  store          Move every mailbox between stores: migrate --from maildir:ROOT --to postgres:URL
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

interface Io {
  stdin: NodeJS.ReadableStream & { isTTY?: boolean };
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
}

function version(): string {
  // src/cli/main.ts and dist/cli/main.js are both two levels below the package root.
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

/** The config named by --config, else ./postern.toml, else the built-in defaults (paths under ./var). */
function resolveConfig(file: string | undefined, cfg: ConfigModule): Config {
  const { loadConfig, parseConfig } = cfg;
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
        const config = resolveConfig(file, await configModule());
        const { runUserCommand } = await import('./user.ts');
        const context = {
          usersFile: config.auth.usersFile,
          scramIterations: config.auth.scramIterations,
          newFileOwner: serverUser(config),
          ...io,
        };
        if (config.auth.driver !== 'postgres') return await runUserCommand(args, context);
        const { Databases, openUserAdmin } = await import('./backends.ts');
        const dbs = new Databases();
        try {
          return await runUserCommand(args, { ...context, admin: await openUserAdmin(config, dbs) });
        } finally {
          await dbs.close();
        }
      }
      case 'db': {
        const { config: file, args } = takeConfig(rest);
        const { runDbCommand } = await import('./db.ts');
        const cfg = await configModule();
        return await runDbCommand(args, { ...io, config: () => resolveConfig(file, cfg) });
      }
      case 'store': {
        const { config: file, args } = takeConfig(rest);
        const { runStoreCommand } = await import('./store-migrate.ts');
        const cfg = await configModule();
        return await runStoreCommand(args, { ...io, config: () => resolveConfig(file, cfg) });
      }
      case 'fetch':
        return await (await import('./fetch.ts')).runFetchCommand(rest, io);
      case 'check-config':
        return await (await import('./check-config.ts')).runCheckConfig(rest, io, (file, cfg) =>
          resolveConfig(file, cfg),
        );
      case 'deliver': {
        const { config: file, args } = takeConfig(rest);
        const { runDeliver } = await import('./deliver.ts');
        const cfg = await configModule();
        return await runDeliver(args, { ...io, config: () => resolveConfig(file, cfg) });
      }
      case 'mailbox': {
        const { config: file, args } = takeConfig(rest);
        const { runMailboxCommand } = await import('./mailbox.ts');
        const cfg = await configModule();
        return await runMailboxCommand(args, { ...io, config: () => resolveConfig(file, cfg) });
      }
      default:
        io.stderr.write(`postern: unknown command "${command}"\n\n${HELP}`);
        return EX_USAGE;
    }
  } catch (err) {
    const name = (err as Error).name;
    if (name === 'ConfigError' || name === 'StartupError') {
      const what = name === 'ConfigError' ? 'config error' : 'cannot start';
      io.stderr.write(`postern: ${what}: ${(err as Error).message}\n`);
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

/**
 * Run as root, `postern user add` creating the users file gives it to the owner of the mail root (the
 * service user: contrib/postern.service's steps create /var/mail/postern for it), so the service can read it.
 */
function serverUser(config: Config): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  try {
    const st = statSync(config.storage.root);
    return st.uid === 0 ? undefined : { uid: st.uid, gid: st.gid };
  } catch {
    return undefined;
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
  const cfg = await configModule();
  let config: Config;
  if (values.dev) {
    if (values.config) throw new cfg.ConfigError('--dev and --config cannot be used together');
    const { devBanner, prepareDev } = await import('./dev.ts');
    const setup = await prepareDev();
    config = setup.config;
    io.stderr.write(devBanner(setup));
  } else {
    config = resolveConfig(values.config, cfg);
    if (config.listen.length === 0) {
      throw new cfg.ConfigError('no [[listen]] table: nothing to serve (try `postern serve --dev` for a local setup)');
    }
  }
  // The same checks as check-config: a certificate, users file or mail root that cannot work stops the start
  // here, naming the key and the path, instead of a bare ENOENT or -ERR at every login.
  const { formatProblem, serveProblems } = await import('./preflight.ts');
  const problems = serveProblems(config);
  if (problems.length > 0) throw new cfg.ConfigError(problems.map(formatProblem).join('\n  '));
  const [{ createLogger }, { serveForever }] = await Promise.all([
    import('../observability/log.ts'),
    import('./serve.ts'),
  ]);
  return serveForever(config, createLogger(config.log.level));
}
