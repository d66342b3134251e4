/**
 * The package as an operator and a library user get it: `npm pack` (which builds dist/), `npm install -g` of
 * the tarball into a private prefix, and `postern` from there runs the compiled code with no compiler, no
 * development dependencies, and loads only what a sub-command needs. The `postern-client` tarball
 * (scripts/pack-client.mjs) installs without a single dependency and talks to a real server.
 *
 * Start-up times are printed as diagnostics (a loaded test machine makes timed assertions flaky).
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { BIN, dropPostfixStyle, type RealServer, startRealServer } from '../helpers/realServer.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const RECORD = resolve(import.meta.dirname, '../helpers/record-imports.mjs');
const VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;

/** Runs `node [--import recorder] SCRIPT ARGS` and returns its output and every module URL it resolved. */
function run(script: string, args: string[], cwd = ROOT) {
  const dir = mkdtempSync(join(tmpdir(), 'postern-imports-'));
  const record = join(dir, 'imports');
  try {
    const started = process.hrtime.bigint();
    const r = spawnSync(process.execPath, ['--import', RECORD, script, ...args], {
      cwd,
      encoding: 'utf8',
      timeout: 60_000,
      env: { ...process.env, POSTERN_RECORD_IMPORTS: record },
    });
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    const imports = existsSync(record) ? readFileSync(record, 'utf8').split('\n').filter(Boolean) : [];
    return { status: r.status, stdout: r.stdout, stderr: r.stderr, imports, seconds };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Modules a command that is not `serve` must never load: the server, the stores, delivery, their packages. */
const SERVER_ONLY = [
  /\/(src|dist)\/server\//,
  /\/(src|dist)\/delivery\//,
  /\/(src|dist)\/storage\/(maildir\/store|postgres|memory)/,
  /\/node_modules\/(argon2|selfsigned|smtp-server|pg|prom-client)\//,
];

function loadedAny(imports: string[], patterns: RegExp[]): string[] {
  return imports.filter((u) => patterns.some((p) => p.test(u)));
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

describe('start-up from the sources (a git checkout)', () => {
  test('--version loads the CLI entry only; fetch --help loads neither the server, the store nor argon2', () => {
    const v = run(BIN, ['--version']);
    assert.equal(v.status, 0, v.stderr);
    assert.equal(v.stdout, `${VERSION}\n`);
    // Only the CLI entry and its small helpers (e.g. the exit codes): no config parser, no package.
    const ours = v.imports.filter((u) => u.includes('/src/') && !u.includes('/node_modules/'));
    assert.ok(ours.some((u) => u.endsWith('/src/cli/main.ts')));
    assert.deepEqual(
      ours.map((u) => u.slice(u.indexOf('/src/'))),
      // The entry and its exit-code constants (a leaf of plain numbers); nothing else of ours.
      ['/src/cli/main.ts', '/src/cli/sysexits.ts'],
    );
    const packages = v.imports.filter((u) => u.includes('/node_modules/'));
    assert.deepEqual(
      packages.filter((u) => !/\/node_modules\/(tsx|esbuild|get-tsconfig|resolve-pkg-maps)\//.test(u)),
      [],
    );
    const f = run(BIN, ['fetch', '--help']);
    assert.equal(f.status, 0, f.stderr);
    assert.match(f.stdout, /postern fetch/);
    assert.deepEqual(loadedAny(f.imports, SERVER_ONLY), []);
  });
});

describe('the packed package, installed globally', () => {
  let work: string;
  let prefix: string;
  let stage: string;
  let tarball: string;
  let installed: string;
  let postern: string;

  before(() => {
    work = mkdtempSync(join(tmpdir(), 'postern-pack-'));
    // A copy of what git tracks that npm pack reads, so the test neither needs nor touches ./dist.
    stage = join(work, 'stage');
    mkdirSync(stage);
    for (const f of ['package.json', 'tsconfig.json', 'tsconfig.build.json', 'README.md', 'postern.example.toml']) {
      cpSync(join(ROOT, f), join(stage, f));
    }
    for (const d of ['bin', 'src', 'docs', 'contrib']) cpSync(join(ROOT, d), join(stage, d), { recursive: true });
    // The build bundles `postern fetch` after tsc (scripts/bundle-fetch.mjs).
    mkdirSync(join(stage, 'scripts'));
    cpSync(join(ROOT, 'scripts/bundle-fetch.mjs'), join(stage, 'scripts/bundle-fetch.mjs'));
    symlinkSync(join(ROOT, 'node_modules'), join(stage, 'node_modules'));
    // prepack builds dist/ with tsc.
    const out = execFileSync('npm', ['pack', '--silent', '--pack-destination', work], {
      cwd: stage,
      encoding: 'utf8',
      timeout: 240_000,
    });
    tarball = join(work, out.trim().split('\n').pop() ?? '');
    prefix = join(work, 'prefix');
    execFileSync(
      'npm',
      ['install', '-g', '--prefix', prefix, '--prefer-offline', '--no-audit', '--no-fund', '--silent', tarball],
      { cwd: work, encoding: 'utf8', timeout: 240_000 },
    );
    installed = join(prefix, 'lib', 'node_modules', 'postern');
    postern = join(prefix, 'bin', 'postern');
  });

  after(() => {
    if (work) rmSync(work, { recursive: true, force: true });
  });

  test('the tarball ships dist/ and the bin, not the TypeScript sources', () => {
    const files = execFileSync('tar', ['tzf', tarball], { encoding: 'utf8' }).split('\n');
    assert.ok(files.includes('package/dist/cli/main.js'));
    assert.ok(files.includes('package/bin/postern.cjs'));
    assert.ok(files.includes('package/dist/cli/main-fetch.cjs'));
    assert.ok(files.includes('package/docs/delivery.md'), 'the README links it');
    assert.deepEqual(
      files.filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts')),
      [],
    );
  });

  test('postern --version runs the compiled CLI, with no development dependency installed', (t) => {
    const r = run(postern, ['--version'], work);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, `${VERSION}\n`);
    assert.ok(
      r.imports.some((u) => u.endsWith('/dist/cli/main.js')),
      'runs dist/cli/main.js',
    );
    assert.deepEqual(
      r.imports.filter((u) => /\.ts$|\/tsx\/|\/esbuild\//.test(u)),
      [],
    );
    const deps = readdirSync(join(installed, 'node_modules'));
    for (const dev of ['tsx', 'esbuild', 'typescript', '@biomejs', 'fast-check']) assert.ok(!deps.includes(dev), dev);
    // Measured without the import recorder; a diagnostic, not an assertion (see the file's comment).
    const times: number[] = [];
    for (let i = 0; i < 5; i++) {
      const started = process.hrtime.bigint();
      execFileSync(postern, ['--version']);
      times.push(Number(process.hrtime.bigint() - started) / 1e9);
    }
    t.diagnostic(`postern --version: median ${median(times).toFixed(3)} s of 5`);
  });

  test('postern fetch loads neither the server, the store, argon2 nor selfsigned', (t) => {
    const r = run(postern, ['fetch', '--help'], work);
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(loadedAny(r.imports, SERVER_ONLY), []);
    // It starts from the one bundled CommonJS file, whose build refuses anything of the server
    // (scripts/bundle-fetch.mjs), compiled by bin/postern.cjs itself: no ES module of dist/ is loaded.
    assert.match(r.stdout, /postern fetch/);
    assert.deepEqual(
      r.imports.filter((u) => u.includes('/dist/')),
      [],
    );
    t.diagnostic(`postern fetch --help: ${r.seconds.toFixed(3)} s (with the import recorder)`);
  });

  test('postern check-config from the installed package works (compiled dynamic imports)', () => {
    const r = spawnSync(postern, ['check-config'], { cwd: work, encoding: 'utf8', timeout: 60_000 });
    // The built-in defaults name ./var/users, which does not exist in a fresh directory.
    assert.equal(r.status, 78, r.stderr);
    assert.match(r.stderr, /auth\.users_file = ".*var\/users": does not exist/);
  });

  describe("postern fetch's V8 code cache (bin/postern.cjs)", () => {
    let server: RealServer;
    let cacheHome: string;

    before(async () => {
      server = await startRealServer();
      server.addUser('carol', 'carol-password');
      for (let i = 0; i < 3; i++) {
        dropPostfixStyle(server.maildir('carol'), `170000000${i}.M1P1.host`, `Subject: m${i}\n\nbody ${i}\n`);
      }
      await server.start();
      cacheHome = mkdtempSync(join(tmpdir(), 'postern-cache-'));
    });

    after(async () => {
      await server?.stop();
      if (cacheHome) rmSync(cacheHome, { recursive: true, force: true });
    });

    /** One `postern fetch` of carol's mailbox (keep mode) into OUT, with XDG_CACHE_HOME = cache. */
    function fetchInto(out: string, cache: string, extra: string[] = []) {
      const r = spawnSync(
        postern,
        [
          'fetch',
          `pop3s://carol@127.0.0.1:${server.tlsPort}`,
          '--ca-file',
          join(server.dir, 'tls', 'cert.pem'),
          '--password-env',
          'PW',
          '--maildir',
          join(out, 'Maildir'),
          '--state-dir',
          join(out, 'state'),
          '--quiet',
          ...extra,
        ],
        { env: { ...process.env, PW: 'carol-password', XDG_CACHE_HOME: cache }, encoding: 'utf8', timeout: 60_000 },
      );
      assert.equal(r.status, 0, r.stderr);
      return readdirSync(join(out, 'Maildir', 'new')).length;
    }
    const caches = () => readdirSync(join(cacheHome, 'postern')).filter((f) => f.endsWith('.v8'));

    test('made once by a whole fetch, then used as is; a corrupt or foreign cache is replaced', () => {
      const out = join(cacheHome, 'out');
      // A help run compiles too little to be worth a cache.
      const help = spawnSync(postern, ['fetch', '--help'], {
        env: { ...process.env, XDG_CACHE_HOME: cacheHome },
        encoding: 'utf8',
        timeout: 60_000,
      });
      assert.equal(help.status, 0, help.stderr);
      assert.ok(!existsSync(join(cacheHome, 'postern')), 'no cache after --help');

      assert.equal(fetchInto(out, cacheHome), 3);
      const [name] = caches();
      assert.match(name ?? '', /^fetch-v\d+\.\d+\.\d+-.*\.v8$/);
      const file = join(cacheHome, 'postern', name);
      const made = statSync(file);
      assert.ok(made.size > 1000, `a real cache, ${made.size} octets`);

      // V8 took it: bin/postern.cjs rewrites the file only when there was none or V8 rejected it.
      assert.equal(fetchInto(out, cacheHome), 3, 'keep mode, nothing fetched twice');
      assert.equal(statSync(file).mtimeMs, made.mtimeMs);
      assert.deepEqual(caches(), [name]);

      // Garbage in the file (a disk error, another build's bytes): rejected by V8, the fetch runs uncached and
      // writes a good one; a cache of another Node or build is removed.
      writeFileSync(file, Buffer.alloc(4096, 0x5a));
      writeFileSync(join(cacheHome, 'postern', 'fetch-v0.0.0-linux-x64-1-1.v8'), 'old');
      assert.equal(fetchInto(join(cacheHome, 'out2'), cacheHome), 3);
      assert.deepEqual(caches(), [name]);
      const rewritten = readFileSync(file);
      assert.ok(rewritten.length > 1000 && rewritten.some((b) => b !== 0x5a), 'a new cache, not the garbage');
    });

    test('a cache directory that cannot be made changes nothing for the fetch', () => {
      const notADir = join(cacheHome, 'a-file');
      writeFileSync(notADir, '');
      assert.equal(fetchInto(join(cacheHome, 'out3'), notADir), 3);
    });
  });

  describe('postern-client: the client library without the server', () => {
    let server: RealServer;
    let app: string;

    before(async () => {
      const out = execFileSync(process.execPath, [join(ROOT, 'scripts/pack-client.mjs'), join(stage, 'dist'), work], {
        encoding: 'utf8',
        timeout: 60_000,
      });
      app = join(work, 'app');
      mkdirSync(app);
      execFileSync('npm', ['init', '-y', '--silent'], { cwd: app, timeout: 60_000 });
      // --offline: the package has no dependencies, so nothing may need the registry.
      execFileSync('npm', ['install', '--offline', '--no-audit', '--no-fund', '--silent', out.trim()], {
        cwd: app,
        timeout: 120_000,
      });
      server = await startRealServer();
      server.addUser('alice', 'alice-password');
      await server.start();
    });

    after(async () => {
      await server?.stop();
    });

    test('installs alone and logs in to a real server over STLS', () => {
      assert.deepEqual(
        readdirSync(join(app, 'node_modules')).filter((d) => !d.startsWith('.')),
        ['postern-client'],
      );
      const script = `
        import { Pop3Client } from 'postern-client';
        const c = await Pop3Client.connect({ host: '127.0.0.1', port: ${server.port}, tls: 'starttls',
          tlsOptions: { rejectUnauthorized: false }, auth: { user: 'alice', password: 'alice-password' } });
        const stat = await c.stat();
        await c.quit();
        const err = await Pop3Client.connect({ host: '127.0.0.1' }).catch((e) => e);
        console.log(JSON.stringify({ stat, mechanism: c.mechanism, code: err.code }));
      `;
      const r = run('--input-type=module', ['-e', script], app);
      // `node --import R --input-type=module -e …`: the script is the argument after -e.
      assert.equal(r.status, 0, r.stderr);
      assert.deepEqual(JSON.parse(r.stdout), {
        stat: { count: 0, size: 0 },
        mechanism: 'SCRAM-SHA-256',
        code: 'POP3_ERR_OPTIONS',
      });
      assert.deepEqual(
        r.imports.filter((u) => u.startsWith('file:') && !u.includes('/node_modules/postern-client/')),
        [],
      );
    });
  });
});
