#!/usr/bin/env node
// A small assembler for the subset of the WebAssembly text format that src/protocol/dot-encode.wat uses, so the
// module's readable source is what is committed and reviewed, and its bytes are derived from it here (no
// toolchain to install). The .wat is ordinary WAT (flat instructions, not folded), which wat2wasm accepts too.
//
//   node scripts/wat-subset.mjs src/protocol/dot-encode.wat src/protocol/dotEncodeWasm.ts
//
// writes a TypeScript module exporting the bytes as base64. test/protocol/dotWasm.test.ts checks that the
// committed bytes are exactly what this script makes of the .wat, so the two cannot drift apart.
//
// Supported: one (memory (export "…") N), functions with (export "…"), (param $x T), (result T), (local $x T) of
// types i32 and v128, and the instructions in OPS below; block/loop/if/else/end with $labels for br and br_if.
import { readFileSync, writeFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

const TYPES = { i32: 0x7f, v128: 0x7b };

/** Opcodes without immediates, or with the immediate kind named: 'local', 'label', 'i32', 'mem', 'simd-mem'. */
const OPS = {
  unreachable: [0x00],
  nop: [0x01],
  return: [0x0f],
  drop: [0x1a],
  select: [0x1b],
  br: [0x0c, 'label'],
  br_if: [0x0d, 'label'],
  'local.get': [0x20, 'local'],
  'local.set': [0x21, 'local'],
  'local.tee': [0x22, 'local'],
  'i32.load': [0x28, 'mem', 2],
  'i32.load8_u': [0x2d, 'mem', 0],
  'i32.store': [0x36, 'mem', 2],
  'i32.store8': [0x3a, 'mem', 0],
  'i32.const': [0x41, 'i32'],
  'i32.eqz': [0x45],
  'i32.eq': [0x46],
  'i32.ne': [0x47],
  'i32.lt_s': [0x48],
  'i32.lt_u': [0x49],
  'i32.gt_u': [0x4b],
  'i32.le_u': [0x4d],
  'i32.ge_u': [0x4f],
  'i32.ctz': [0x68],
  'i32.add': [0x6a],
  'i32.sub': [0x6b],
  'i32.and': [0x71],
  'i32.or': [0x72],
  'i32.xor': [0x73],
  'i32.shl': [0x74],
  'i32.shr_u': [0x76],
  // SIMD (prefix 0xfd, then the opcode as LEB128).
  'v128.load': [[0xfd, 0x00], 'mem', 0],
  'v128.store': [[0xfd, 0x0b], 'mem', 0],
  'i8x16.splat': [[0xfd, 0x0f]],
  'i8x16.eq': [[0xfd, 0x23]],
  'v128.or': [[0xfd, 0x50]],
  'v128.any_true': [[0xfd, 0x53]],
  'i8x16.bitmask': [[0xfd, 0x64]],
};

function uleb(n) {
  const out = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
  return out;
}

function sleb(n) {
  const out = [];
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (b & 0x40) === 0) || (n === -1 && (b & 0x40) !== 0)) {
      out.push(b);
      return out;
    }
    out.push(b | 0x80);
  }
}

const str = (s) => [...uleb(Buffer.byteLength(s)), ...Buffer.from(s, 'utf8')];
const vec = (items) => [...uleb(items.length), ...items.flat()];
const section = (id, body) => [id, ...uleb(body.length), ...body];

/** Tokens: parentheses, strings, words; `;;` comments to the end of the line are dropped. */
function tokenize(text) {
  const tokens = [];
  const re = /;;[^\n]*|\(;[\s\S]*?;\)|"(?:[^"\\]|\\.)*"|[()]|[^\s()]+/g;
  for (const m of text.matchAll(re)) {
    if (m[0].startsWith(';;') || m[0].startsWith('(;')) continue;
    tokens.push(m[0]);
  }
  return tokens;
}

/** Nested lists of tokens from the parentheses. */
function parse(tokens) {
  const stack = [[]];
  for (const t of tokens) {
    if (t === '(') stack.push([]);
    else if (t === ')') {
      const done = stack.pop();
      if (stack.length === 0) throw new Error('unbalanced )');
      stack.at(-1).push(done);
    } else stack.at(-1).push(t);
  }
  if (stack.length !== 1) throw new Error('unbalanced (');
  return stack[0];
}

const unquote = (s) => JSON.parse(s);

function assembleFunc(list) {
  const params = [];
  const locals = [];
  const results = [];
  const exports = [];
  const body = [];
  for (const item of list.slice(1)) {
    if (Array.isArray(item)) {
      const [head, ...rest] = item;
      if (head === 'export') exports.push(unquote(rest[0]));
      else if (head === 'param') params.push({ name: rest[0], type: rest[1] });
      else if (head === 'local') locals.push({ name: rest[0], type: rest[1] });
      else if (head === 'result') results.push(rest[0]);
      else throw new Error(`unsupported in func: (${head} …)`);
    } else body.push(item);
  }
  const index = new Map([...params, ...locals].map((v, i) => [v.name, i]));
  const code = [];
  const labels = []; // innermost last; null for an unnamed if
  for (let k = 0; k < body.length; k++) {
    const t = body[k];
    if (t === 'block' || t === 'loop' || t === 'if') {
      const named = body[k + 1]?.startsWith('$') ? body[++k] : null;
      labels.push(named);
      code.push(t === 'block' ? 0x02 : t === 'loop' ? 0x03 : 0x04, 0x40); // empty block type
      continue;
    }
    if (t === 'else') {
      code.push(0x05);
      continue;
    }
    if (t === 'end') {
      if (labels.length === 0) throw new Error('end without block');
      labels.pop();
      code.push(0x0b);
      continue;
    }
    const op = OPS[t];
    if (!op) throw new Error(`unsupported instruction ${t}`);
    const [opcode, imm, align] = op;
    if (Array.isArray(opcode)) code.push(opcode[0], ...uleb(opcode[1]));
    else code.push(opcode);
    if (imm === 'local') {
      const name = body[++k];
      if (!index.has(name)) throw new Error(`unknown local ${name}`);
      code.push(...uleb(index.get(name)));
    } else if (imm === 'label') {
      const name = body[++k];
      const depth = labels.length - 1 - labels.lastIndexOf(name);
      if (labels.lastIndexOf(name) === -1) throw new Error(`unknown label ${name}`);
      code.push(...uleb(depth));
    } else if (imm === 'i32') {
      code.push(...sleb(Number(body[++k])));
    } else if (imm === 'mem') {
      let offset = 0;
      while (body[k + 1]?.startsWith('offset=')) offset = Number(body[++k].slice(7));
      code.push(...uleb(align), ...uleb(offset));
    }
  }
  if (labels.length !== 0) throw new Error('unclosed block');
  code.push(0x0b);
  const groups = locals.map((l) => [1, TYPES[l.type]]);
  const fn = [...vec(groups.map((g) => [...uleb(g[0]), g[1]])), ...code];
  return {
    type: [0x60, ...vec(params.map((p) => [TYPES[p.type]])), ...vec(results.map((r) => [TYPES[r]]))],
    exports,
    code: [...uleb(fn.length), ...fn],
  };
}

/** The module's bytes from its WAT text. */
export function assemble(text) {
  const top = parse(tokenize(text));
  if (top.length !== 1 || top[0][0] !== 'module') throw new Error('expected one (module …)');
  const funcs = [];
  let memory = null;
  for (const item of top[0].slice(1)) {
    if (item[0] === 'func') funcs.push(assembleFunc(item));
    else if (item[0] === 'memory') {
      const exp = item.find((x) => Array.isArray(x) && x[0] === 'export');
      memory = { export: exp ? unquote(exp[1]) : null, pages: Number(item.at(-1)) };
    } else throw new Error(`unsupported in module: (${item[0]} …)`);
  }
  const exports = [];
  funcs.forEach((f, i) => {
    for (const name of f.exports) exports.push([...str(name), 0x00, ...uleb(i)]);
  });
  if (memory?.export) exports.push([...str(memory.export), 0x02, 0x00]);
  const bytes = [
    ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00],
    ...section(1, vec(funcs.map((f) => f.type))),
    ...section(3, vec(funcs.map((_, i) => uleb(i)))),
    ...(memory ? section(5, vec([[0x00, ...uleb(memory.pages)]])) : []),
    ...section(7, vec(exports)),
    ...section(10, vec(funcs.map((f) => f.code))),
  ];
  return Buffer.from(bytes);
}

/** The TypeScript module holding the bytes of `watPath`. */
export function moduleSource(watPath, bytes) {
  const b64 = bytes.toString('base64');
  const lines = b64.match(/.{1,100}/g) ?? [];
  return (
    `// Generated by scripts/wat-subset.mjs from ${watPath}: do not edit; change the .wat and run\n` +
    `//   node scripts/wat-subset.mjs ${watPath} <this file>\n` +
    `export const WASM_BASE64 =\n${lines.map((l) => `  '${l}'`).join(' +\n')};\n`
  );
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const [watPath, outPath] = process.argv.slice(2);
  if (!watPath || !outPath) {
    console.error('usage: node scripts/wat-subset.mjs FILE.wat OUT.ts');
    process.exit(2);
  }
  const bytes = assemble(readFileSync(watPath, 'utf8'));
  if (!WebAssembly.validate(bytes)) throw new Error('the assembled module does not validate');
  writeFileSync(outPath, moduleSource(watPath, bytes));
  console.log(`${outPath}: ${bytes.length} bytes`);
}
