/**
 * Errors that carry their POP3 reply. Used by both the server (to answer) and the client (to surface a
 * server's `-ERR`). RFC 2449 §8 defines the bracketed response codes; RFC 3206 adds SYS/TEMP, SYS/PERM, AUTH.
 */

/** Response codes from RFC 2449 §8.1 and RFC 3206, plus UTF8 from RFC 6856. */
export const RespCode = {
  InUse: 'IN-USE',
  LoginDelay: 'LOGIN-DELAY',
  SysTemp: 'SYS/TEMP',
  SysPerm: 'SYS/PERM',
  Auth: 'AUTH',
  Utf8: 'UTF8',
} as const;
export type RespCode = (typeof RespCode)[keyof typeof RespCode];

/** A failure whose wire form is `-ERR [code] text`. */
export class Pop3Error extends Error {
  override readonly name = 'Pop3Error';
  constructor(
    readonly text: string,
    readonly respCode?: RespCode | string,
  ) {
    super(respCode ? `[${respCode}] ${text}` : text);
  }

  /** The reply line without CRLF, e.g. `-ERR [IN-USE] maildrop is locked`. */
  toLine(): string {
    return `-ERR ${this.message}`;
  }
}
