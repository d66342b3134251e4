/**
 * The LMTP listener (RFC 2033) on a TCP port or a Unix socket, built on nodemailer's smtp-server in LMTP mode.
 *
 * - RCPT TO: the address must name a user (550 5.1.1 otherwise) whose mailbox can take the message (452 4.2.2
 *   or 552 5.2.2 when it is full or the declared SIZE= does not fit; which one is `[quota] tempfail`).
 * - DATA: the message streams into every accepted recipient's mailbox at once (agent.ts), and the server
 *   answers once per accepted RCPT, in RCPT order (RFC 2033 §4.2): 250 only after that copy is durable,
 *   452/552 over quota, 451 4.3.0 on a transient store error. Return-Path and Delivered-To are added on the way.
 * - Recipients are kept as accepted, one entry per 250 to RCPT (see `accepted`): smtp-server merges addresses
 *   that differ only by case, but user names are case-sensitive (`alice` and `Alice` are two users), and each
 *   accepted RCPT is owed its own reply. A repeated identical address gets one copy and the same reply for
 *   every time it was accepted.
 * - No AUTH and no STARTTLS: LMTP is for the MTA on this machine or a trusted network (RFC 2033 §1: "LMTP
 *   should not be used over wide area networks"); bind it to a Unix socket or a private address.
 */

import cluster from 'node:cluster';
import { chmod, lstat, unlink } from 'node:fs/promises';
import { connect } from 'node:net';
import { format } from 'node:util';
import type { Logger } from 'pino';
import {
  SMTPServer,
  type SMTPServerAddress,
  type SMTPServerDataResult,
  type SMTPServerDataStream,
  type SMTPServerSession,
} from 'smtp-server';
import type { DeliveryAgent, DeliveryOutcome, Recipient } from './agent.ts';
import type { RecipientLookup } from './recipients.ts';

/** The LMTP listener's settings (`[lmtp]` in the configuration maps onto these). */
export interface LmtpConfig {
  /** Exactly one of `port` (with `address`) and `socket` is set. */
  readonly address: string;
  readonly port?: number;
  readonly socket?: string;
  readonly socketMode: number;
  readonly hostname?: string;
  /** Octets; 0 means no limit. */
  readonly maxMessageSize: number;
  readonly maxRecipients: number;
  readonly maxConnections: number;
  readonly idleTimeoutMs: number;
  readonly recipientLookup: RecipientLookup;
  readonly recipientDelimiter: string;
}

export interface LmtpListenerOptions {
  readonly agent: DeliveryAgent;
  readonly config: LmtpConfig;
  /** Name in the greeting and LHLO reply. */
  readonly hostname: string;
  /** Over quota is temporary (452) rather than permanent (552). */
  readonly quotaTempfail: boolean;
  readonly logger: Logger;
  /** How long open connections get on close() before they are told 421 and dropped. */
  readonly closeGraceMs?: number;
}

/**
 * smtp-server's bunyan-style logger calls (`logger.info(fields, format, ...args)`) routed to pino at debug
 * level, whatever level the library chose: it logs every connection and command at info. Its `protocol` field
 * is dropped, since ours says `protocol: 'lmtp'` already and pino would write the key twice.
 */
function libraryLogger(log: Logger): Record<string, (...args: unknown[]) => void> {
  const write = (fields: unknown, ...rest: unknown[]) => {
    if (!log.isLevelEnabled('debug')) return;
    const { protocol: _protocol, component: _component, ...data } = (fields ?? {}) as Record<string, unknown>;
    log.debug({ smtpServer: data }, format(...rest));
  };
  return { trace: write, debug: write, info: write, warn: write, error: write, fatal: write };
}

/** An error that smtp-server turns into a reply with this code (the enhanced code follows from it). */
function reply(code: number, text: string): Error {
  return Object.assign(new Error(text), { responseCode: code });
}

/**
 * The RCPTs of one transaction exactly as accepted, keyed by the envelope object (smtp-server makes a new one
 * for each transaction: after MAIL FROM, RSET and DATA). Its own `envelope.rcptTo` keeps one entry per
 * lower-cased address, which would lose `alice` when `Alice` follows and owe the client replies it never sends.
 */
const accepted = new WeakMap<object, SMTPServerAddress[]>();

export class LmtpListener {
  private readonly server: SMTPServer;
  private readonly agent: DeliveryAgent;
  private readonly log: Logger;
  /** Where it listens, once listening: a TCP port or a socket path. */
  port: number | undefined;
  socketPath: string | undefined;

  constructor(private readonly options: LmtpListenerOptions) {
    const { config } = options;
    this.agent = options.agent;
    const log = options.logger.child({ protocol: 'lmtp' });
    this.log = log;
    this.server = new SMTPServer({
      lmtp: true,
      name: options.hostname,
      banner: 'Postern LMTP ready',
      // RFC 2033 and RFC 1870: SIZE is advertised, and a message over it is refused (552 5.3.4) by
      // smtp-server for every recipient; the agent also stops writing it as soon as it goes over.
      size: config.maxMessageSize > 0 ? config.maxMessageSize : undefined,
      rejectOversized: config.maxMessageSize > 0,
      maxClients: config.maxConnections,
      maxRecipients: config.maxRecipients,
      socketTimeout: config.idleTimeoutMs,
      closeTimeout: options.closeGraceMs ?? 30_000,
      disabledCommands: ['AUTH', 'STARTTLS'],
      authOptional: true,
      hideSTARTTLS: true,
      hideDSN: true,
      hideENHANCEDSTATUSCODES: false,
      // The MTA is on this machine or a trusted network; a DNS lookup per connection only adds delay.
      disableReverseLookup: true,
      // smtp-server's own lines (connections, every command) go to our logger at debug; the transaction
      // summary below is the one line per delivery at info.
      logger: libraryLogger(log),
      onRcptTo: (address, session, callback) => {
        this.onRcptTo(address, session).then(callback, (err: unknown) => {
          log.error({ err }, 'RCPT failed');
          callback(reply(451, 'Temporary local error, try again later'));
        });
      },
      onData: (stream, session, callback) => {
        this.onData(stream, session).then(
          (results) => callback(null, results),
          (err: unknown) => {
            log.error({ err }, 'DATA failed');
            callback(reply(451, 'Temporary local error, try again later'));
          },
        );
      },
    });
    this.server.on('error', (err) => log.error({ err }, 'LMTP server error'));
  }

  private async onRcptTo(address: SMTPServerAddress, session: SMTPServerSession): Promise<Error | null> {
    const envelope = session.envelope;
    const list = accepted.get(envelope) ?? [];
    // smtp-server counts max_recipients over its merged list, so repeats would slip past it: count them here.
    const max = this.options.config.maxRecipients;
    if (max > 0 && list.length >= max) return reply(452, 'Error: too many recipients');
    const rcpt = await this.agent.resolve(address.address);
    if (rcpt === null) {
      this.agent.noUser(address.address);
      return reply(550, `<${address.address}>: no such user here`);
    }
    const mailFrom = session.envelope.mailFrom;
    const args = mailFrom ? mailFrom.args : false;
    const declared = args ? Number(args.SIZE) : 0;
    const refused = await this.agent.precheck(rcpt, Number.isSafeInteger(declared) ? declared : 0);
    if (refused !== null) return this.errorOf(refused);
    // smtp-server answers 250 once this resolves without an error: from here on the RCPT is owed a reply.
    list.push(address);
    accepted.set(envelope, list);
    return null;
  }

  private async onData(stream: SMTPServerDataStream, session: SMTPServerSession): Promise<SMTPServerDataResult[]> {
    const rcpts = accepted.get(session.envelope) ?? session.envelope.rcptTo;
    // smtp-server sends as many replies as envelope.rcptTo has entries when it answers for us (a message over
    // SIZE, an error from this handler): make that one per accepted RCPT too.
    session.envelope.rcptTo = [...rcpts];
    // One copy per distinct address, in the order first accepted; repeats share its reply.
    const addresses = [...new Set(rcpts.map((r) => r.address))];
    // Looked up again: the transaction may have waited, and a user removed meanwhile gets no mail.
    const resolved = await Promise.all(addresses.map((a) => this.agent.resolve(a)));
    const recipients = resolved.filter((r): r is Recipient => r !== null);
    const mailFrom = session.envelope.mailFrom;
    const max = this.options.config.maxMessageSize;
    const started = Date.now();
    const outcomes = await this.agent.deliver(stream, {
      sender: mailFrom ? mailFrom.address : undefined,
      recipients,
      maxBytes: max > 0 ? max : undefined,
    });
    // The one info line per LMTP transaction (the agent logs each recipient at debug, failures at warn).
    this.log.info(
      {
        session: session.id,
        remote: session.remoteAddress || undefined,
        from: mailFrom ? mailFrom.address : undefined,
        recipients: addresses.length,
        delivered: outcomes.filter((o) => o.status === 'delivered').length,
        ids: outcomes.flatMap((o) => (o.status === 'delivered' && o.id ? [o.id] : [])),
        size: outcomes.find((o) => o.size !== undefined)?.size,
        ms: Date.now() - started,
      },
      'LMTP transaction',
    );
    let next = 0;
    const byAddress = new Map<string, SMTPServerDataResult>();
    resolved.forEach((r, i) => {
      if (r === null) {
        this.agent.noUser(addresses[i]);
        byAddress.set(addresses[i], reply(550, `<${addresses[i]}>: no such user here`));
        return;
      }
      const o = outcomes[next++];
      byAddress.set(
        addresses[i],
        o.status === 'delivered' ? `<${o.recipient.address}> delivered as ${o.id}` : this.errorOf(o),
      );
    });
    return rcpts.map((r) => byAddress.get(r.address) as SMTPServerDataResult);
  }

  private errorOf(o: DeliveryOutcome): Error {
    const who = `<${o.recipient.address}>`;
    switch (o.status) {
      case 'quota':
        return reply(this.options.quotaTempfail ? 452 : 552, `${who}: ${o.reason}`);
      case 'perm':
        return reply(554, `${who}: ${o.reason}`);
      default:
        // The reason may name a file system error; the log has it, the MTA's queue needs only the code.
        return reply(451, `${who}: temporary local error, try again later`);
    }
  }

  /** Starts listening; a stale Unix socket file (no one accepting on it) is replaced. */
  async listen(): Promise<void> {
    const { config } = this.options;
    if (config.socket !== undefined) {
      const path = config.socket;
      await removeStaleSocket(path);
      await new Promise<void>((resolve, reject) => {
        this.server.server.once('error', reject);
        this.server.listen(path, () => {
          this.server.server.off('error', reject);
          resolve();
        });
      });
      await chmod(path, config.socketMode);
      this.socketPath = path;
      this.options.logger.info({ socket: path }, 'LMTP listening');
      return;
    }
    await new Promise<void>((resolve, reject) => {
      this.server.server.once('error', reject);
      this.server.listen(config.port ?? 24, config.address, () => {
        this.server.server.off('error', reject);
        resolve();
      });
    });
    const addr = this.server.server.address();
    this.port = typeof addr === 'object' && addr !== null ? addr.port : config.port;
    this.options.logger.info({ address: config.address, port: this.port }, 'LMTP listening');
  }

  /** Stops accepting; open connections get the grace period, then 421. Removes the socket file. */
  async close(): Promise<void> {
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    if (this.socketPath !== undefined) await unlink(this.socketPath).catch(() => {});
  }
}

/**
 * A socket file left by a process that died is removed; one that something still accepts on is not (two
 * servers on one socket would split the mail between them), and neither is a file that is not a socket.
 */
async function removeStaleSocket(path: string): Promise<void> {
  // Cluster workers share one listening socket through the primary: only the first worker cleans up, and a
  // live socket is the one the cluster already listens on.
  if (cluster.isWorker && cluster.worker?.id !== 1) return;
  try {
    const st = await lstat(path);
    if (!st.isSocket()) throw new Error(`${path} exists and is not a socket`);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  const alive = await new Promise<boolean>((resolve) => {
    const s = connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
  if (alive) {
    if (cluster.isWorker) return;
    throw new Error(`${path} is in use by another process`);
  }
  await unlink(path);
}
