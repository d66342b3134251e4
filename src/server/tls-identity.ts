/**
 * Certificate → user for SASL EXTERNAL (RFC 4422 App. A): the user named by a client certificate that the
 * configured CA issued, or undefined.
 */
import type { X509Certificate } from 'node:crypto';
import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';

/** The subject field that names the user. */
export type CertUserField = 'CN' | 'emailAddress';

export function certificateUser(
  socket: Socket,
  field: CertUserField | undefined,
  ca: X509Certificate | undefined,
  now = Date.now(),
): string | undefined {
  if (field === undefined || ca === undefined || !(socket instanceof TLSSocket)) return undefined;
  const peer = socket.getPeerX509Certificate();
  // A TLSSocket made by hand (as ours are, for PROXY and STLS) does not run Node's own verification of the
  // client certificate, so check it here: issued and signed by the configured CA, and valid now. The TLS
  // handshake itself proved that the client holds the certificate's key.
  if (!peer?.checkIssued(ca) || !peer.verify(ca.publicKey)) return undefined;
  if (now < Date.parse(peer.validFrom) || now > Date.parse(peer.validTo)) return undefined;
  const value = socket.getPeerCertificate().subject?.[field];
  return typeof value === 'string' && value.length > 0 ? value : undefined;
}
