/**
 * Soak: password guessing from one address, by attackers that wait for every answer and by attackers that
 * hang up as soon as no answer comes at once, on many connections, for USER/PASS, APOP and every SASL
 * mechanism that checks a credential; and unknown-vs-known user indistinguishability (reply text, timing
 * within noise, SCRAM parameters) for every mechanism. Real users file (argon2id, SCRAM keys, APOP secret).
 *
 * Short (npm test): a 150 ms penalty for a few seconds. Long (SOAK=1): the shipped 2 s → 15 s penalty, 20
 * connections per attacker kind, one minute: the figure to compare with Dovecot's ~80 guesses a minute.
 */
import assert from 'node:assert/strict';
import { createHash, createHmac } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { addUser, PasswdFileAuthenticator } from '../../src/auth/passwd.ts';
import { parseConfig } from '../../src/config/config.ts';
import { silentLogger } from '../../src/observability/log.ts';
import type { Pop3Server } from '../../src/server/server.ts';
import { defaultLimits, makeServer } from '../helpers/server.ts';
import { figure, LONG_SOAK, soakScale } from '../helpers/soak.ts';
import { Wire } from '../helpers/wire.ts';

const b64 = (s: string | Buffer) => Buffer.from(s).toString('base64');
const shipped = parseConfig('').limits;
const PENALTY = soakScale(
  { base: 150, max: 150 },
  { base: shipped.failedLoginDelayMs, max: shipped.failedLoginMaxDelayMs },
);
const ATTACK_MS = soakScale(3_000, 60_000);
const CONNECTIONS = soakScale(4, 20);
const PATIENCE_MS = 30;
const MECHANISMS = ['USER', 'APOP', 'PLAIN', 'LOGIN', 'CRAM-MD5', 'SCRAM-SHA-256'] as const;
type Mechanism = (typeof MECHANISMS)[number];

let dir: string;
let usersFile: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'postern-soak-brute-'));
  usersFile = join(dir, 'users');
  for (const u of ['alice', ...MECHANISMS.map(victim)]) {
    await addUser(usersFile, u, 'correct horse', { apopSecret: 'correct horse' });
  }
});

/** The user each mechanism's attacker goes after (per-user penalties stay apart). */
function victim(mech: Mechanism): string {
  return `victim-${mech.toLowerCase()}`;
}
after(() => rm(dir, { recursive: true, force: true }));

/** Failed verifications (guesses the server checked), by mechanism. */
const checked = new Map<string, number>();

async function serve(penalty: { base: number; max: number }): Promise<{ server: Pop3Server; port: number }> {
  const authenticator = await PasswdFileAuthenticator.load(usersFile, { logger: silentLogger });
  const server = await makeServer({
    authenticator,
    allowPlaintextAuth: true, // clients come from documentation addresses through a trusted PROXY header
    proxy: { trusted: ['127.0.0.0/8'], timeoutMs: 5_000 },
    hooks: {
      onLogin(mechanism, result) {
        if (result === 'fail') checked.set(mechanism, (checked.get(mechanism) ?? 0) + 1);
      },
    },
    limits: {
      ...defaultLimits,
      failedLoginDelayMs: penalty.base,
      failedLoginMaxDelayMs: penalty.max,
      maxAuthFailures: 1_000_000,
      maxConnectionsPerAddress: 100,
    },
  });
  const [bound] = await server.listen([{ address: '127.0.0.1', port: 0, tls: 'none', proxyProtocol: true }]);
  return { server, port: bound.port };
}

/** A connection from `address` (PROXY header); resolves with the greeting. */
async function from(port: number, address: string): Promise<{ w: Wire; greeting: string }> {
  const w = await Wire.connect(port);
  w.send(`PROXY TCP4 ${address} 127.0.0.1 4000 110\r\n`);
  return { w, greeting: await w.line() };
}

/**
 * One guess; `wait` reads every answer, otherwise the client gives up after PATIENCE_MS without an answer.
 * Returns the final status line ('' when it gave up) and, for SCRAM, the server-first message.
 */
async function guess(
  w: Wire,
  greeting: string,
  mech: Mechanism,
  user: string,
  password: string,
  wait: boolean,
): Promise<{ status: string; serverFirst?: string }> {
  // A dropper hangs up when the answer to its guess does not come at once; it waits for a challenge that
  // comes before the guess is even sent (SCRAM's server-first, CRAM-MD5's challenge), as a smart one would.
  // A patient client waits out a penalty before its verification and another before the failed reply.
  const patient = 2 * PENALTY.max + 30_000;
  const next = () => (wait ? w.line(patient) : w.line(PATIENCE_MS).catch(() => ''));
  const challengeOf = () => (wait ? w.line(patient) : w.line(PENALTY.max + 1_000).catch(() => ''));
  switch (mech) {
    case 'USER': {
      w.send(`USER ${user}\r\nPASS ${password}\r\n`);
      if (!(await next())) return { status: '' };
      return { status: await next() };
    }
    case 'APOP': {
      const ts = /<[^>]+>/.exec(greeting)?.[0] ?? '';
      w.send(`APOP ${user} ${createHash('md5').update(`${ts}${password}`).digest('hex')}\r\n`);
      return { status: await next() };
    }
    case 'PLAIN':
      w.send(`AUTH PLAIN ${b64(`\0${user}\0${password}`)}\r\n`);
      return { status: await next() };
    case 'LOGIN': {
      w.send(`AUTH LOGIN\r\n${b64(user)}\r\n${b64(password)}\r\n`);
      let line = '';
      for (let i = 0; i < 3; i++) {
        line = await next();
        if (!line.startsWith('+ ')) break;
      }
      return { status: line };
    }
    case 'CRAM-MD5': {
      w.send('AUTH CRAM-MD5\r\n');
      const challenge = await challengeOf();
      if (!challenge.startsWith('+ ')) return { status: challenge };
      const digest = createHmac('md5', password)
        .update(Buffer.from(challenge.slice(2), 'base64'))
        .digest('hex');
      w.send(`${b64(`${user} ${digest}`)}\r\n`);
      return { status: await next() };
    }
    case 'SCRAM-SHA-256': {
      w.send(`AUTH SCRAM-SHA-256 ${b64(`n,,n=${user},r=soaknonce`)}\r\n`);
      const first = await challengeOf();
      if (!first.startsWith('+ ')) return { status: first };
      const serverFirst = Buffer.from(first.slice(2), 'base64').toString();
      const nonce = /r=([^,]+)/.exec(serverFirst)?.[1];
      w.send(`${b64(`c=biws,r=${nonce},p=${Buffer.alloc(32, 7).toString('base64')}`)}\r\n`);
      return { status: await next(), serverFirst };
    }
  }
}

describe('soak: brute force from one address', () => {
  for (const attacker of ['dropping', 'waiting'] as const) {
    test(`${attacker} attackers, ${CONNECTIONS} connections from one address per mechanism: guesses stay bounded`, async () => {
      const { server, port } = await serve(PENALTY);
      checked.clear();
      try {
        // Each mechanism from its own address against its own user, all at once.
        await Promise.all(
          MECHANISMS.map(async (mech, m) => {
            const end = Date.now() + ATTACK_MS;
            let n = 0;
            await Promise.all(
              Array.from({ length: CONNECTIONS }, async () => {
                while (Date.now() < end) {
                  const { w, greeting } = await from(port, `198.51.100.${m + 1}`);
                  // Droppers use a connection per guess; waiters keep theirs.
                  do await guess(w, greeting, mech, victim(mech), `wrong-${n++}`, attacker === 'waiting');
                  while (attacker === 'waiting' && !w.ended && Date.now() < end);
                  w.destroy();
                }
              }),
            );
          }),
        );
      } finally {
        await server.close(0);
      }
      // Every connection of an address is released together when its penalty ends: at most one guess per
      // connection per (capped) penalty, plus the first round.
      const bound = CONNECTIONS * (Math.ceil(ATTACK_MS / PENALTY.max) + 2);
      const perMinute = (n: number) => Math.round((n / ATTACK_MS) * 60_000);
      figure(
        `brute force, ${attacker}`,
        `guesses checked per minute from one address with ${CONNECTIONS} connections (penalty ${PENALTY.base}→${PENALTY.max} ms): ${MECHANISMS.map((m) => `${m} ${perMinute(checked.get(m) ?? 0)}`).join(', ')}`,
      );
      for (const mech of MECHANISMS) {
        const n = checked.get(mech) ?? 0;
        assert.ok(n <= bound, `${mech}: ${n} guesses checked in ${ATTACK_MS} ms (bound ${bound})`);
        assert.ok(n >= 1, `${mech}: no guess was checked at all`);
      }
    });
  }
});

describe('soak: unknown and known users look the same', () => {
  test('reply text, timing within noise and SCRAM parameters, for every mechanism', async () => {
    const { server, port } = await serve({ base: 0, max: 0 });
    const rounds = soakScale(10, 40);
    const lines: string[] = [];
    try {
      for (const mech of MECHANISMS) {
        const samples: Record<'known' | 'unknown', number[]> = { known: [], unknown: [] };
        const statuses = new Set<string>();
        const params = new Map<string, string>();
        for (let i = 0; i < rounds; i++) {
          for (const who of ['known', 'unknown'] as const) {
            const user = who === 'known' ? 'alice' : `ghost${i % 3}`;
            const { w, greeting } = await from(port, '192.0.2.1');
            const t0 = process.hrtime.bigint();
            const r = await guess(w, greeting, mech, user, 'wrong password', true);
            samples[who].push(Number(process.hrtime.bigint() - t0) / 1e6);
            statuses.add(r.status);
            if (r.serverFirst) {
              const s = /,s=([^,]+),i=(\d+)$/.exec(r.serverFirst);
              params.set(`${who}:${user}`, `salt ${Buffer.from(s?.[1] ?? '', 'base64').length} B, i=${s?.[2]}`);
            }
            w.destroy();
          }
        }
        assert.deepEqual([...statuses], ['-ERR [AUTH] Authentication failed.'], mech);
        if (mech === 'SCRAM-SHA-256') assert.equal(new Set(params.values()).size, 1, [...params].join('; '));
        const quantile = (xs: number[], q: number) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length * q)];
        lines.push(
          `${mech} ${quantile(samples.known, 0.5).toFixed(1)}/${quantile(samples.unknown, 0.5).toFixed(1)} ms`,
        );
        // Within noise on a shared machine: the same order of cost (an argon2 verification, or none, for both).
        // Compared on the lower quartile: load only ever adds time, and a real difference (say argon2 for one
        // and nothing for the other) shows in the fastest answers too.
        const k = quantile(samples.known, 0.25);
        const u = quantile(samples.unknown, 0.25);
        assert.ok(Math.abs(k - u) <= Math.max(25, 0.5 * Math.max(k, u)), `${mech}: known ${k} ms, unknown ${u} ms`);
      }
    } finally {
      await server.close(0);
    }
    figure(
      'known vs unknown user',
      `same reply for all ${MECHANISMS.length} mechanisms; median failure time known/unknown: ${lines.join(', ')}; SCRAM salt and i= identical${LONG_SOAK ? '' : ` (${rounds} rounds)`}`,
    );
  });
});
