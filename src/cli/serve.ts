import { readFileSync } from 'node:fs';
import { hostname as osHostname } from 'node:os';
import type { Logger } from 'pino';
import { PasswdFileAuthenticator } from '../auth/passwd.ts';
import type { Config } from '../config/config.ts';
import { Pop3Server, type TlsMaterial } from '../server/server.ts';
import { MaildirStore } from '../storage/maildir/store.ts';

export interface Running {
  readonly server: Pop3Server;
  readonly store: MaildirStore;
  readonly authenticator: PasswdFileAuthenticator;
  /** Re-reads the certificate and the user file (SIGHUP); open sessions are not touched. */
  reload(): Promise<void>;
  stop(graceMs?: number): Promise<void>;
}

function readTls(config: Config): TlsMaterial | undefined {
  if (!config.tls) return undefined;
  return {
    cert: readFileSync(config.tls.cert),
    key: readFileSync(config.tls.key),
    minVersion: config.tls.minVersion,
  };
}

/** Builds the store, the user database and the server from a validated config, and starts listening. */
export async function startServer(config: Config, logger: Logger): Promise<Running> {
  const store = new MaildirStore({ root: config.storage.root, layout: config.storage.layout });
  const authenticator = await PasswdFileAuthenticator.load(config.auth.usersFile);
  const server = new Pop3Server({
    store,
    authenticator,
    logger,
    limits: config.limits,
    hostname: config.server.hostname ?? osHostname(),
    greeting: config.server.greeting,
    implementation: config.server.implementation,
    allowPlaintextAuth: config.server.allowPlaintextAuth,
    loopbackIsSecure: config.server.loopbackIsSecure,
    tls: readTls(config),
  });
  await server.listen(config.listen);
  return {
    server,
    store,
    authenticator,
    async reload() {
      const tls = readTls(config);
      if (tls) server.setTls(tls);
      await authenticator.reload();
      logger.info('reloaded certificate and users');
    },
    async stop(graceMs) {
      await server.close(graceMs);
      await store.close();
    },
  };
}

/** Runs until SIGTERM/SIGINT; SIGHUP reloads. Returns the exit code. */
export async function serveForever(config: Config, logger: Logger): Promise<number> {
  const running = await startServer(config, logger);
  return new Promise((resolve) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      logger.info({ signal, sessions: running.server.sessionCount }, 'shutting down');
      running.stop().then(
        () => {
          logger.info('stopped');
          logger.flush();
          resolve(0);
        },
        (err) => {
          logger.error({ err }, 'shutdown failed');
          logger.flush();
          resolve(1);
        },
      );
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
    process.on('SIGHUP', () => {
      running.reload().catch((err) => logger.error({ err }, 'reload failed'));
    });
  });
}
