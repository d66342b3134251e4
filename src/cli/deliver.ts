/**
 * `postern deliver`: one message on stdin into one user's mailbox, through the same pipeline as LMTP (quota,
 * Return-Path and Delivered-To, tmp → fsync → new), for MTAs that deliver by running a command: Postfix's
 * `mailbox_command` or a pipe(8) transport, Exim's pipe transport. The exit code follows sysexits.h so the MTA
 * knows whether to retry (75) or bounce (64, 67, 73); the reason goes to stderr, which MTAs put in the bounce.
 */
import type { Readable } from 'node:stream';
import { parseArgs } from 'node:util';
import type { Config } from '../config/config.ts';
import { DeliveryAgent } from '../delivery/agent.ts';
import { createLogger } from '../observability/log.ts';
import type { MailStore } from '../storage/types.ts';
import { Databases, openDeliveryUsers, openMailStore } from './backends.ts';
import { EX_CANTCREAT, EX_NOUSER, EX_OK, EX_TEMPFAIL, EX_USAGE } from './sysexits.ts';

export const DELIVER_HELP = `Usage: postern deliver -u USER [-f SENDER] [-a ADDRESS] [--no-headers] [--config FILE]

Reads one message on standard input and stores it in USER's mailbox (durably, before exiting 0). USER is a
user name or an address, looked up as [lmtp] recipient_lookup and recipient_delimiter say. A leading mbox
"From " line (as MTAs prepend when piping) is dropped.

  -u, --user USER        Recipient user (required)
  -f, --from SENDER      Envelope sender, written as Return-Path: <SENDER> ("" for the null sender)
  -a, --address ADDRESS  Recipient address for Delivered-To (default: USER)
  -n, --no-headers       Add neither Return-Path nor Delivered-To (when the MTA already added them)
  -c, --config FILE      Config file

Exit codes (sysexits.h): 0 delivered; 64 usage error; 67 no such user; 73 over quota or refused for good;
75 temporary failure, try again (also over quota when [quota] tempfail = true, and config errors).

Postfix:  mailbox_command = /usr/bin/postern deliver -c /etc/postern/postern.toml -n -u "$USER"
Exim:     command = /usr/bin/postern deliver -u $local_part@$domain -f $sender_address
`;

export interface DeliverIo {
  readonly stdin: NodeJS.ReadableStream;
  readonly stdout: NodeJS.WritableStream;
  readonly stderr: NodeJS.WritableStream;
  /** Loads the config; called once the arguments are known to be valid. */
  readonly config: () => Config;
}

export async function runDeliver(args: string[], io: DeliverIo): Promise<number> {
  let values: { user?: string; from?: string; address?: string; 'no-headers'?: boolean; help?: boolean };
  try {
    ({ values } = parseArgs({
      args,
      options: {
        user: { type: 'string', short: 'u' },
        from: { type: 'string', short: 'f' },
        address: { type: 'string', short: 'a' },
        'no-headers': { type: 'boolean', short: 'n' },
        help: { type: 'boolean', short: 'h' },
      },
      allowPositionals: false,
    }));
  } catch (err) {
    io.stderr.write(`postern deliver: ${(err as Error).message}\n${DELIVER_HELP}`);
    return EX_USAGE;
  }
  if (values.help) {
    io.stdout.write(DELIVER_HELP);
    return EX_OK;
  }
  if (!values.user) {
    io.stderr.write(`postern deliver: -u USER is required\n${DELIVER_HELP}`);
    return EX_USAGE;
  }
  const fail = (code: number, why: string): number => {
    io.stderr.write(`postern deliver: ${why}\n`);
    return code;
  };

  let config: Config;
  try {
    config = io.config();
  } catch (err) {
    // A broken config is the operator's to fix; the mail waits in the MTA's queue meanwhile.
    return fail(EX_TEMPFAIL, `config error: ${(err as Error).message}`);
  }
  // Logs go to stderr: stdout of a delivery command is not read, stderr ends up in the MTA's log or bounce.
  const logger = createLogger(config.log.level === 'info' ? 'warn' : config.log.level, process.stderr);
  const dbs = new Databases(logger);
  let store: MailStore;
  let users: Awaited<ReturnType<typeof openDeliveryUsers>>;
  try {
    store = await openMailStore(config, dbs);
    users = await openDeliveryUsers(config, dbs, (m) => logger.warn(m));
  } catch (err) {
    await dbs.close();
    logger.flush();
    return fail(EX_TEMPFAIL, `cannot open the store: ${(err as Error).message}`);
  }
  const agent = new DeliveryAgent({
    store,
    users,
    quotas: users,
    rules: config.lmtp ? { lookup: config.lmtp.recipientLookup, delimiter: config.lmtp.recipientDelimiter } : undefined,
    logger,
  });
  try {
    const recipient = await agent.resolve(values.user).catch((err: unknown) => {
      throw new Error(`cannot read the users file: ${(err as Error).message}`);
    });
    if (recipient === null) {
      io.stdin.resume(); // let the MTA finish writing rather than see EPIPE
      return fail(EX_NOUSER, `${values.user}: no such user`);
    }
    const [outcome] = await agent.deliver(io.stdin as Readable, {
      sender: values.from,
      recipients: [{ ...recipient, address: values.address ?? values.user }],
      traceHeaders: !values['no-headers'],
      stripFromLine: true,
    });
    switch (outcome.status) {
      case 'delivered':
        return EX_OK;
      case 'quota':
        return fail(config.quota.tempfail ? EX_TEMPFAIL : EX_CANTCREAT, `${values.user}: ${outcome.reason}`);
      case 'perm':
        return fail(EX_CANTCREAT, `${values.user}: ${outcome.reason}`);
      default:
        return fail(EX_TEMPFAIL, `${values.user}: temporary failure: ${outcome.reason}`);
    }
  } catch (err) {
    return fail(EX_TEMPFAIL, `temporary failure: ${(err as Error).message}`);
  } finally {
    await store.close();
    await dbs.close();
    logger.flush();
  }
}
