#!/usr/bin/env node
// The layer rules of src/ (README "Layout"; design.md §2), checked on every `npm run lint`.
// Each folder of src/ is a layer; an import from one layer into another must be allowed below.
// Usage: node scripts/check-layers.mjs [ROOT]   (ROOT defaults to ./src; exits 1 on any violation)
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';

/**
 * For each layer: the layers of ours it may import (itself always). `node:*` and packages are always allowed
 * except where `nodeOnly` says the layer imports nothing but `node:*`.
 */
const RULES = {
  // Leaves: pure rules and helpers that every layer may use.
  mail: { may: [], nodeOnly: true, why: 'mail/ is the leaf of mail-format rules: node:* only' },
  durable: { may: [], nodeOnly: true, why: 'durable/ is the leaf of durable file operations: node:* only' },
  toml: { may: [], why: 'toml/ is a leaf: the TOML reading engine shared by config/ and fetch/' },
  // The wire codec, shared by server and client.
  protocol: { may: ['mail'], why: 'protocol/ imports nothing of ours but mail/' },
  // The PostgreSQL user database shares the store's pool and answers delivery's quota questions.
  auth: { may: ['protocol', 'mail', 'durable', 'storage'], why: 'auth/ sits below server and client' },
  storage: { may: ['mail', 'durable'], why: 'storage/ never imports protocol, server or anything above it' },
  server: { may: ['protocol', 'auth', 'storage', 'mail', 'durable'], why: 'server/ never imports client or config' },
  client: { may: ['protocol', 'auth', 'mail'], why: 'client/ never imports server, storage or config' },
  delivery: { may: ['auth', 'storage', 'mail', 'durable', 'observability'], why: 'delivery/ never imports config' },
  fetch: { may: ['client', 'mail', 'durable', 'toml'], why: 'fetch/ never imports server, storage or config' },
  observability: { may: ['storage'], why: 'observability/ is handed what it measures; never config or server' },
  // The top: configuration is read here and mapped onto the layers' own option types.
  config: {
    may: ['server', 'auth', 'storage', 'delivery', 'fetch', 'observability', 'mail', 'durable', 'toml'],
    why: 'config/ maps onto the types of the layers below and is imported only by cli/',
  },
  cli: { may: '*', why: 'cli/ is the top' },
  // src/index.ts: the package entry, the client library only.
  '.': { may: ['client'], why: 'the package entry exports the client library' },
};

const root = resolve(process.argv[2] ?? 'src');

function files(dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...files(p));
    else if (/\.(ts|mts|js|mjs)$/.test(name) && !name.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

function layerOf(file) {
  const rel = relative(root, file);
  if (rel.startsWith('..')) return null; // outside src/
  const parts = rel.split(sep);
  return parts.length === 1 ? '.' : parts[0];
}

/** Module specifiers of static imports, re-exports and dynamic imports, with their line numbers. */
function specifiers(text) {
  const out = [];
  const re = /(?:^|[\s;])(?:import|export)\s(?:[^'";]*?\sfrom\s)?['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g;
  // Comments may mention imports; blank them out (keeping line breaks for the line numbers).
  const code = text.replace(/\/\*[\s\S]*?\*\/|\/\/[^\n]*/g, (c) => c.replace(/[^\n]/g, ' '));
  for (let m = re.exec(code); m !== null; m = re.exec(code)) {
    const at = m.index + (m[0].length - m[0].trimStart().length); // past the whitespace the match began with
    out.push({ spec: m[1] ?? m[2], line: code.slice(0, at).split('\n').length });
  }
  return out;
}

const problems = [];
for (const file of files(root)) {
  const from = layerOf(file);
  const rule = RULES[from];
  const where = relative(process.cwd(), file);
  if (!rule) {
    problems.push(`${where}: the folder src/${from}/ has no layer rule in scripts/check-layers.mjs`);
    continue;
  }
  for (const { spec, line } of specifiers(readFileSync(file, 'utf8'))) {
    if (!spec.startsWith('.')) {
      if (rule.nodeOnly && !spec.startsWith('node:')) {
        problems.push(`${where}:${line}: imports '${spec}' (${rule.why})`);
      }
      continue;
    }
    const to = layerOf(resolve(dirname(file), spec));
    if (to === null) {
      problems.push(`${where}:${line}: imports '${spec}' from outside src/`);
      continue;
    }
    if (to === from || rule.may === '*' || rule.may.includes(to)) continue;
    problems.push(`${where}:${line}: ${from}/ imports ${to}/ ('${spec}'): ${rule.why}`);
  }
}

if (problems.length > 0) {
  console.error(`Layer rules broken (${problems.length}):\n${problems.map((p) => `  ${p}`).join('\n')}`);
  process.exit(1);
}
console.log(`Layer rules: ${Object.keys(RULES).length} layers, no violations.`);
