/** The client library's public surface. */

// The SASL mechanisms load with the library: a program imports it once and may connect many times, so their
// loading belongs to its start, not to its first login. login() imports them only when a server offers SASL,
// which spares `postern fetch` (one bundle, one connection, often USER/PASS) the cost; here that import finds
// them loaded. node:crypto is not loaded with them: only a mechanism that uses it (SCRAM, CRAM-MD5) loads it.
import './sasl.ts';

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
