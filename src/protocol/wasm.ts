/** Instantiating the project's small WebAssembly loops (the RETR encoder, the client's body decoder). */
import { Buffer } from 'node:buffer';

/** The part of the WebAssembly API used here (the project's TypeScript libs do not declare it). */
interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object) => { exports: Record<string, unknown> };
}

export interface WasmInstance {
  exports: Record<string, unknown>;
  /** The module's memory, grown to the size asked for (it never grows again, so views of it stay valid). */
  buffer: ArrayBuffer;
}

/**
 * The module whose bytes are `base64`, its memory grown to at least `bytes`; null where WebAssembly is not
 * available (e.g. node --jitless) or the module cannot be compiled (no SIMD): callers then run their
 * JavaScript loop, which does the same work.
 */
export function instantiateWasm(base64: string, bytes: number): WasmInstance | null {
  const api = (globalThis as { WebAssembly?: WasmApi }).WebAssembly;
  if (api === undefined) return null;
  try {
    const instance = new api.Instance(new api.Module(Buffer.from(base64, 'base64')));
    const memory = instance.exports.memory as { buffer: ArrayBuffer; grow(pages: number): number };
    const pages = Math.ceil(bytes / 65536) - memory.buffer.byteLength / 65536;
    if (pages > 0) memory.grow(pages); // once: growing detaches the buffers views were made of
    return { exports: instance.exports, buffer: memory.buffer };
  } catch {
    return null;
  }
}
