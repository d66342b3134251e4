/**
 * A private, throwaway Dovecot POP3 server on 127.0.0.1 for interop tests of the client: its own config,
 * base_dir, passwd-file, Maildir tree and certificate in a temp folder; ports picked free; stopped by its pid.
 * Never touches a system instance or ports 110/995.
 *
 * What was learnt getting it to run (Dovecot 2.3): see the comments in the config below. Tests skip, with the
 * reason, when /usr/sbin/dovecot is not installed (CI installs dovecot-core and dovecot-pop3d via .ci/run).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chownSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { skipUnlessCi } from './peers.ts';
import { freePort } from './realServer.ts';
import { testCert } from './server.ts';
import { removeTempDir, tempDir } from './tmp.ts';

export const DOVECOT = '/usr/sbin/dovecot';

/** Why Dovecot tests cannot run here, or undefined when they can. */
export function dovecotSkipReason(): string | false {
  if (!existsSync(DOVECOT)) return skipUnlessCi(`${DOVECOT} not found (apt-get install dovecot-core dovecot-pop3d)`);
  return skipUnlessCi(process.getuid?.() !== 0 && 'Dovecot test instance needs root (it serves mail as uid nobody)');
}

export interface DovecotInstance {
  dir: string;
  /** Plain port with STLS. */
  port: number;
  /** Implicit TLS port. */
  tlsPort: number;
  /** PEM of the self-signed certificate the instance uses. */
  cert: string;
  /** Puts a message into the user's Maildir (new/), as a delivery would. Returns the file path. */
  addMessage(user: string, content: Buffer | string): string;
  /** Number of messages in the user's Maildir (new/ and cur/). */
  count(user: string): number;
  logs(): string;
  stop(): Promise<void>;
}

const NOBODY = 65534;
const NOGROUP = 65534;
const WAIT_MS = 15_000;

async function waitForPort(port: number, deadline: number, proc: ChildProcess, logs: () => string): Promise<void> {
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect({ host: '127.0.0.1', port });
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (proc.exitCode !== null) throw new Error(`dovecot exited with ${proc.exitCode}:\n${logs()}`);
    if (Date.now() > deadline) throw new Error(`dovecot did not listen on ${port} within ${WAIT_MS} ms:\n${logs()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * `users`: name → password, stored as {PLAIN} (which makes APOP, CRAM-MD5 and SCRAM possible). They are
 * written before Dovecot starts: passwd-file is re-read on change, but a change within the same second as the
 * last read can go unnoticed, so adding users later is flaky.
 */
export async function startDovecot(opts: {
  users: Record<string, string>;
  extraConfig?: string;
}): Promise<DovecotInstance> {
  // Dovecot's unprivileged processes (dovenull, dovecot, nobody) must be able to reach their files.
  const dir = tempDir('dovecot', { reachable: true });
  for (const d of ['run', 'state', 'mail', 'home']) mkdirSync(join(dir, d), { mode: 0o755 });
  chownSync(join(dir, 'mail'), NOBODY, NOGROUP);
  chownSync(join(dir, 'home'), NOBODY, NOGROUP);
  const { cert, key } = await testCert();
  writeFileSync(join(dir, 'cert.pem'), cert);
  writeFileSync(join(dir, 'key.pem'), key, { mode: 0o600 });
  const passwd = join(dir, 'passwd');
  writeFileSync(
    passwd,
    Object.entries(opts.users)
      .map(([u, pw]) => `${u}:{PLAIN}${pw}::::::\n`)
      .join(''),
    { mode: 0o644 },
  );
  const port = await freePort();
  const tlsPort = await freePort();
  const log = join(dir, 'dovecot.log');
  const conf = join(dir, 'dovecot.conf');
  writeFileSync(
    conf,
    `# Private test instance; see test/helpers/dovecot.ts.
instance_name = postern-test-${randomBytes(4).toString('hex')}
base_dir = ${dir}/run
state_dir = ${dir}/state
protocols = pop3
listen = 127.0.0.1
log_path = ${log}
info_log_path = ${log}
auth_verbose = yes
# Failed logins are delayed 2 s by default; the tests fail logins on purpose.
auth_failure_delay = 0
ssl = yes
ssl_cert = <${dir}/cert.pem
ssl_key = <${dir}/key.pem
ssl_min_protocol = TLSv1.2
# The STLS port must accept passwords in the clear only for the tests that ask for it explicitly.
disable_plaintext_auth = no
auth_mechanisms = plain login cram-md5 apop scram-sha-256
# {PLAIN} passwords let Dovecot compute APOP, CRAM-MD5 and SCRAM answers.
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u ${passwd}
}
userdb {
  driver = passwd-file
  args = username_format=%u ${passwd}
  default_fields = uid=nobody gid=nogroup home=${dir}/home/%u
}
mail_location = maildir:${dir}/mail/%u/Maildir
first_valid_uid = 1
first_valid_gid = 1
pop3_uidl_format = %08Xu%08Xv
# A second session of a locked user fails at once with [IN-USE] instead of waiting (when pop3_lock_session = yes).
mail_max_lock_timeout = 1s
service pop3-login {
  inet_listener pop3 {
    address = 127.0.0.1
    port = ${port}
  }
  inet_listener pop3s {
    address = 127.0.0.1
    port = ${tlsPort}
    ssl = yes
  }
}
# The default chroot needs a root-owned directory tree a temp folder does not give. The auth penalty (up to
# 15 s more per failed login from one IP) is turned off the documented way, by hiding its socket: the tests fail
# logins on purpose.
service anvil {
  chroot =
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}
${opts.extraConfig ?? ''}
`,
  );
  const maildir = (user: string) => join(dir, 'mail', user, 'Maildir');
  const mkOwned = (p: string) => {
    if (!existsSync(p)) {
      mkdirSync(p, { mode: 0o700 });
      chownSync(p, NOBODY, NOGROUP);
    }
  };
  for (const user of Object.keys(opts.users)) {
    mkOwned(join(dir, 'home', user));
    mkOwned(join(dir, 'mail', user));
    mkOwned(maildir(user));
    for (const sub of ['tmp', 'new', 'cur']) mkOwned(join(maildir(user), sub));
  }
  const proc = spawn(DOVECOT, ['-F', '-c', conf], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  proc.stdout?.on('data', (d: Buffer) => {
    output += d.toString();
  });
  proc.stderr?.on('data', (d: Buffer) => {
    output += d.toString();
  });
  const logs = () => `${output}${existsSync(log) ? readFileSync(log, 'utf8') : ''}`;
  const stop = async (): Promise<void> => {
    if (proc.exitCode === null && proc.signalCode === null) {
      const exited = new Promise<void>((r) => proc.once('exit', () => r()));
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    }
    removeTempDir(dir);
  };
  try {
    const deadline = Date.now() + WAIT_MS;
    await waitForPort(port, deadline, proc, logs);
    await waitForPort(tlsPort, deadline, proc, logs);
  } catch (err) {
    await stop();
    throw err;
  }
  let seq = 0;
  return {
    dir,
    port,
    tlsPort,
    cert,
    addMessage(user, content) {
      const name = `${Math.floor(Date.now() / 1000)}.P${process.pid}Q${String(++seq).padStart(8, '0')}.postern-test`;
      const file = join(maildir(user), 'new', name);
      writeFileSync(file, content, { mode: 0o600 });
      chownSync(file, NOBODY, NOGROUP);
      return file;
    },
    count(user) {
      const ls = (sub: string) => {
        const p = join(maildir(user), sub);
        return existsSync(p) ? readdirNames(p).length : 0;
      };
      return ls('new') + ls('cur');
    },
    logs,
    stop,
  };
}

function readdirNames(p: string): string[] {
  return readdirSync(p).filter((n) => !n.startsWith('.'));
}
