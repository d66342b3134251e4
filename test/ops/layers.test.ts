/** scripts/check-layers.mjs, run by `npm run lint`: the layer rules hold in src/, and a violating import fails. */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, test } from 'node:test';

const script = join(import.meta.dirname, '../../scripts/check-layers.mjs');
const root = mkdtempSync(join(tmpdir(), 'postern-layers-'));
after(() => rmSync(root, { recursive: true, force: true }));

function check(dir: string): { status: number | null; out: string } {
  const r = spawnSync(process.execPath, [script, dir], { encoding: 'utf8' });
  return { status: r.status, out: r.stdout + r.stderr };
}

/** A src/ tree of the given files (path → content), checked. */
function tree(name: string, files: Record<string, string>): { status: number | null; out: string } {
  const dir = join(root, name, 'src');
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, path)), { recursive: true });
    writeFileSync(join(dir, path), text);
  }
  return check(dir);
}

test('the real src/ keeps every rule', () => {
  const r = check(join(import.meta.dirname, '../../src'));
  assert.equal(r.status, 0, r.out);
});

test('allowed imports pass', () => {
  const r = tree('ok', {
    'mail/size.ts': "import { Buffer } from 'node:buffer';\n",
    'protocol/dot.ts': "import { transmittedSize } from '../mail/size.ts';\n",
    'storage/maildir/store.ts':
      "import { fsyncDir } from '../../durable/files.ts';\nimport type { X } from '../types.ts';\n",
    'server/session.ts': "import { parseCommand } from '../protocol/command.ts';\n",
    'cli/serve.ts':
      "import type { Config } from '../config/config.ts';\nimport { Pop3Server } from '../server/server.ts';\n",
    'config/config.ts': "import type { Limits } from '../server/options.ts';\n",
  });
  assert.equal(r.status, 0, r.out);
});

test('each boundary fails with the file, the line and the rule', () => {
  const cases: [string, Record<string, string>, RegExp][] = [
    [
      'protocol-server',
      { 'protocol/x.ts': "\nimport { a } from '../server/session.ts';\n" },
      /protocol\/x\.ts:2: protocol\/ imports server\//,
    ],
    [
      'storage-protocol',
      { 'storage/maildir/x.ts': "import { a } from '../../protocol/dot.ts';\n" },
      /storage\/ imports protocol\//,
    ],
    ['storage-server', { 'storage/x.ts': "export { a } from '../server/errors.ts';\n" }, /storage\/ imports server\//],
    [
      'client-server',
      { 'client/x.ts': "import type { A } from '../server/context.ts';\n" },
      /client\/ imports server\//,
    ],
    [
      'server-client',
      { 'server/x.ts': "const m = await import('../client/client.ts');\n" },
      /server\/ imports client\//,
    ],
    [
      'server-config',
      { 'server/x.ts': "import type { Config } from '../config/config.ts';\n" },
      /server\/ imports config\//,
    ],
    [
      'delivery-config',
      { 'delivery/x.ts': "import type { C } from '../config/schema.ts';\n" },
      /delivery\/ imports config\//,
    ],
    [
      'observability-server',
      { 'observability/x.ts': "import { c } from '../server/commands/index.ts';\n" },
      /observability\/ imports server\//,
    ],
    ['mail-package', { 'mail/x.ts': "import { parse } from 'smol-toml';\n" }, /mail\/x\.ts:1: imports 'smol-toml'/],
    ['mail-ours', { 'mail/x.ts': "import { a } from '../protocol/dot.ts';\n" }, /mail\/ imports protocol\//],
    ['new-folder', { 'newlayer/x.ts': 'export const a = 1;\n' }, /src\/newlayer\/ has no layer rule/],
  ];
  for (const [name, files, expected] of cases) {
    const r = tree(name, files);
    assert.equal(r.status, 1, `${name}: ${r.out}`);
    assert.match(r.out, expected, name);
  }
});

test('imports named in comments do not count', () => {
  const r = tree('comments', {
    'protocol/x.ts': "// import { a } from '../server/session.ts';\n/* export * from '../config/config.ts' */\n",
  });
  assert.equal(r.status, 0, r.out);
});
