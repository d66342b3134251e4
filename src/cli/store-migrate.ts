/**
 * `postern store migrate --from maildir:ROOT --to postgres:URL` (and back, or between two of either): copies
 * every mailbox, keeping each message's UIDL, so POP3 clients that leave mail on the server download nothing
 * twice, and the session state (LOGIN-DELAY, EXPIRE first-retrieval times, re-keyed by UIDL).
 *
 * Re-runnable and resuming: a message whose UIDL the target mailbox already has is skipped, so a run that
 * stopped half-way (or a second run after new mail came) copies only what is missing. Each message is
 * streamed and stored durably (the target's normal delivery path) before the next one. The source is read
 * under its maildrop lock, so a POP3 session cannot delete under the copy; a mailbox in use is reported and
 * left for the next run. Nothing is ever deleted from the source.
 */
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { Config } from '../config/config.ts';
import { PostgresStore } from '../storage/postgres/store.ts';
import { isStorageError, type Maildrop, type MailStore } from '../storage/types.ts';
import { Databases, storeFor } from './backends.ts';

export const STORE_HELP = `Usage: postern store migrate --from SOURCE --to TARGET [--mailbox ID]... [--config FILE]

Copies every mailbox of SOURCE into TARGET, keeping UIDLs and session state. Safe to re-run: messages the
target already has (same UIDL) are skipped, so an interrupted run resumes. The source is not changed.

  SOURCE, TARGET   maildir:ROOT (Maildirs at ROOT/<[storage] layout>) or postgres:URL (postgres://…)
  --mailbox ID     only this mailbox (repeatable)

Run \`postern db migrate\` on a PostgreSQL target first. Mailboxes in use by a POP3 session are skipped
and reported (exit code 75): run again later.
`;

export interface StoreIo {
  readonly stdout: NodeJS.WritableStream;
  readonly stderr: NodeJS.WritableStream;
  readonly config: () => Config;
}

class EndpointError extends Error {}

type Endpoint = { store: MailStore; list(): Promise<string[]>; label: string };

async function endpointOf(spec: string, config: Config): Promise<Endpoint> {
  const colon = spec.indexOf(':');
  const kind = colon < 0 ? spec : spec.slice(0, colon);
  const where = colon < 0 ? '' : spec.slice(colon + 1);
  if (kind === 'maildir' && where) {
    const layout = config.storage.layout;
    // A Maildir tree needs no database connection: the Databases given is never used.
    const store = await storeFor({ ...config.storage, driver: 'maildir', root: where }, new Databases());
    return {
      store,
      label: `maildir:${where}`,
      async list() {
        let names: string[];
        try {
          names = await readdir(where);
        } catch {
          return [];
        }
        const out: string[] = [];
        for (const n of names.sort()) {
          if (n.startsWith('.')) continue;
          const ok = await stat(join(where, layout.replaceAll('%u', n), 'cur')).then(
            (s) => s.isDirectory(),
            () => false,
          );
          if (ok) out.push(n);
        }
        return out;
      },
    };
  }
  if (kind === 'postgres' && /^postgres(ql)?:\/\//.test(where)) {
    const store = await PostgresStore.open({ url: where, poolSize: 4 });
    return { store, label: 'postgres', list: () => store.listMailboxes() };
  }
  throw new EndpointError(`"${spec}" is not maildir:ROOT or postgres:postgres://…`);
}

export interface MigrateCounts {
  mailboxes: number;
  copied: number;
  skipped: number;
  failed: number;
  busy: number;
}

/** Copies the mailboxes; reports one line per mailbox to `say`. */
export async function migrateStores(
  from: Endpoint,
  to: Endpoint,
  only: readonly string[],
  say: (line: string) => void,
): Promise<MigrateCounts> {
  const counts: MigrateCounts = { mailboxes: 0, copied: 0, skipped: 0, failed: 0, busy: 0 };
  const ids = only.length > 0 ? only : await from.list();
  for (const id of ids) {
    let src: Maildrop;
    try {
      src = await from.store.openMaildrop(id);
    } catch (e) {
      if (isStorageError(e, 'inuse')) {
        counts.busy++;
        say(`${id}: in use by a POP3 session, skipped (run again later)`);
        continue;
      }
      throw e;
    }
    try {
      const dst = await to.store.openMaildrop(id);
      try {
        const have = new Set(dst.messages.map((m) => m.uidl));
        let copied = 0;
        let failed = 0;
        for (const m of src.messages) {
          if (have.has(m.uidl)) {
            counts.skipped++;
            continue;
          }
          try {
            await to.store.deliver(id, await src.open(m.id), { uidl: m.uidl });
            have.add(m.uidl);
            copied++;
          } catch (e) {
            if (!isStorageError(e, 'perm') && !isStorageError(e, 'notfound')) throw e;
            failed++;
            say(`${id}: message ${m.uidl} not copied: ${(e as Error).message}`);
          }
        }
        counts.copied += copied;
        counts.failed += failed;
        // Session state, with message ids translated through the UIDLs (ids differ between stores).
        const state = await src.readState();
        if (state.lastLogin !== undefined || state.retrieved !== undefined) {
          const after = await to.store.openMaildrop(id, { lock: false });
          const idOf = new Map(after.messages.map((x) => [x.uidl, x.id]));
          await after.release();
          const uidlOf = new Map(src.messages.map((x) => [x.id, x.uidl]));
          const retrieved: Record<string, number> = {};
          for (const [msgId, t] of Object.entries(state.retrieved ?? {})) {
            const target = idOf.get(uidlOf.get(msgId) ?? '');
            if (target !== undefined) retrieved[target] = t;
          }
          const old = await dst.readState();
          await dst.writeState({
            lastLogin: Math.max(old.lastLogin ?? 0, state.lastLogin ?? 0) || undefined,
            retrieved: { ...(old.retrieved ?? {}), ...retrieved },
          });
        }
        counts.mailboxes++;
        say(
          `${id}: ${copied} copied, ${src.messages.length - copied - failed} already there${failed ? `, ${failed} failed` : ''}`,
        );
      } finally {
        await dst.release();
      }
    } finally {
      await src.release();
    }
  }
  return counts;
}

export async function runStoreCommand(args: string[], io: StoreIo): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      from: { type: 'string' },
      to: { type: 'string' },
      mailbox: { type: 'string', multiple: true },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    io.stdout.write(STORE_HELP);
    return 0;
  }
  if (positionals[0] !== 'migrate' || positionals.length !== 1 || !values.from || !values.to) {
    io.stderr.write(`postern store: expected "migrate --from SOURCE --to TARGET"\n\n${STORE_HELP}`);
    return 64;
  }
  const config = io.config();
  let from: Endpoint | undefined;
  let to: Endpoint | undefined;
  try {
    from = await endpointOf(values.from, config);
    to = await endpointOf(values.to, config);
    const c = await migrateStores(from, to, values.mailbox ?? [], (line) => io.stdout.write(`${line}\n`));
    io.stdout.write(
      `${c.mailboxes} mailboxes, ${c.copied} messages copied, ${c.skipped} already there, ${c.failed} failed, ${c.busy} mailboxes in use\n`,
    );
    return c.failed > 0 ? 1 : c.busy > 0 ? 75 : 0;
  } catch (e) {
    io.stderr.write(`postern store migrate: ${(e as Error).message}\n`);
    return e instanceof EndpointError ? 64 : isStorageError(e, 'perm') ? 1 : 75;
  } finally {
    await from?.store.close();
    await to?.store.close();
  }
}
