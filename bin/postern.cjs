#!/usr/bin/env node
// Entry point of the `postern` command.
//
// An installed package (npm pack, `npm install -g`) runs the compiled JavaScript in dist/: no compiler at
// start-up. A git checkout (src/ beside bin/; the package does not ship src/) runs the TypeScript sources
// through tsx instead, so a developer needs no build step and never runs a stale dist/ by accident.
// POSTERN_DIST=1 runs dist/ in a checkout (after `npm run build`), e.g. to measure start-up.
//
// This file is CommonJS (.cjs) so that `postern fetch` from dist/ never starts Node's ES module loader: a fetch
// lives a fraction of a second and its start-up is what issue 11 measures. The loader, and the ES module facade
// it builds of every builtin imported (which reads all of a builtin's exports: node:fs's ReadStream getter
// loads the streams, node:crypto's webcrypto…), cost fetch ~20 ms of CPU before its first byte (CPU profile
// of a keep run pinned to one core). `postern fetch` requires one CommonJS bundle (scripts/bundle-fetch.mjs);
// every other command, and a checkout, import()s the ES modules as before.
'use strict';

// libuv's thread pool runs file I/O and argon2 hashing. With the default 4 threads a burst of logins (argon2
// takes tens of milliseconds each) would make every RETR wait for a thread. It must be set before anything
// uses the pool, hence before anything below loads.
process.env.UV_THREADPOOL_SIZE ??= '16';

const {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  renameSync,
  statSync,
  unlinkSync,
  writeFileSync,
} = require('node:fs');
const { dirname, join } = require('node:path');
const { pathToFileURL } = require('node:url');

// `postern mailbox list alice | head`: when the reader goes away, stop quietly as Unix tools do, not with
// an unhandled EPIPE stack trace. The handler is put on each stream when the stream is first used: Node makes
// process.stdout and process.stderr on first access, and for a pipe that took ~2.5 ms of CPU, which a
// `postern fetch --quiet` that writes nothing need not spend.
/** The standard streams made so far. */
const madeStreams = [];
function quietOnEpipe(stream) {
  madeStreams.push(stream);
  stream.on('error', (err) => {
    if (err.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw err;
  });
  return stream;
}
for (const name of ['stdout', 'stderr']) {
  const made = Object.getOwnPropertyDescriptor(process, name);
  if (typeof made?.get !== 'function' || !made.configurable) {
    quietOnEpipe(process[name]);
    continue;
  }
  Object.defineProperty(process, name, {
    configurable: true,
    enumerable: made.enumerable,
    get() {
      const stream = quietOnEpipe(made.get.call(process));
      Object.defineProperty(process, name, { configurable: true, enumerable: made.enumerable, value: stream });
      return stream;
    },
  });
}

/** The `main(argv)` of the CLI: the fetch bundle, the compiled ES modules, or the sources through tsx. */
async function loadMain() {
  const source = join(__dirname, '../src/cli/main.ts');
  if (process.env.POSTERN_DIST !== '1' && existsSync(source)) {
    const { register } = await import('tsx/esm/api');
    register();
    return (await import(pathToFileURL(source).href)).main;
  }
  // `postern fetch` starts from one bundled CommonJS file when the build made it: the same main(), with
  // fetch's modules in it instead of ~60 to load one by one.
  const fetchBundle = join(__dirname, '../dist/cli/main-fetch.cjs');
  if (process.argv[2] === 'fetch' && existsSync(fetchBundle)) {
    // A fetch lives a fraction of a second: V8's optimizing compiler, started after the default budget, spent
    // more CPU than its code saved (2 000 × 4 KB: 0.42 -> 0.34 CPU s, peak RSS -2 MB, with 8x the budget; the
    // client pinned to one core, where its compile jobs compete with the fetch). Hot loops of a long fetch are
    // still optimized, only later.
    require('node:v8').setFlagsFromString('--interrupt-budget=540672');
    return runCached(fetchBundle).main;
  }
  return (await import('../dist/cli/main.js')).main;
}

/** Set by runCached() when the code cache is missing or stale: writes a new one after the run. */
let saveCodeCache;

/**
 * Runs a CommonJS file as require() would, with a V8 code cache: the bytecode of the functions a fetch compiled,
 * kept per user in $XDG_CACHE_HOME/postern (else ~/.cache/postern). V8 would otherwise parse the 220 KB bundle
 * and compile each function on its first call, in every run; with the cache made after a whole fetch, 2 000 ×
 * 4 KB took 4-6 ms less CPU (0.310 against 0.317 s, median of 20 pinned to one core, A/B alternated; `--help`
 * gains nothing, V8 reads the cache instead of parsing). The cache is made once (and again when it no
 * longer fits: another Node version, build or V8 flags make V8 reject it, `cachedDataRejected`), written
 * atomically. Without a cache directory it runs uncached. The file may only require node:* modules (the bundle's
 * build checks that nothing else is left out of it): require() here resolves from bin/.
 */
function runCached(file) {
  const vm = require('node:vm');
  const st = statSync(file);
  const base = process.env.XDG_CACHE_HOME || (process.env.HOME ? join(process.env.HOME, '.cache') : '');
  const dir = base && join(base, 'postern');
  // The name changes with Node, the platform and the build, so a cache is only offered to V8 where it can fit.
  const name = `fetch-${process.version}-${process.platform}-${process.arch}-${st.size}-${Math.trunc(st.mtimeMs)}.v8`;
  let cachedData;
  if (dir) {
    try {
      cachedData = readFileSync(join(dir, name));
    } catch {}
  }
  const wrapper = `(function (exports, require, module, __filename, __dirname) {${readFileSync(file, 'utf8')}\n})`;
  const script = new vm.Script(wrapper, { filename: file, cachedData });
  const mod = { exports: {} };
  script.runInThisContext()(mod.exports, require, mod, file, dirname(file));
  if (dir && (cachedData === undefined || script.cachedDataRejected)) {
    saveCodeCache = () => {
      try {
        mkdirSync(dir, { recursive: true, mode: 0o700 });
        const tmp = join(dir, `.${name}.${process.pid}.tmp`);
        writeFileSync(tmp, script.createCachedData(), { mode: 0o600 });
        renameSync(tmp, join(dir, name));
        // Caches of other builds and Node versions would never be read again.
        for (const f of readdirSync(dir)) if (/^fetch-.*\.v8$/.test(f) && f !== name) unlinkSync(join(dir, f));
      } catch {} // a read-only or full home: run uncached next time too
    };
  }
  return mod.exports;
}

/** A help or probe run compiles too little of fetch for its cache to be worth keeping. */
function fullRun(argv) {
  return !argv.some((a) => /^(-h|--help|--probe(=.*)?|-n|--dry-run|--check)$/.test(a));
}

loadMain()
  .then((main) => main(process.argv.slice(2)))
  .then((code) => {
    process.exitCode = code;
    if (saveCodeCache && code === 0 && fullRun(process.argv.slice(3))) saveCodeCache();
    if (process.argv[2] === 'fetch' && madeStreams.every((stream) => stream.writableLength === 0)) {
      // A fetch is over when main() returns (state written and unlocked, mailbox closed, connection gone): exit
      // now instead of through Node's teardown of the environment, which took 13-18 ms of a 0.3-0.4 s fetch
      // (strace: last unlink to exit_group). Not while output is still queued (pipes are asynchronous on macOS).
      process.exit();
    }
  })
  .catch((err) => {
    // What main() does not turn into an exit code (a broken install, a bug): shown as Node shows an uncaught
    // error, with exit code 1 as before.
    process.exitCode = 1;
    console.error(err);
  });
