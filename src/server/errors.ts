/**
 * From failures to `-ERR` replies. Every `-ERR` the server sends is a Pop3Error (protocol/errors.ts), whose
 * toLine() is the one place the wire form `-ERR [CODE] text` is built. Storage errors carry no protocol words
 * (storage/types.ts); they get their RFC 3206 / RFC 2449 codes here, at the edge, as Dovecot's pop3 does.
 */
import { Pop3Error, RespCode } from '../protocol/errors.ts';
import { isStorageError, type StorageErrorKind } from '../storage/types.ts';
import type { Catalogue } from './messages.ts';

/** The reply for a storage failure of a given kind. */
export function storageErrorReply(kind: StorageErrorKind, text: Catalogue): Pop3Error {
  switch (kind) {
    case 'inuse':
      // RFC 2449 §8.1.2: the maildrop is locked by another session.
      return new Pop3Error(text.inUse, RespCode.InUse);
    case 'notfound':
      // The message went away under us (another program removed it): a plain -ERR, the session goes on.
      return new Pop3Error(text.messageGone);
    case 'perm':
      // RFC 3206 §4: retrying will not help.
      return new Pop3Error(text.storagePerm, RespCode.SysPerm);
    case 'temp':
    case 'quota':
      // RFC 3206 §4: a temporary failure; the client may try again later.
      return new Pop3Error(text.storageTemp, RespCode.SysTemp);
  }
}

/**
 * The reply for any failure of a command: a Pop3Error as it is, a storage error by its kind, and anything
 * unexpected as [SYS/TEMP] (the caller logs it; the session state is unchanged).
 */
export function errorReply(err: unknown, text: Catalogue): Pop3Error {
  if (err instanceof Pop3Error) return err;
  if (isStorageError(err)) return storageErrorReply(err.kind, text);
  return new Pop3Error(text.internalError, RespCode.SysTemp);
}
