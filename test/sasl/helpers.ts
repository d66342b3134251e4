/** An in-memory SaslVerifier and an exchange driver that plays the POP3 caller's part (types.ts contract). */
import assert from 'node:assert/strict';
import { makeScramCredentials } from '../../src/auth/sasl/scram.ts';
import type {
  Principal,
  SaslClient,
  SaslServer,
  SaslVerifier,
  ScramCredentials,
  ServerStep,
} from '../../src/auth/sasl/types.ts';

export interface TestUser {
  readonly password?: string;
  readonly secret?: string;
  readonly scram?: ScramCredentials;
}

export class TestVerifier implements SaslVerifier {
  readonly calls: string[] = [];
  constructor(
    readonly users: Record<string, TestUser>,
    /** token → user it belongs to */
    readonly tokens: Record<string, string> = {},
  ) {}

  private get(user: string): TestUser | undefined {
    return Object.hasOwn(this.users, user) ? this.users[user] : undefined;
  }

  async verifyPassword(user: string, password: string): Promise<Principal | null> {
    this.calls.push(`verifyPassword ${user}`);
    const u = this.get(user);
    return u?.password !== undefined && u.password === password ? { user, mailboxId: `mb-${user}` } : null;
  }
  async sharedSecret(user: string): Promise<string | null> {
    this.calls.push(`sharedSecret ${user}`);
    return this.get(user)?.secret ?? null;
  }
  async scramCredentials(user: string): Promise<ScramCredentials | null> {
    this.calls.push(`scramCredentials ${user}`);
    return this.get(user)?.scram ?? null;
  }
  async verifyBearer(token: string, user: string | undefined): Promise<Principal | null> {
    this.calls.push(`verifyBearer ${user ?? '-'}`);
    const owner = Object.hasOwn(this.tokens, token) ? this.tokens[token] : undefined;
    if (owner === undefined || (user !== undefined && user !== owner) || !this.get(owner)) return null;
    return { user: owner, mailboxId: `mb-${owner}` };
  }
  async lookup(user: string): Promise<Principal | null> {
    this.calls.push(`lookup ${user}`);
    return this.get(user) ? { user, mailboxId: `mb-${user}` } : null;
  }
}

// Computed once: PBKDF2 is deliberately slow, and the property tests build thousands of verifiers.
const TIM_SCRAM = makeScramCredentials('tanstaaftanstaaf');
const USER_SCRAM = makeScramCredentials('pencil', { salt: Buffer.from('W22ZaJ0SNY7soEsUEjb6gQ==', 'base64') });

/** A verifier with tim (RFC 2195), user/pencil (RFC 7677), Kurt and Ursel (RFC 4616), and one token. */
export function standardVerifier(): TestVerifier {
  return new TestVerifier(
    {
      tim: {
        password: 'tanstaaftanstaaf',
        secret: 'tanstaaftanstaaf',
        scram: TIM_SCRAM,
      },
      user: {
        password: 'pencil',
        secret: 'pencil',
        scram: USER_SCRAM,
      },
      Kurt: { password: 'xipj3plmq' },
      Ursel: { password: 'other' },
      'user@example.com': { password: 'x' },
      nosecret: { password: 'plainonly' },
    },
    { 'vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==': 'user@example.com', 'tok.tim': 'tim' },
  );
}

export interface ExchangeResult {
  readonly result: ServerStep;
  /** Every message, client (`C:`) and server (`S:`), as base64 the way POP3 would carry it. */
  readonly transcript: string[];
}

/**
 * Runs one exchange as the POP3 AUTH command would: optional initial response, `+` challenges, the SCRAM
 * server-final as one last challenge answered empty, and the OAuth error challenge answered once.
 */
export async function runExchange(
  client: SaslClient,
  server: SaslServer,
  options: { initialResponse?: boolean } = {},
): Promise<ExchangeResult> {
  const transcript: string[] = [];
  const ir = client.start();
  let response: Buffer | null = options.initialResponse === false ? null : ir;
  if (response !== null) transcript.push(`C: ${response.toString('base64') || '='}`);
  for (let round = 0; round < 10; round++) {
    const step = await server.step(response);
    if (step.kind === 'challenge') {
      transcript.push(`S: + ${step.data.toString('base64')}`);
      response = client.step(step.data);
      transcript.push(`C: ${response.toString('base64')}`);
      continue;
    }
    if (step.kind === 'success') {
      if (step.data) {
        transcript.push(`S: + ${step.data.toString('base64')}`);
        const answer = client.step(step.data);
        assert.equal(answer.length, 0, 'the client answers additional data with an empty line');
        transcript.push('C: ');
      }
      transcript.push('S: +OK');
      client.finish();
      assert.equal(client.done, true);
      return { result: step, transcript };
    }
    if (step.challenge) {
      transcript.push(`S: + ${step.challenge.toString('base64')}`);
      const answer = client.step(step.challenge);
      transcript.push(`C: ${answer.toString('base64')}`);
      const again = await server.step(answer);
      assert.equal(again.kind, 'failure');
    }
    transcript.push('S: -ERR');
    return { result: step, transcript };
  }
  throw new Error('exchange did not end in 10 rounds');
}

export function assertSuccess(step: ServerStep, user: string): void {
  assert.equal(step.kind, 'success', step.kind === 'failure' ? step.reason : '');
  if (step.kind === 'success') assert.equal(step.principal.user, user);
}

export function assertFailure(step: ServerStep): asserts step is Extract<ServerStep, { kind: 'failure' }> {
  assert.equal(step.kind, 'failure');
}

export const b = (s: string): Buffer => Buffer.from(s, 'utf8');
