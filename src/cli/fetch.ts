/**
 * `postern fetch`: download mail from POP3 accounts into a Maildir, an mbox or an MDA. See fetch/fetcher.ts for
 * the order of steps that makes a crash or Ctrl-C safe. Exit codes: 0 all accounts ok, 1 an account failed,
 * 64 usage error, 78 accounts file error, 130 interrupted.
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { AUTH_MECHANISMS } from '../client/auth.ts';
import type { TlsMode } from '../client/client.ts';
import {
  accountFromUrl,
  checkPins,
  defaultAccountsFile,
  defaultStateDir,
  expandHome,
  type FetchAccount,
  FetchConfigError,
  FetchUsageError,
  legacyStateFileFor,
  parseAccountsFile,
  parseAuth,
  parseSize,
  stateFileFor,
} from '../fetch/config.ts';
import { fetchAccount } from '../fetch/fetcher.ts';
import { probe } from '../fetch/probe.ts';
import { LineProgress, type Progress, QuietProgress, TtyProgress } from '../fetch/progress.ts';
import { EX_CONFIG, EX_USAGE } from './sysexits.ts';

export interface FetchIo {
  stdin: NodeJS.ReadableStream & { isTTY?: boolean; setRawMode?: (mode: boolean) => unknown };
  stdout: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  stderr: NodeJS.WritableStream;
}

export const FETCH_HELP = `Usage: postern fetch [options] [ACCOUNT...]
       postern fetch [options] pop3s://USER@HOST[:PORT] --maildir DIR | --mbox FILE | --mda COMMAND
       postern fetch --probe HOST[:PORT] [--tls implicit|starttls|none]

Downloads new mail from POP3 accounts. Accounts come from a TOML file (default
$XDG_CONFIG_HOME/postern/fetch.toml); name some to fetch only those. A message is deleted on the server
only after it is safely stored and recorded, and only with --delete or keep_days; a run killed at any
point loses nothing and fetches nothing twice.

  -f, --accounts FILE        Accounts file (TOML, see README.md "postern fetch")
      --keep                 Leave messages on the server (the default)
      --delete               Delete each message on the server once it is stored
      --keep-days N          Keep messages on the server for N days after fetching, then delete them
      --max-size SIZE        Skip messages larger than SIZE (octets, or 100k, 25M, 1G)
  -n, --dry-run              List what would be fetched and deleted; change nothing
      --check                Status only: how many new messages and bytes per account; download nothing
      --received-header      Add a Received: header (server, time, UIDL) to each message
      --daemon SECONDS       Keep running: fetch every SECONDS seconds until SIGTERM or Ctrl-C
  -q, --quiet                Print errors only
      --state-dir DIR        Where UIDL state files live (default $XDG_STATE_HOME/postern/fetch)
  -v, --verbose              Print the POP3 dialogue (passwords are never shown) to stderr

One account from the command line (pop3s:// = implicit TLS, pop3:// = STLS, pop3://…?tls=none = cleartext):
      --maildir DIR | --mbox FILE | --mda COMMAND     Where to deliver
      --password-env VAR | --password-command CMD     Password source (otherwise asked on the terminal)
      --auth MECH[,MECH]     ${AUTH_MECHANISMS.join(', ')} (default: the strongest offered)
      --ca-file FILE         Trust this CA (PEM) in addition to the system's
      --pin-sha256 FP        Accept exactly this certificate (SHA-256 fingerprint; see --probe)
      --insecure-auth        Allow sending the password without TLS

  --probe HOST[:PORT]        Show the server's greeting, capabilities and certificate, and exit
      --tls MODE             For --probe: implicit (default, port 995), starttls (port 110), none
  -h, --help                 This help
`;

export async function runFetchCommand(argv: string[], io: FetchIo): Promise<number> {
  let values: ReturnType<typeof parse>['values'];
  let positionals: string[];
  try {
    ({ values, positionals } = parse(argv));
  } catch (err) {
    io.stderr.write(`postern fetch: ${(err as Error).message}\n`);
    return EX_USAGE;
  }
  if (values.help) {
    io.stdout.write(FETCH_HELP);
    return 0;
  }
  const ac = new AbortController();
  const onSigint = () => ac.abort(new Error('interrupted'));
  process.once('SIGINT', onSigint);
  process.once('SIGTERM', onSigint);
  try {
    if (values.probe) return await runProbe(values, io, ac.signal);
    let accounts: FetchAccount[];
    let daemonMs: number | undefined;
    try {
      if (values.daemon !== undefined) daemonMs = parseSeconds(values.daemon, '--daemon');
      if (values.daemon !== undefined && (values['dry-run'] || values.check)) {
        throw new FetchUsageError('--daemon cannot be used with --dry-run or --check');
      }
      if (values['dry-run'] && values.check) throw new FetchUsageError('use one of --dry-run and --check');
      accounts = selectAccounts(values, positionals);
    } catch (err) {
      if (err instanceof FetchConfigError) {
        // Exit codes as sysexits(3) defines them: the command line is EX_USAGE, the accounts file EX_CONFIG.
        io.stderr.write(`postern fetch: ${err.message}\n`);
        return err instanceof FetchUsageError ? EX_USAGE : EX_CONFIG;
      }
      throw err;
    }
    const progress: Progress = values.quiet
      ? new QuietProgress(io.stderr)
      : io.stdout.isTTY
        ? new TtyProgress(io.stdout, () => io.stdout.columns ?? 80)
        : new LineProgress(io.stdout, io.stderr);
    // A password asked on the terminal is asked once, not at every poll of --daemon.
    const asked = new Map<string, Promise<string>>();
    const pw = (a: FetchAccount): Promise<string> => {
      if (a.password !== 'prompt') return password(a, io);
      let p = asked.get(a.name);
      if (!p) {
        p = password(a, io);
        p.catch(() => asked.delete(a.name));
        asked.set(a.name, p);
      }
      return p;
    };
    for (;;) {
      let failed = 0;
      for (const account of accounts) {
        if (ac.signal.aborted) break;
        const r = await fetchAccount(account, {
          dryRun: values['dry-run'] ?? false,
          check: values.check ?? false,
          progress,
          password: pw,
          signal: ac.signal,
          debug: values.verbose ? (d, l) => io.stderr.write(`${account.name} ${d}: ${l}\n`) : undefined,
        });
        if (r.error) failed++;
      }
      // A daemon's normal way out is a signal (nothing is lost by stopping mid-run), so that is a clean exit.
      if (ac.signal.aborted) return daemonMs === undefined ? 130 : 0;
      if (daemonMs === undefined) return failed > 0 ? 1 : 0;
      // --daemon: wait for the next poll; a signal while waiting is a normal stop.
      if (!(await sleep(daemonMs, ac.signal))) return 0;
    }
  } finally {
    process.off('SIGINT', onSigint);
    process.off('SIGTERM', onSigint);
  }
}

/** Waits `ms`; false when the signal fired first. */
function sleep(ms: number, signal: AbortSignal): Promise<boolean> {
  return new Promise((resolve) => {
    if (signal.aborted) {
      resolve(false);
      return;
    }
    const onAbort = () => {
      clearTimeout(t);
      resolve(false);
    };
    const t = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve(true);
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

function parse(argv: string[]) {
  return parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      accounts: { type: 'string', short: 'f' },
      keep: { type: 'boolean' },
      delete: { type: 'boolean' },
      'keep-days': { type: 'string' },
      'max-size': { type: 'string' },
      'dry-run': { type: 'boolean', short: 'n' },
      check: { type: 'boolean' },
      'received-header': { type: 'boolean' },
      daemon: { type: 'string' },
      quiet: { type: 'boolean', short: 'q' },
      verbose: { type: 'boolean', short: 'v' },
      'state-dir': { type: 'string' },
      maildir: { type: 'string' },
      mbox: { type: 'string' },
      mda: { type: 'string' },
      'password-env': { type: 'string' },
      'password-command': { type: 'string' },
      auth: { type: 'string' },
      'ca-file': { type: 'string' },
      'pin-sha256': { type: 'string', multiple: true },
      'insecure-auth': { type: 'boolean' },
      probe: { type: 'string' },
      tls: { type: 'string' },
      timeout: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
}

type Values = ReturnType<typeof parse>['values'];

function selectAccounts(v: Values, positionals: string[]): FetchAccount[] {
  if (v.keep && v.delete) throw new FetchUsageError('--keep and --delete cannot be used together');
  // Flags first: a bad flag is a usage error even when the accounts file has problems too.
  const keepDays = v['keep-days'] !== undefined ? parseDays(v['keep-days']) : undefined;
  const maxSize = v['max-size'] !== undefined ? usage(() => parseSize(v['max-size'], '--max-size')) : undefined;
  const timeoutMs = v.timeout !== undefined ? parseSeconds(v.timeout, '--timeout') : undefined;
  if (v['pin-sha256']) checkPins(v['pin-sha256'], '--pin-sha256', true);
  const stateDir = v['state-dir'] ? expandHome(v['state-dir']) : undefined;
  const urls = positionals.filter((p) => p.includes('://'));
  let accounts: FetchAccount[];
  if (urls.length > 0) {
    if (urls.length !== positionals.length) throw new FetchUsageError('give either account names or one URL');
    accounts = urls.map((u) => accountFromCli(u, v, stateDir ?? defaultStateDir()));
  } else {
    for (const k of ['maildir', 'mbox', 'mda', 'password-env', 'password-command'] as const) {
      if (v[k] !== undefined) throw new FetchUsageError(`--${k} is for an account given as a URL`);
    }
    const file = v.accounts ? expandHome(v.accounts) : defaultAccountsFile();
    accounts = parseAccountsFile(file, { stateDir });
    if (positionals.length > 0) {
      const byName = new Map(accounts.map((x) => [x.name, x]));
      accounts = positionals.map((n) => {
        const found = byName.get(n);
        if (!found)
          throw new FetchUsageError(`no account named "${n}" in ${file} (have: ${[...byName.keys()].join(', ')})`);
        return found;
      });
    }
  }
  // Command-line modes override the file.
  return accounts.map((acc) => ({
    ...acc,
    keep: v.delete ? false : v.keep || keepDays !== undefined ? true : acc.keep,
    keepDays: keepDays !== undefined ? keepDays : v.delete || v.keep ? undefined : acc.keepDays,
    maxSize: maxSize ?? acc.maxSize,
    timeoutMs: timeoutMs ?? acc.timeoutMs,
    receivedHeader: v['received-header'] || acc.receivedHeader,
  }));
}

/** Runs a parser shared with the accounts file, turning its error into a usage error (it was a flag). */
function usage<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof FetchConfigError) throw new FetchUsageError(err.message);
    throw err;
  }
}

function parseDays(s: string): number {
  const n = Number(s);
  if (!(s.trim() !== '' && Number.isFinite(n) && n >= 0))
    throw new FetchUsageError(`--keep-days: not a number of days: ${s}`);
  return n;
}

function parseSeconds(s: string, flag: string): number {
  const n = Number(s);
  if (!(s.trim() !== '' && Number.isFinite(n) && n > 0))
    throw new FetchUsageError(`${flag}: not a number of seconds: ${s}`);
  return n * 1000;
}

function accountFromCli(url: string, v: Values, stateDir: string): FetchAccount {
  const base = usage(() => accountFromUrl(url, 'account URL'));
  const targets = (['maildir', 'mbox', 'mda'] as const).filter((k) => v[k] !== undefined);
  if (targets.length !== 1) throw new FetchUsageError('give exactly one of --maildir, --mbox and --mda');
  const k = targets[0];
  const val = v[k] as string;
  if (v['password-env'] && v['password-command']) {
    throw new FetchUsageError('use one of --password-env and --password-command');
  }
  return {
    ...base,
    password: v['password-env']
      ? { env: v['password-env'] }
      : v['password-command']
        ? { command: v['password-command'] }
        : 'prompt',
    auth: v.auth ? usage(() => parseAuth(v.auth, '--auth')) : 'auto',
    allowInsecureAuth: v['insecure-auth'] ?? false,
    caFile: v['ca-file'] ? expandHome(v['ca-file']) : undefined,
    pinSha256: v['pin-sha256'],
    deliver: k === 'mda' ? { kind: 'mda', command: val } : { kind: k, path: expandHome(val) },
    keep: true,
    keepDays: undefined,
    maxSize: undefined,
    timeoutMs: 60_000,
    receivedHeader: false,
    stateFile: stateFileFor(stateDir, base),
    legacyStateFile: legacyStateFileFor(stateDir, base.user, base.host),
  };
}

/** The account's password: from a command's first output line, an environment variable, or the terminal. */
async function password(account: FetchAccount, io: FetchIo): Promise<string> {
  const src = account.password;
  if (src === 'prompt') {
    // Loaded only when a password is asked for (it brings readline).
    const { readSecret } = await import('./prompt.ts');
    return readSecret(`Password for ${account.user}@${account.host}: `, { stdin: io.stdin, stderr: io.stderr });
  }
  if ('value' in src) return src.value;
  if ('env' in src) {
    const v = process.env[src.env];
    if (v === undefined || v === '') throw new Error(`${account.name}: environment variable ${src.env} is not set`);
    return v;
  }
  // Loaded only for a password command: node:child_process (and what it brings) costs every fetch 2-3 ms.
  const { spawn } = await import('node:child_process');
  return new Promise((resolve, reject) => {
    const child = spawn('/bin/sh', ['-c', src.command], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      if (out.length < 65_536) out += d.toString('utf8');
    });
    child.once('error', reject);
    child.once('close', (code) => {
      // Only the exit status is reported: the output is the secret.
      if (code !== 0) reject(new Error(`${account.name}: password_command failed (exit ${code})`));
      else resolve(out.split(/\r?\n/)[0]);
    });
  });
}

async function runProbe(v: Values, io: FetchIo, signal: AbortSignal): Promise<number> {
  const target = v.probe ?? '';
  const url = target.includes('://')
    ? accountFromUrl(target.replace(/:\/\/(?![^/]*@)/, '://probe@'), '--probe')
    : undefined;
  const tls = (v.tls ?? url?.tls ?? 'implicit') as TlsMode;
  if (!['implicit', 'starttls', 'none'].includes(tls)) {
    io.stderr.write('postern fetch: --tls must be implicit, starttls or none\n');
    return EX_USAGE;
  }
  let host = url?.host ?? target;
  let port = url?.port ?? (tls === 'implicit' ? 995 : 110);
  const m = url ? null : /^(?:\[([^\]]+)\]|([^:]+))(?::(\d+))?$/.exec(target);
  if (m) {
    host = m[1] ?? m[2];
    if (m[3]) port = Number(m[3]);
  }
  if (!host) {
    io.stderr.write('postern fetch: --probe needs a HOST\n');
    return EX_USAGE;
  }
  try {
    io.stdout.write(
      await probe({
        host,
        port,
        tls,
        timeoutMs: v.timeout ? parseSeconds(v.timeout, '--timeout') : 30_000,
        ca: v['ca-file'] ? readFileSync(expandHome(v['ca-file'])) : undefined,
        signal,
      }),
    );
    return 0;
  } catch (err) {
    io.stderr.write(`postern fetch: probe of ${host}:${port} failed: ${(err as Error).message}\n`);
    return 1;
  }
}
