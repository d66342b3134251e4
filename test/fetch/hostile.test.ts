/**
 * Issue 13 defect 11: `postern fetch` must not trust the listed size. A hostile server lists a message as 100
 * octets and then sends without end: the real command (a child process) must stop reading, close the
 * connection, store nothing (no file in new/, cur/ or tmp/), record nothing and exit 1 with a clear message,
 * whether or not max_size is set.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';

const BIN = resolve(import.meta.dirname, '../../bin/postern.cjs');
/** What the server would send at most if nobody stopped it. */
const FLOOD_LIMIT = 512 * 1024 * 1024;

interface Hostile {
  server: Server;
  port: number;
  /** Body octets written for RETR before the client hung up. */
  sent(): number;
}

/** A POP3 server that answers honestly until RETR, then floods: a body of endless 'x' lines, never terminated. */
async function hostileServer(): Promise<Hostile> {
  let sent = 0;
  const server = createServer((sock: Socket) => {
    sock.on('error', () => {});
    sock.write('+OK hostile\r\n');
    let buf = '';
    sock.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      for (let i = buf.indexOf('\r\n'); i !== -1; i = buf.indexOf('\r\n')) {
        const line = buf.slice(0, i).toUpperCase();
        buf = buf.slice(i + 2);
        if (line === 'CAPA') sock.write('+OK\r\nUSER\r\nUIDL\r\n.\r\n');
        else if (line.startsWith('USER') || line.startsWith('PASS') || line.startsWith('NOOP')) sock.write('+OK\r\n');
        else if (line === 'LIST') sock.write('+OK\r\n1 100\r\n.\r\n');
        else if (line === 'UIDL') sock.write('+OK\r\n1 liar-1\r\n.\r\n');
        else if (line === 'QUIT') sock.end('+OK\r\n');
        else if (line.startsWith('RETR')) {
          sock.write('+OK 100 octets\r\nSubject: big\r\n\r\n');
          const chunk = Buffer.from(`${'x'.repeat(1022)}\r\n`.repeat(64), 'latin1');
          const flood = () => {
            while (!sock.destroyed && sent < FLOOD_LIMIT) {
              sent += chunk.length;
              if (!sock.write(chunk)) {
                sock.once('drain', flood);
                return;
              }
            }
          };
          flood();
        } else sock.write('-ERR unknown\r\n');
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const a = server.address();
  return { server, port: typeof a === 'object' && a ? a.port : 0, sent: () => sent };
}

function run(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [BIN, 'fetch', ...args], {
    env: { ...process.env, P: 'pw' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  return new Promise((r) => {
    const t = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.once('close', (code) => {
      clearTimeout(t);
      r({ code, stdout, stderr });
    });
  });
}

function files(md: string): string[] {
  return ['new', 'cur', 'tmp'].flatMap((s) => (existsSync(join(md, s)) ? readdirSync(join(md, s)) : []));
}

describe('postern fetch against a server that lies about sizes', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'postern-hostile-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  for (const maxSize of ['1000', undefined]) {
    it(`stops reading, stores and records nothing (max_size ${maxSize ?? 'unset'})`, async () => {
      const h = await hostileServer();
      try {
        const work = mkdtempSync(join(dir, 'w'));
        const md = join(work, 'Maildir');
        const r = await run([
          `pop3://u@127.0.0.1:${h.port}?tls=none`,
          '--insecure-auth',
          '--password-env',
          'P',
          '--maildir',
          md,
          '--state-dir',
          join(work, 'state'),
          '--delete',
          ...(maxSize ? ['--max-size', maxSize] : []),
        ]);
        assert.equal(r.code, 1, r.stderr);
        assert.match(
          r.stderr,
          maxSize ? /larger than max_size \(1000 octets\): not stored/ : /far more than its listed size of 100 octets/,
        );
        assert.match(r.stderr, /POP3_ERR_PROTOCOL/);
        assert.deepEqual(files(md), [], 'nothing stored, not even in tmp/');
        // The client hung up long before the flood ended (socket buffers hold a few MB at most).
        assert.ok(h.sent() < 64 * 1024 * 1024, `server got to send ${h.sent()} octets`);
        // Nothing recorded: a later run would try again (and fail again), never skip it as fetched.
        const state = readdirSync(join(work, 'state')).filter((f) => f.endsWith('.json'));
        for (const f of state) {
          assert.ok(!readFileSync(join(work, 'state', f), 'utf8').includes('"liar-1":'), 'recorded as fetched');
        }
      } finally {
        await new Promise<void>((r) => h.server.close(() => r()));
      }
    });
  }
});
