#!/usr/bin/env node
// Entry point of the `postern` command.
//
// An installed package (npm pack, `npm install -g`) runs the compiled JavaScript in dist/: no compiler at
// start-up. A git checkout (src/ beside bin/; the package does not ship src/) runs the TypeScript sources
// through tsx instead, so a developer needs no build step and never runs a stale dist/ by accident.
// POSTERN_DIST=1 runs dist/ in a checkout (after `npm run build`), e.g. to measure start-up.

// libuv's thread pool runs file I/O and argon2 hashing. With the default 4 threads a burst of logins (argon2
// takes tens of milliseconds each) would make every RETR wait for a thread. It must be set before anything
// uses the pool, hence before the (dynamic) imports below.
process.env.UV_THREADPOOL_SIZE ??= '16';

import { existsSync } from 'node:fs';

// `postern mailbox list alice | head`: when the reader goes away, stop quietly as Unix tools do, not with
// an unhandled EPIPE stack trace.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err) => {
    if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw err;
  });
}

const source = new URL('../src/cli/main.ts', import.meta.url);
let main;
if (process.env.POSTERN_DIST !== '1' && existsSync(source)) {
  const { register } = await import('tsx/esm/api');
  register();
  ({ main } = await import(source.href));
} else {
  // `postern fetch` starts from one bundled file when the build made it (scripts/bundle-fetch.mjs): the same
  // main(), with fetch's modules in it instead of ~60 to load one by one.
  const fetchBundle = new URL('../dist/cli/main-fetch.js', import.meta.url);
  const bundled = process.argv[2] === 'fetch' && existsSync(fetchBundle);
  if (bundled) {
    // A fetch lives a fraction of a second: V8's optimizing compiler, started after the default budget, spent
    // more CPU than its code saved (2 000 × 4 KB: 0.42 -> 0.34 CPU s, peak RSS -2 MB, with 8x the budget; the
    // client pinned to one core, where its compile jobs compete with the fetch). Hot loops of a long fetch are
    // still optimized, only later.
    const { setFlagsFromString } = await import('node:v8');
    setFlagsFromString('--interrupt-budget=540672');
  }
  ({ main } = await import(bundled ? fetchBundle.href : '../dist/cli/main.js'));
}
process.exitCode = await main(process.argv.slice(2));
if (process.argv[2] === 'fetch' && process.stdout.writableLength === 0 && process.stderr.writableLength === 0) {
  // A fetch is over when main() returns (state written and unlocked, mailbox closed, connection gone): exit now
  // instead of through Node's teardown of the environment, which took 13-18 ms of a 0.3-0.4 s fetch (strace:
  // last unlink to exit_group). Not while output is still queued (pipes are asynchronous on macOS).
  process.exit();
}
