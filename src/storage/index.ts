/** The storage layer's public face: the contract, the stores, and a factory from a plain description. */
import { MaildirStore, type MaildirStoreOptions } from './maildir/store.ts';
import { MemoryStore, type MemoryStoreOptions } from './memory/store.ts';
import type { MailStore } from './types.ts';

export { MaildirMaildrop, MaildirStore, type MaildirStoreOptions } from './maildir/store.ts';
export { type MemoryFaults, MemoryStore, type MemoryStoreOptions, type StoredMessage } from './memory/store.ts';
export * from './types.ts';

export type StoreConfig =
  | ({ readonly type: 'maildir' } & MaildirStoreOptions)
  | ({ readonly type: 'memory' } & MemoryStoreOptions);

export function createMailStore(config: StoreConfig): MailStore {
  switch (config.type) {
    case 'maildir':
      return new MaildirStore(config);
    case 'memory':
      return new MemoryStore(config);
  }
}
