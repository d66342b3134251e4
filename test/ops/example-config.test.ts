/**
 * postern.example.toml and contrib/postern.service, checked against the schema and each other: the sample
 * documents every key the server reads, is itself a valid config, and the unit's paths are the sample's.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { describe, test } from 'node:test';
import { parseConfig } from '../../src/config/config.ts';
import { schema } from '../../src/config/schema.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const example = readFileSync(resolve(ROOT, 'postern.example.toml'), 'utf8');
const unit = readFileSync(resolve(ROOT, 'contrib/postern.service'), 'utf8');
const REGENERATE = 'regenerate it: node --import tsx scripts/example-config.ts > postern.example.toml';

describe('postern.example.toml', () => {
  test('is a valid config', () => {
    const config = parseConfig(example, '/etc/postern/postern.toml');
    assert.ok(config.listen.length > 0);
    assert.ok(config.lmtp?.socket);
  });

  test('shows every table and key of the schema, each with a comment above it', () => {
    const lines = example.split('\n');
    for (const [name, table] of Object.entries(schema)) {
      const header = table.kind === 'array' ? `[[${name}]]` : `[${name}]`;
      const start = lines.findIndex((l) => l === header || l === `#${header}`);
      assert.ok(start >= 0, `${header} missing; ${REGENERATE}`);
      let end = lines.findIndex((l, i) => i > start && /^#?\[/.test(l) && !l.startsWith(`#${header}`) && l !== header);
      if (end < 0) end = lines.length;
      const section = lines.slice(start, end);
      for (const key of Object.keys(table.fields)) {
        const at = section.findIndex((l) => new RegExp(`^#?${key} = `).test(l));
        assert.ok(at >= 0, `${name}.${key} missing; ${REGENERATE}`);
        assert.ok(section[at - 1]?.startsWith('#'), `${name}.${key} has no comment`);
      }
    }
  });

  test('contrib/postern.service uses the sample’s paths', () => {
    const config = parseConfig(example, '/etc/postern/postern.toml');
    assert.match(unit, /^ExecStart=\S+ serve --config \/etc\/postern\/postern\.toml$/m);
    assert.match(unit, /^ExecReload=\/bin\/kill -HUP \$MAINPID$/m);
    assert.match(unit, new RegExp(`^ReadWritePaths=${config.storage.root}$`, 'm'));
    const runtime = /^RuntimeDirectory=(\S+)$/m.exec(unit)?.[1];
    assert.equal(dirname(config.lmtp?.socket ?? ''), `/run/${runtime}`);
    const stopSec = Number(/^TimeoutStopSec=(\d+)$/m.exec(unit)?.[1]);
    assert.ok(stopSec * 1000 > config.limits.shutdownGraceMs + 5000, 'systemd waits longer than the grace');
  });
});
