#!/usr/bin/env node
// Makes the `postern-client` package: the POP3 client library alone, for Node developers who want
// `Pop3Client` without the server's dependencies (argon2 with its native build, pino, smtp-server, …).
// It holds exactly the compiled modules that dist/client/index.js imports, transitively; a package import
// in that set (anything but node:*) fails the build, so the client stays dependency-free.
//
// Usage: npm run build && node scripts/pack-client.mjs [DIST_DIR] [OUT_DIR]   (prints the tarball's path)
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';

const root = resolve(import.meta.dirname, '..');
const dist = resolve(process.argv[2] ?? join(root, 'dist'));
const outDir = resolve(process.argv[3] ?? root);
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));

/** Relative imports of a compiled module, and its package imports. */
function importsOf(file) {
  const text = readFileSync(file, 'utf8');
  const patterns = [
    /^(?:import|export)\s[^;]*?\sfrom\s*['"]([^'"]+)['"]/gm, // static import / re-export
    /^import\s*['"]([^'"]+)['"]/gm, // import for side effects
    /\bimport\(\s*['"]([^'"]+)['"]\s*\)/g, // dynamic import of a literal
  ];
  const specs = patterns.flatMap((re) => [...text.matchAll(re)].map((m) => m[1]));
  return {
    local: specs.filter((s) => s.startsWith('.')).map((s) => resolve(dirname(file), s)),
    packages: specs.filter((s) => !s.startsWith('.') && !s.startsWith('node:')),
  };
}

/** Every module reachable from `entry`, with its .d.ts. */
export function closure(entry) {
  const seen = new Set();
  const packages = new Set();
  const todo = [entry];
  while (todo.length > 0) {
    const file = todo.pop();
    if (seen.has(file)) continue;
    seen.add(file);
    const { local, packages: p } = importsOf(file);
    for (const s of p) packages.add(s);
    todo.push(...local);
    const dts = file.replace(/\.js$/, '.d.ts');
    // Declarations keep the sources' `.ts` specifiers; the module beside each is the `.js` one.
    const types = importsOf(dts).local.map((s) => s.replace(/(\.d)?\.ts$/, '.js'));
    todo.push(...types);
  }
  return { files: [...seen].sort(), packages: [...packages].sort() };
}

const { files, packages } = closure(join(dist, 'client', 'index.js'));
if (packages.length > 0) {
  console.error(`pack-client: the client imports packages: ${packages.join(', ')}`);
  process.exit(1);
}
const stage = mkdtempSync(join(tmpdir(), 'postern-client-'));
try {
  for (const file of files) {
    for (const f of [file, file.replace(/\.js$/, '.d.ts')]) {
      const to = join(stage, 'dist', relative(dist, f));
      mkdirSync(dirname(to), { recursive: true });
      copyFileSync(f, to);
    }
  }
  const manifest = {
    name: 'postern-client',
    version: pkg.version,
    description: 'POP3 client library (RFC 1939, STLS, SASL, pipelining, streaming) from Postern; no dependencies',
    type: 'module',
    license: pkg.license,
    engines: pkg.engines,
    main: './dist/client/index.js',
    types: './dist/client/index.d.ts',
    exports: { '.': { types: './dist/client/index.d.ts', default: './dist/client/index.js' } },
    files: ['dist'],
  };
  writeFileSync(join(stage, 'package.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  copyFileSync(join(root, 'README.md'), join(stage, 'README.md'));
  mkdirSync(outDir, { recursive: true });
  const out = execFileSync('npm', ['pack', '--silent', '--pack-destination', outDir], { cwd: stage, encoding: 'utf8' });
  console.log(join(outDir, out.trim().split('\n').pop()));
} finally {
  rmSync(stage, { recursive: true, force: true });
}
