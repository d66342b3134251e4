/** The client library's public surface. */
export { AUTH_MECHANISMS, type AuthMechanism, type AuthOptions } from './auth.ts';
export { Capabilities } from './capabilities.ts';
export {
  type ClientState,
  type ConnectOptions,
  DEFAULT_PIPELINE_WINDOW,
  DEFAULT_TIMEOUT_MS,
  type ListEntry,
  type MessageInfo,
  Pop3Client,
  type StatResult,
  type TlsMode,
  type UidlEntry,
} from './client.ts';
export type { DebugFn, RetrieveSink } from './connection.ts';
export {
  Pop3AbortError,
  Pop3AuthError,
  Pop3ClientError,
  Pop3ClosedError,
  Pop3ErrorCode,
  Pop3ProtocolError,
  Pop3ResponseError,
  Pop3TimeoutError,
  Pop3TlsError,
} from './errors.ts';
export { MessageStream } from './message.ts';
export type { TlsInfo } from './transport.ts';
