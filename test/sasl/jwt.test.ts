import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { exportJWK, generateKeyPair, type JWK, type JWTPayload, SignJWT, UnsecuredJWT } from 'jose';
import { createJwtBearerVerifier, type JwtBearerOptions } from '../../src/auth/sasl/jwt.ts';
import { createOAuthBearerServer, createXOAuth2Server } from '../../src/auth/sasl/oauth.ts';
import type { Principal } from '../../src/auth/sasl/types.ts';
import { assertFailure, assertSuccess, b } from './helpers.ts';

const ISSUER = 'https://idp.example.com/';
const AUDIENCE = 'pop.example.com';
const USERS = new Set(['tim@example.com', 'tim']);
const lookup = async (user: string): Promise<Principal | null> => (USERS.has(user) ? { user, mailboxId: user } : null);

type Key = Awaited<ReturnType<typeof generateKeyPair>>['privateKey'];

async function keyPair(kid: string): Promise<{ privateKey: Key; jwk: JWK }> {
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  return { privateKey, jwk: { ...(await exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' } };
}

function sign(
  key: { privateKey: Key; jwk: JWK },
  claims: JWTPayload,
  opts: { iss?: string; aud?: string; exp?: string | number | null } = {},
): Promise<string> {
  let jwt = new SignJWT(claims)
    .setProtectedHeader({ alg: 'ES256', kid: key.jwk.kid })
    .setIssuer(opts.iss ?? ISSUER)
    .setAudience(opts.aud ?? AUDIENCE)
    .setIssuedAt();
  if (opts.exp !== null) jwt = jwt.setExpirationTime(opts.exp ?? '5m');
  return jwt.sign(key.privateKey);
}

describe('JWT bearer verifier', () => {
  let dir: string;
  let jwksFile: string;
  let key: { privateKey: Key; jwk: JWK };
  let other: { privateKey: Key; jwk: JWK };
  let verifier: ReturnType<typeof createJwtBearerVerifier>;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'postern-jwt-'));
    jwksFile = join(dir, 'jwks.json');
    key = await keyPair('k1');
    other = await keyPair('k2');
    await writeFile(jwksFile, JSON.stringify({ keys: [key.jwk] }));
    verifier = createJwtBearerVerifier({ jwksFile, issuer: ISSUER, audience: AUDIENCE, lookup });
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('accepts a good token and maps its email claim to the user', async () => {
    const token = await sign(key, { email: 'tim@example.com', email_verified: true });
    assert.deepEqual(await verifier.verifyBearer(token, undefined), {
      user: 'tim@example.com',
      mailboxId: 'tim@example.com',
    });
    assert.equal((await verifier.verifyBearer(token, 'tim@example.com'))?.user, 'tim@example.com');
  });

  it('refuses a token for another user than the SASL one', async () => {
    const token = await sign(key, { email: 'tim@example.com' });
    assert.equal(await verifier.verifyBearer(token, 'tim'), null);
  });

  it('refuses expired, wrong-issuer, wrong-audience and never-expiring tokens', async () => {
    const claims = { email: 'tim@example.com' };
    const past = Math.floor(Date.now() / 1000) - 3600;
    assert.equal(await verifier.verifyBearer(await sign(key, claims, { exp: past }), undefined), null, 'expired');
    assert.equal(await verifier.verifyBearer(await sign(key, claims, { iss: 'https://evil/' }), undefined), null);
    assert.equal(await verifier.verifyBearer(await sign(key, claims, { aud: 'other-app' }), undefined), null);
    assert.equal(await verifier.verifyBearer(await sign(key, claims, { exp: null }), undefined), null, 'no exp');
  });

  it('refuses an unknown user, a missing claim, and an unverified email', async () => {
    assert.equal(await verifier.verifyBearer(await sign(key, { email: 'ghost@example.com' }), undefined), null);
    assert.equal(await verifier.verifyBearer(await sign(key, { sub: 'tim' }), undefined), null);
    assert.equal(
      await verifier.verifyBearer(await sign(key, { email: 'tim@example.com', email_verified: false }), undefined),
      null,
    );
    assert.equal(await verifier.verifyBearer(await sign(key, { email: 'a/../b' }), undefined), null);
  });

  it('refuses a token signed by a key not in the set, an unsigned one, and garbage', async () => {
    assert.equal(await verifier.verifyBearer(await sign(other, { email: 'tim@example.com' }), undefined), null);
    const unsigned = new UnsecuredJWT({ email: 'tim@example.com' })
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE)
      .setExpirationTime('5m')
      .encode();
    assert.equal(await verifier.verifyBearer(unsigned, undefined), null);
    const good = await sign(key, { email: 'tim@example.com' });
    const tampered = `${good.split('.')[0]}.${Buffer.from(JSON.stringify({ email: 'tim', iss: ISSUER, aud: AUDIENCE, exp: 2e9 })).toString('base64url')}.${good.split('.')[2]}`;
    assert.equal(await verifier.verifyBearer(tampered, undefined), null);
    for (const junk of ['', 'x', 'a.b.c', 'tok.tim']) assert.equal(await verifier.verifyBearer(junk, undefined), null);
  });

  it('uses another claim with a mapping', async () => {
    const bySub = createJwtBearerVerifier({
      jwksFile,
      issuer: ISSUER,
      audience: AUDIENCE,
      userClaim: 'sub',
      mapUser: (sub) => (sub.startsWith('uid-') ? sub.slice(4) : null),
      lookup,
    });
    assert.equal((await bySub.verifyBearer(await sign(key, { sub: 'uid-tim' }), 'tim'))?.user, 'tim');
    assert.equal(await bySub.verifyBearer(await sign(key, { sub: 'tim' }), undefined), null);
  });

  it('re-reads the JWKS file when it changes (key rotation)', async () => {
    const rotated = join(dir, 'rotated.json');
    await writeFile(rotated, JSON.stringify({ keys: [key.jwk] }));
    const v = createJwtBearerVerifier({ jwksFile: rotated, issuer: ISSUER, audience: AUDIENCE, lookup });
    const fromOther = await sign(other, { email: 'tim@example.com' });
    assert.equal(await v.verifyBearer(fromOther, undefined), null);
    await writeFile(rotated, JSON.stringify({ keys: [key.jwk, other.jwk] }));
    assert.equal((await v.verifyBearer(fromOther, undefined))?.user, 'tim@example.com');
  });

  it('rejects (a temporary failure) when the JWKS file is missing or broken', async () => {
    const missing = createJwtBearerVerifier({
      jwksFile: join(dir, 'nope.json'),
      issuer: ISSUER,
      audience: AUDIENCE,
      lookup,
    });
    const token = await sign(key, { email: 'tim@example.com' });
    await assert.rejects(missing.verifyBearer(token, undefined));
    const brokenFile = join(dir, 'broken.json');
    await writeFile(brokenFile, '{not json');
    const broken = createJwtBearerVerifier({ jwksFile: brokenFile, issuer: ISSUER, audience: AUDIENCE, lookup });
    await assert.rejects(broken.verifyBearer(token, undefined));
  });

  it('needs exactly one key source', () => {
    const base: JwtBearerOptions = { issuer: ISSUER, audience: AUDIENCE, lookup };
    assert.throws(() => createJwtBearerVerifier(base), TypeError);
    assert.throws(() => createJwtBearerVerifier({ ...base, jwksFile, jwksUrl: 'https://x/' }), TypeError);
  });

  it('plugs into OAUTHBEARER and XOAUTH2', async () => {
    const token = await sign(key, { email: 'tim@example.com' });
    assertSuccess(
      await createOAuthBearerServer(verifier).step(b(`n,a=tim@example.com,\x01auth=Bearer ${token}\x01\x01`)),
      'tim@example.com',
    );
    assertSuccess(
      await createXOAuth2Server(verifier).step(b(`user=tim@example.com\x01auth=Bearer ${token}\x01\x01`)),
      'tim@example.com',
    );
    const bad = await createOAuthBearerServer(verifier).step(b(`n,a=tim,\x01auth=Bearer ${token}\x01\x01`));
    assertFailure(bad);
    assert.ok(bad.challenge, 'a refused token gets the JSON error challenge');
  });

  describe('with a JWKS URL', () => {
    let server: Server;
    let url: string;
    let status = 200;
    before(async () => {
      server = createServer((_req, res) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ keys: [key.jwk] }));
      });
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks`;
    });
    after(() => new Promise<void>((r) => server.close(() => r())));

    it('fetches the keys and verifies', async () => {
      const v = createJwtBearerVerifier({ jwksUrl: url, issuer: ISSUER, audience: AUDIENCE, lookup });
      assert.equal(
        (await v.verifyBearer(await sign(key, { email: 'tim@example.com' }), undefined))?.user,
        'tim@example.com',
      );
      assert.equal(await v.verifyBearer(await sign(key, { email: 'tim@example.com' }, { aud: 'x' }), undefined), null);
    });

    it('rejects (a temporary failure) when the provider answers with an error', async () => {
      status = 503;
      try {
        const v = createJwtBearerVerifier({ jwksUrl: url, issuer: ISSUER, audience: AUDIENCE, lookup });
        await assert.rejects(v.verifyBearer(await sign(key, { email: 'tim@example.com' }), undefined));
      } finally {
        status = 200;
      }
    });
  });
});
