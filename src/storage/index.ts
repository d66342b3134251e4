/** The storage layer's public face: the contract and the stores (cli/backends.ts builds one from config). */
export { MaildirMaildrop } from './maildir/maildrop.ts';
export { MaildirStore, type MaildirStoreOptions } from './maildir/store.ts';
export { type MemoryFaults, MemoryStore, type MemoryStoreOptions, type StoredMessage } from './memory/store.ts';
export * from './types.ts';
