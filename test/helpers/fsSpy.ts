/**
 * A recorder of durability-relevant system calls, in the order they happen: opens (to name the file behind a
 * descriptor), fsyncs, renames, links, unlinks, journal appends, and what goes out on sockets. It wraps the
 * real functions of node:fs, node:fs/promises and net.Socket (every call still happens) and publishes them to
 * modules that imported them by name with module.syncBuiltinESMExports(), so the code under test is unchanged.
 *
 * Tests use it to pin the order that makes an acknowledgement honest (design.md §5): e.g. unlink → fsync of
 * the directory → `+OK` for QUIT. Removing the fsync from the code makes such a test fail.
 */
import { createRequire, syncBuiltinESMExports } from 'node:module';
import { Socket } from 'node:net';
import { resolve } from 'node:path';

const require = createRequire(import.meta.url);
// The CommonJS objects behind the built-in modules: what syncBuiltinESMExports copies into the ESM bindings.
const fs = require('node:fs') as typeof import('node:fs');
const fsp = require('node:fs/promises') as typeof import('node:fs/promises');

export interface FsEvent {
  readonly op: 'open' | 'fsync' | 'rename' | 'link' | 'unlink' | 'append' | 'send';
  /** The file (for fsync: the file or directory the descriptor was opened on); for send, the text sent. */
  readonly path: string;
  /** rename/link: the new name. */
  readonly to?: string;
}

export interface FsSpy {
  readonly events: FsEvent[];
  /** Index of the first event after `from` matching, or -1. */
  find(pred: (e: FsEvent) => boolean, from?: number): number;
  restore(): void;
}

type AnyFn = (...args: never[]) => unknown;

export async function installFsSpy(): Promise<FsSpy> {
  const events: FsEvent[] = [];
  const fdPath = new Map<number, string>();
  const undo: (() => void)[] = [];
  const wrap = <T extends object, K extends keyof T>(obj: T, key: K, make: (orig: T[K]) => T[K]) => {
    const orig = obj[key];
    obj[key] = make(orig);
    undo.push(() => {
      obj[key] = orig;
    });
  };
  // Paths as resolved names, so `…/new/` and `…/new` (the same directory) compare equal in the assertions.
  const str = (p: unknown) => resolve(typeof p === 'string' ? p : p instanceof URL ? p.pathname : String(p));

  wrap(
    fsp,
    'open',
    (orig) =>
      (async (path: unknown, ...rest: unknown[]) => {
        const fh = await (orig as AnyFn as (...a: unknown[]) => Promise<import('node:fs/promises').FileHandle>)(
          path,
          ...rest,
        );
        fdPath.set(fh.fd, str(path));
        events.push({ op: 'open', path: str(path) });
        return fh;
      }) as typeof orig,
  );
  // FileHandle's class is not exported: take its prototype from a handle.
  const probe = await fsp.open(import.meta.filename, 'r');
  const handleProto = Object.getPrototypeOf(probe) as { sync: () => Promise<void> };
  await probe.close();
  wrap(
    handleProto,
    'sync',
    (orig) =>
      function (this: { fd: number }) {
        events.push({ op: 'fsync', path: fdPath.get(this.fd) ?? `fd ${this.fd}` });
        return orig.call(this);
      },
  );
  for (const op of ['rename', 'link'] as const) {
    wrap(
      fsp,
      op,
      (orig) =>
        (async (a: unknown, b: unknown) => {
          events.push({ op, path: str(a), to: str(b) });
          return (orig as AnyFn as (x: unknown, y: unknown) => Promise<void>)(a, b);
        }) as typeof orig,
    );
  }
  wrap(
    fsp,
    'unlink',
    (orig) =>
      (async (p: unknown) => {
        events.push({ op: 'unlink', path: str(p) });
        return (orig as AnyFn as (x: unknown) => Promise<void>)(p);
      }) as typeof orig,
  );
  // The synchronous writers (fetch's Maildir sink, journal and state snapshot).
  wrap(
    fs,
    'openSync',
    (orig) =>
      ((path: unknown, ...rest: unknown[]) => {
        const fd = (orig as AnyFn as (...a: unknown[]) => number)(path, ...rest);
        fdPath.set(fd, str(path));
        events.push({ op: 'open', path: str(path) });
        return fd;
      }) as typeof orig,
  );
  // fdatasync makes a file's contents durable as fsync does (the metadata it skips is not needed to read them).
  for (const op of ['fsyncSync', 'fdatasyncSync'] as const) {
    wrap(
      fs,
      op,
      (orig) =>
        ((fd: number) => {
          events.push({ op: 'fsync', path: fdPath.get(fd) ?? `fd ${fd}` });
          return orig(fd);
        }) as typeof orig,
    );
  }
  wrap(
    fs,
    'writeSync',
    (orig) =>
      ((fd: number, ...rest: unknown[]) => {
        if (fdPath.has(fd)) events.push({ op: 'append', path: fdPath.get(fd) ?? '' });
        return (orig as AnyFn as (...a: unknown[]) => number)(fd, ...rest);
      }) as typeof orig,
  );
  wrap(
    fs,
    'renameSync',
    (orig) =>
      ((a: unknown, b: unknown) => {
        events.push({ op: 'rename', path: str(a), to: str(b) });
        return (orig as AnyFn as (x: unknown, y: unknown) => void)(a, b);
      }) as typeof orig,
  );
  wrap(
    fs,
    'unlinkSync',
    (orig) =>
      ((p: unknown) => {
        events.push({ op: 'unlink', path: str(p) });
        return (orig as AnyFn as (x: unknown) => void)(p);
      }) as typeof orig,
  );
  syncBuiltinESMExports();
  // What goes out on any socket (plain or TLS), as text.
  wrap(
    Socket.prototype,
    'write',
    (orig) =>
      function (this: Socket, chunk: unknown, ...rest: unknown[]) {
        const text = typeof chunk === 'string' ? chunk : Buffer.isBuffer(chunk) ? chunk.toString('latin1') : '';
        events.push({ op: 'send', path: text });
        return (orig as AnyFn as (...a: unknown[]) => boolean).call(this, chunk, ...rest);
      } as typeof orig,
  );

  return {
    events,
    find(pred, from = 0) {
      for (let i = Math.max(0, from); i < events.length; i++) if (pred(events[i])) return i;
      return -1;
    },
    restore() {
      for (const u of undo.reverse()) u();
      undo.length = 0;
      syncBuiltinESMExports();
    },
  };
}
