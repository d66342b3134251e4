/**
 * `postern mailbox stats|list|import|expire USER …`: what an operator needs to look into a mailbox and to move
 * mail in. stats, list and import take no session lock: stats and list read a snapshot (a POP3 session may be
 * open at the same time), and import delivers, as the MTA does, so it works while the user is connected.
 * expire deletes, so it takes the maildrop lock like a session and skips a mailbox in use.
 */

import { createReadStream } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { Config } from '../config/config.ts';
import { hasLimit } from '../delivery/quota.ts';
import { decodeFieldValue, headerField, readHeaderSection } from '../mail/headerFields.ts';
import { type MboxFormat, splitMbox } from '../mail/mbox.ts';
import { applyExpire, userPolicy } from '../server/policy.ts';
import { MaildirStore } from '../storage/maildir/store.ts';
import { isStorageError, type MailStore } from '../storage/types.ts';
import { Databases, openDeliveryUsers, openMailStore, openUserAdmin } from './backends.ts';
import { EX_NOUSER, EX_TEMPFAIL, EX_USAGE } from './sysexits.ts';

export const MAILBOX_HELP = `Usage: postern mailbox <command> USER [options] [--config FILE]

Commands:
  stats USER [--json]              Messages, octets and quota use of USER's mailbox
  list USER [--json]               One line per message, oldest first: number, UIDL, size, date, subject
                                   (read from the headers only)
  import USER SOURCE... [--format mboxrd|mboxo]
                                   Copy messages in from mbox files or Maildir directories (cur/ and new/),
                                   oldest first; each is stored durably, with a new UIDL. Quotas are not
                                   applied: importing is the operator's decision. Default format: mboxrd.

  expire USER | expire --all        Apply the EXPIRE policy ([policy] expire, or the user's expire= field)
                                   now, as a QUIT would: delete messages whose retention since their first
                                   retrieval has passed. For cron; a mailbox in use is skipped (exit 75).

USER is a user name from the users file. Exit codes: 0 ok, 64 usage, 67 no such user, 75 mailbox in use,
1 failure.
`;

export interface MailboxIo {
  readonly stdout: NodeJS.WritableStream;
  readonly stderr: NodeJS.WritableStream;
  readonly config: () => Config;
}

export async function runMailboxCommand(argv: string[], io: MailboxIo): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === '-h' || command === '--help' || command === 'help') {
    io.stdout.write(MAILBOX_HELP);
    return command === undefined ? EX_USAGE : 0;
  }
  const { values, positionals } = parseArgs({
    args: rest,
    options: {
      json: { type: 'boolean' },
      all: { type: 'boolean' },
      format: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    allowPositionals: true,
  });
  if (values.help) {
    io.stdout.write(MAILBOX_HELP);
    return 0;
  }
  const usage = (why: string): number => {
    io.stderr.write(`postern mailbox: ${why}\n\n${MAILBOX_HELP}`);
    return EX_USAGE;
  };
  const [user, ...sources] = positionals;
  if (!['stats', 'list', 'import', 'expire'].includes(command)) return usage(`unknown command "${command}"`);
  if (command === 'expire' && values.all) {
    if (user !== undefined) return usage('expire takes USER or --all, not both');
    return expireAll(io);
  }
  if (user === undefined) return usage('USER is required');
  if (command !== 'import' && sources.length > 0) return usage(`unexpected argument "${sources[0]}"`);
  if (command === 'import' && sources.length === 0) return usage('import needs at least one mbox file or Maildir');
  const format = values.format ?? 'mboxrd';
  if (format !== 'mboxrd' && format !== 'mboxo') return usage('--format must be mboxrd or mboxo');

  const config = io.config();
  const dbs = new Databases();
  // Users from the configured user database (the users file, or PostgreSQL).
  const users = await openDeliveryUsers(config, dbs, () => {}).catch(async (e: unknown) => {
    await dbs.close();
    throw e;
  });
  const principal = await users.lookup(user).catch(async (e: unknown) => {
    await dbs.close();
    throw e;
  });
  if (principal === null) {
    await dbs.close();
    io.stderr.write(`postern mailbox: ${user}: no such user\n`);
    return EX_NOUSER;
  }
  const store = await openMailStore(config, dbs);
  try {
    switch (command) {
      case 'stats':
        return await stats(store, principal.mailboxId, await users.quotaOf(user), values.json === true, io);
      case 'list':
        return await list(store, principal.mailboxId, values.json === true, io);
      case 'expire':
        return await expireUsers([user], io);
      default:
        return await importInto(store, principal.mailboxId, sources, format, io);
    }
  } finally {
    await store.close();
    await dbs.close();
  }
}

async function stats(
  store: MailStore,
  mailboxId: string,
  quota: { bytes: number; messages: number },
  json: boolean,
  io: MailboxIo,
): Promise<number> {
  const s = await store.stats(mailboxId);
  // A Maildir has a path to show; a database store has none.
  const path = store instanceof MaildirStore ? store.maildirPath(mailboxId) : undefined;
  if (json) {
    io.stdout.write(`${JSON.stringify({ mailbox: mailboxId, path, ...s, quota })}\n`);
    return 0;
  }
  const pct = (used: number, limit: number) =>
    limit > 0 ? ` of ${limit} (${((100 * used) / limit).toFixed(1)}%)` : '';
  const lines = [
    `mailbox   ${mailboxId}`,
    `path      ${path ?? '(in the database)'}`,
    `messages  ${s.messages}${pct(s.messages, quota.messages)}`,
    `octets    ${s.bytes}${pct(s.bytes, quota.bytes)}`,
    `quota     ${hasLimit(quota) ? `${quota.bytes || 'unlimited'} octets, ${quota.messages || 'unlimited'} messages` : 'none'}`,
  ];
  io.stdout.write(`${lines.join('\n')}\n`);
  return 0;
}

async function list(store: MailStore, mailboxId: string, json: boolean, io: MailboxIo): Promise<number> {
  const drop = await store.openMaildrop(mailboxId, { lock: false });
  try {
    let n = 0;
    for (const m of drop.messages) {
      n++;
      let date = '';
      let subject = '';
      try {
        const header = await readHeaderSection(await drop.open(m.id));
        date = decodeFieldValue(headerField(header, 'date') ?? '');
        subject = decodeFieldValue(headerField(header, 'subject') ?? '');
      } catch {
        // Gone since the snapshot (a POP3 session deleted it): list what is known.
      }
      if (json) {
        io.stdout.write(`${JSON.stringify({ msn: n, uidl: m.uidl, size: m.size, date, subject })}\n`);
      } else {
        io.stdout.write(`${n}\t${m.uidl}\t${m.size}\t${date}\t${subject.replace(/[\x00-\x1f\x7f]/g, ' ')}\n`);
      }
    }
    if (!json && n === 0) io.stderr.write('no messages\n');
    return 0;
  } finally {
    await drop.release();
  }
}

async function importInto(
  store: MailStore,
  mailboxId: string,
  sources: readonly string[],
  format: MboxFormat,
  io: MailboxIo,
): Promise<number> {
  let total = 0;
  for (const source of sources) {
    const st = await stat(source);
    let n = 0;
    if (st.isDirectory()) {
      for (const file of await maildirFiles(source)) {
        await store.deliver(mailboxId, createReadStream(file));
        n++;
      }
    } else {
      n = await splitMbox(createReadStream(source), format, async (m) => {
        await store.deliver(mailboxId, m.stream);
      });
    }
    io.stdout.write(`${source}: ${n} message${n === 1 ? '' : 's'} imported\n`);
    total += n;
  }
  if (sources.length > 1) io.stdout.write(`${total} messages imported\n`);
  return 0;
}

/** The messages of a Maildir (cur/ and new/, not tmp/), oldest first by the delivery time in their names. */
async function maildirFiles(dir: string): Promise<string[]> {
  const found: { path: string; key: number; name: string }[] = [];
  let sawFolder = false;
  for (const folder of ['cur', 'new']) {
    let names: string[];
    try {
      names = await readdir(join(dir, folder));
      sawFolder = true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw err;
    }
    for (const name of names) {
      if (name.startsWith('.')) continue;
      const key = Number.parseInt(name, 10);
      found.push({ path: join(dir, folder, name), key: Number.isNaN(key) ? 0 : key, name });
    }
  }
  if (!sawFolder) throw new Error(`${dir} is not a Maildir (no cur/ or new/)`);
  found.sort((a, b) => a.key - b.key || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return found.map((f) => f.path);
}

async function expireAll(io: MailboxIo): Promise<number> {
  const admin = new Databases();
  const users = await openUserAdmin(io.config(), admin)
    .then((a) => a.listUsers())
    .finally(() => admin.close());
  return expireUsers(
    users.filter((u) => u.problem === null).map((u) => u.name),
    io,
  );
}

/** Runs EXPIRE for each user under the maildrop lock; a mailbox in use is left for the next run. */
async function expireUsers(names: readonly string[], io: MailboxIo): Promise<number> {
  const config = io.config();
  const dbs = new Databases();
  const auth = await openDeliveryUsers(config, dbs, () => {});
  const store = await openMailStore(config, dbs);
  let code = 0;
  try {
    for (const name of names) {
      const principal = await auth.lookup(name);
      if (!principal) {
        io.stderr.write(`postern mailbox: ${name}: no such user\n`);
        code = EX_NOUSER;
        continue;
      }
      const { expire } = userPolicy(config.policy, principal.settings);
      if (expire === 'never') {
        io.stdout.write(`${name}: EXPIRE NEVER, nothing to do\n`);
        continue;
      }
      let drop: Awaited<ReturnType<MailStore['openMaildrop']>>;
      try {
        drop = await store.openMaildrop(principal.mailboxId);
      } catch (e) {
        if (isStorageError(e, 'inuse')) {
          io.stderr.write(`postern mailbox: ${name}: mailbox in use, skipped\n`);
          code = code || EX_TEMPFAIL;
          continue;
        }
        throw e;
      }
      try {
        const state = await drop.readState();
        const { expired, retrieved } = applyExpire(drop.messages, state, expire, Date.now());
        if (expired.size > 0) await drop.commit([...expired].map((i) => drop.messages[i].id));
        await drop.writeState({ ...state, retrieved });
        io.stdout.write(`${name}: ${expired.size} expired, ${drop.messages.length - expired.size} left\n`);
      } finally {
        await drop.release();
      }
    }
  } finally {
    await store.close();
    await dbs.close();
  }
  return code;
}
