/**
 * `postern user …`: manage the users of the passwd file (src/auth/passwd.ts).
 *
 * Exit codes follow sysexits(3) where it has one: 0 done, 1 failed (the message says why), 64 (EX_USAGE)
 * bad command line. Passwords are read with readSecret (prompt.ts) and never printed, logged or put in an
 * error message.
 */
import { parseArgs } from 'node:util';
import { passwdFileAdmin, type UserAdmin } from '../auth/admin.ts';
import { userNameProblem } from '../auth/names.ts';
import { PasswdFileError, passwordProblem } from '../auth/passwd.ts';
import { readSecret, SecretInputError, type SecretInputStream } from './prompt.ts';
import { EX_USAGE } from './sysexits.ts';

export interface UserCommandContext {
  /** The passwd file to manage (from the configuration). */
  readonly usersFile: string;
  /** `auth.scram_iterations`: PBKDF2 iterations of the SCRAM keys written with a password. */
  readonly scramIterations?: number;
  /** Owner for a users file that `add` creates as root: the server's user (see main.ts). */
  readonly newFileOwner?: { readonly uid: number; readonly gid: number };
  /** The user database to manage instead of the passwd file ([auth] driver = "postgres"). */
  readonly admin?: UserAdmin;
  readonly stdin: SecretInputStream;
  readonly stdout: NodeJS.WritableStream;
  readonly stderr: NodeJS.WritableStream;
}

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;

const USAGE = `Usage: postern user <command> [options]

Manage the users who can log in to the POP3 server. Users live in a passwd-style
file compatible with Dovecot's passwd-file; passwords are stored as argon2id hashes.

Commands:
  add NAME [--apop]            add a user, asking for the password
  passwd NAME [--apop|--no-apop]
                               set a new password for a user
  del NAME                     delete a user (their mail is kept)
  list [--long]                list the users

Run 'postern user <command> --help' for the details of a command.
`;

const HELP = {
  add: `Usage: postern user add NAME [--apop]

Add the user NAME. The password is asked for twice on a terminal; when stdin is
not a terminal, the first line of stdin is the password, e.g.
  printf '%s\\n' "$password" | postern user add alice

NAME is UTF-8, 1 to 255 bytes, without ':', '/', '\\', spaces or control
characters. Names are case-sensitive: 'Alice' and 'alice' are different users.

Options:
  --apop      also store the password as the user's APOP and CRAM-MD5 shared
              secret. Those mechanisms need the secret itself, so it is kept
              on disk in a recoverable form (base64, not a hash) next to the
              argon2id hash: anyone who can read the users file can read it.
              Without --apop only the hash is stored and the user logs in with
              USER/PASS or AUTH PLAIN/LOGIN over TLS.
  -h, --help  show this help
`,
  passwd: `Usage: postern user passwd NAME [--apop | --no-apop]

Set a new password for the user NAME (asked for twice on a terminal, or the
first line of stdin). The new password is stored as an argon2id hash, whatever
scheme the old one used; the rest of the user's line is kept.

If the user had an APOP/CRAM-MD5 shared secret, it is replaced by the new
password, so the old password stops working everywhere.

Options:
  --apop      store the new password as the APOP/CRAM-MD5 shared secret too;
              it is kept on disk in a recoverable form (see 'user add --help')
  --no-apop   remove the user's shared secret: APOP and CRAM-MD5 stop working
              for them
  -h, --help  show this help
`,
  del: `Usage: postern user del NAME

Delete the user NAME from the users file. Their mailbox and its messages are
not touched.

Options:
  -h, --help  show this help
`,
  list: `Usage: postern user list [--long]

Print the user names, one per line. Passwords and hashes are never shown.

Options:
  -l, --long  also show the password scheme, whether the user has an APOP
              shared secret, the mailbox id, and why a user cannot log in
  -h, --help  show this help
`,
} as const;

type Subcommand = keyof typeof HELP;

/** Runs `postern user <argv…>`; `argv` is what follows `user`. Resolves to the exit code. */
export async function runUserCommand(argv: string[], ctx: UserCommandContext): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined) {
    ctx.stderr.write(USAGE);
    return EX_USAGE;
  }
  if (sub === '--help' || sub === '-h' || sub === 'help') {
    ctx.stdout.write(USAGE);
    return EXIT_OK;
  }
  if (!Object.hasOwn(HELP, sub)) {
    ctx.stderr.write(`postern user: unknown command '${sub}'\n\n${USAGE}`);
    return EX_USAGE;
  }
  const command = sub as Subcommand;
  const say = (msg: string): void => {
    ctx.stderr.write(`postern user ${command}: ${msg}\n`);
  };
  const usageError = (msg: string): number => {
    say(msg);
    ctx.stderr.write(`\n${HELP[command]}`);
    return EX_USAGE;
  };

  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(command, rest);
  } catch (err) {
    return usageError(err instanceof Error ? err.message : String(err));
  }
  const { values, positionals } = parsed;
  if (values.help) {
    ctx.stdout.write(HELP[command]);
    return EXIT_OK;
  }

  const admin = ctx.admin ?? passwdFileAdmin(ctx.usersFile);
  try {
    if (command === 'list') {
      if (positionals.length > 0) return usageError('list takes no arguments');
      await list(ctx, admin, values.long === true);
      return EXIT_OK;
    }

    if (positionals.length !== 1) return usageError('expected exactly one user NAME');
    const name = positionals[0];
    const nameProblem = userNameProblem(name);
    if (nameProblem) {
      say(`invalid user name: ${nameProblem}`);
      return EXIT_FAILURE;
    }
    if (values.apop && values['no-apop']) return usageError('--apop and --no-apop exclude each other');

    // Check the user's presence before asking for a password, so a typo does not cost a password entry.
    // The change itself checks again under the file lock.
    const exists = (await admin.listUsers()).some((u) => u.name === name);
    switch (command) {
      case 'add': {
        if (exists) {
          say(`user '${name}' already exists`);
          return EXIT_FAILURE;
        }
        const password = await askPassword(ctx, name);
        await admin.addUser(name, password, {
          apopSecret: values.apop ? password : undefined,
          scramIterations: ctx.scramIterations,
          newFileOwner: ctx.newFileOwner,
        });
        ctx.stdout.write(`added user '${name}'${values.apop ? ' with an APOP/CRAM-MD5 shared secret' : ''}\n`);
        return EXIT_OK;
      }
      case 'passwd': {
        if (!exists) {
          say(`no user '${name}'`);
          return EXIT_FAILURE;
        }
        const password = await askPassword(ctx, name);
        const apopSecret = values.apop ? password : values['no-apop'] ? null : undefined;
        await admin.setPassword(name, password, { apopSecret, scramIterations: ctx.scramIterations });
        ctx.stdout.write(`changed the password of '${name}'\n`);
        return EXIT_OK;
      }
      case 'del': {
        if (!exists) {
          say(`no user '${name}'`);
          return EXIT_FAILURE;
        }
        await admin.deleteUser(name);
        ctx.stdout.write(`deleted user '${name}' (the mailbox was not touched)\n`);
        return EXIT_OK;
      }
    }
  } catch (err) {
    if (err instanceof PasswdFileError || err instanceof SecretInputError) {
      say(err.message);
    } else {
      // File system errors name the path and the cause (EACCES, ENOSPC, …); nothing here holds a password.
      say(err instanceof Error ? err.message : String(err));
    }
    return EXIT_FAILURE;
  }
}

function parse(command: Subcommand, args: string[]) {
  return parseArgs({
    args,
    strict: true,
    allowPositionals: true,
    options: {
      help: { type: 'boolean', short: 'h' },
      ...(command === 'add' || command === 'passwd' ? { apop: { type: 'boolean' } } : {}),
      ...(command === 'passwd' ? { 'no-apop': { type: 'boolean' } } : {}),
      ...(command === 'list' ? { long: { type: 'boolean', short: 'l' } } : {}),
    },
  });
}

async function askPassword(ctx: UserCommandContext, name: string): Promise<string> {
  const password = await readSecret(`Password for ${name}: `, {
    stdin: ctx.stdin,
    stderr: ctx.stderr,
    confirm: true,
  });
  const problem = passwordProblem(password);
  if (problem) throw new SecretInputError('EMPTY', problem);
  return password;
}

async function list(ctx: UserCommandContext, admin: UserAdmin, long: boolean): Promise<void> {
  const users = await admin.listUsers();
  if (!long) {
    for (const u of users) ctx.stdout.write(`${u.name}\n`);
    return;
  }
  const rows = [
    ['NAME', 'SCHEME', 'APOP', 'MAILBOX', 'STATUS'],
    ...users.map((u) => [
      u.name,
      u.scheme || '?',
      u.hasSharedSecret ? 'yes' : 'no',
      u.mailboxId ?? '-',
      u.problem === null ? 'ok' : `cannot log in: ${u.problem}`,
    ]),
  ];
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  for (const r of rows) {
    ctx.stdout.write(`${r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]))).join('  ')}\n`);
  }
}
