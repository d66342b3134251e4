/**
 * RFC 5034 AUTH mechanism [initial-response]: SASL in POP3. The mechanisms themselves are the pure state
 * machines of src/auth/sasl/ (shared with the client library); this file is only the POP3 framing:
 * "+ base64" challenges, "*" to cancel, "=" for an empty initial response, strict base64, and a bare AUTH
 * that lists the mechanisms (the pre-RFC 5034 probe that old Outlook versions send).
 */
import { createSaslServer, type ServerStep } from '../../auth/sasl/index.ts';
import { Pop3Error, RespCode } from '../../protocol/errors.ts';
import { awaitPenalty, enterTransaction, loginFailed } from '../login.ts';
import { AUTHORIZATION, type CommandSession, type CommandSpec } from './types.ts';

/** A SASL exchange longer than this many challenges is broken (SCRAM needs two). */
const MAX_ROUNDS = 8;

function decodeBase64(text: string): Buffer | null {
  if (text.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(text)) return null;
  return Buffer.from(text, 'base64');
}

/** Sends a challenge and reads the client's answer; throws -ERR when the client cancels or goes away. */
async function challenge(s: CommandSession, data: Buffer): Promise<Buffer> {
  s.reply(`+ ${data.toString('base64')}`);
  const r = await s.readContinuation();
  if (r === null) throw new Pop3Error(s.text.saslCancelled);
  if (r.kind === 'toolong') throw new Pop3Error(s.text.saslTooLong);
  const text = r.line.toString('latin1');
  if (text === '*') throw new Pop3Error(s.text.saslCancelled);
  const decoded = decodeBase64(text);
  if (decoded === null) throw new Pop3Error(s.text.saslBadBase64);
  return decoded;
}

export const auth: CommandSpec = {
  states: AUTHORIZATION,
  async run(s, cmd) {
    const offered = s.saslOffered();
    if (cmd.args.length === 0) return s.sendLines(`+OK ${s.text.saslFollows}`, offered);
    if (cmd.args.length > 2) throw new Pop3Error(s.text.saslUsage);
    const mechanism = cmd.args[0].toUpperCase();
    if (!offered.includes(mechanism)) throw new Pop3Error(s.text.saslUnsupported);
    let response: Buffer | null = null;
    if (cmd.args.length === 2) {
      response = cmd.args[1] === '=' ? Buffer.alloc(0) : decodeBase64(cmd.args[1]);
      if (response === null) throw new Pop3Error(s.text.saslBadBase64);
    }
    const a = s.ctx.authenticator;
    if (mechanism === 'EXTERNAL') return external(s, response);
    // Each way a mechanism checks a credential first waits out the failed-login penalty (login.ts), with the
    // user it names; that user is also the one a failure is counted against.
    let named: string | undefined;
    const gated = async <T>(user: string | undefined, check: () => Promise<T>): Promise<T> => {
      named = user;
      await awaitPenalty(s, user);
      return check();
    };
    const server = createSaslServer(
      mechanism,
      {
        verifyPassword: (u, p) => gated(u, () => a.verifyPassword(u, p)),
        sharedSecret: (u) => gated(u, () => a.sharedSecret(u)),
        scramCredentials: (u) => gated(u, () => (a.scramCredentials ? a.scramCredentials(u) : Promise.resolve(null))),
        verifyBearer: (t, u) =>
          gated(u, () => (s.ctx.bearer ? s.ctx.bearer.verifyBearer(t, u) : Promise.resolve(null))),
        lookup: (u) => a.lookup(u),
      },
      { hostname: s.ctx.hostname, fakeSaltKey: s.ctx.scramFakeSaltKey, fakeIterations: s.ctx.scramIterations },
    );
    if (!server) throw new Pop3Error(s.text.saslUnsupported);
    for (let round = 0; round < MAX_ROUNDS; round++) {
      const step = await runStep(s, () => server.step(response));
      if (step.kind === 'challenge') {
        response = await challenge(s, step.data);
        continue;
      }
      if (step.kind === 'failure') {
        // OAUTHBEARER/XOAUTH2 send an error document the client must acknowledge before the -ERR.
        if (step.challenge) await challenge(s, step.challenge).catch(() => undefined);
        return loginFailed(s, step.user ?? named, mechanism, step.reason);
      }
      // Success with additional data (SCRAM's server signature) goes out as a last challenge (RFC 5034 §4).
      if (step.data && step.data.length > 0) {
        const ack = await challenge(s, step.data);
        if (ack.length !== 0) throw new Pop3Error(s.text.saslCancelled);
      }
      return enterTransaction(s, step.principal, mechanism);
    }
    return loginFailed(s, named, mechanism, 'too many SASL rounds');
  },
};

/** A verifier that cannot answer (user store or token service down) is a temporary failure, not a bad login. */
async function runStep(s: CommandSession, step: () => Promise<ServerStep>): Promise<ServerStep> {
  try {
    return await step();
  } catch (err) {
    if (err instanceof Pop3Error) throw err; // the client hung up while the penalty was waited out
    s.log.error({ err: (err as Error).message }, 'SASL verifier failed');
    throw new Pop3Error(s.text.authTemp, RespCode.SysTemp);
  }
}

/**
 * SASL EXTERNAL (RFC 4422 App. A) with a client certificate verified against tls.client_ca: the user is the
 * certificate's subject field; the client may send an empty authorization identity or that same user.
 */
async function external(s: CommandSession, initial: Buffer | null): Promise<void> {
  const certUser = s.certificateUser();
  const authzid = (initial ?? (await challenge(s, Buffer.alloc(0)))).toString('utf8');
  if (certUser === undefined || (authzid !== '' && authzid !== certUser)) {
    return loginFailed(s, certUser, 'EXTERNAL', certUser === undefined ? 'no certificate' : 'authzid mismatch');
  }
  await awaitPenalty(s, certUser);
  const principal = await s.ctx.authenticator.lookup(certUser);
  if (!principal) return loginFailed(s, certUser, 'EXTERNAL', 'certificate names an unknown user');
  return enterTransaction(s, principal, 'EXTERNAL');
}
