/**
 * The config of a server that keeps everything in the config file's folder: POP3 with STLS on `port` and
 * POP3S on `tlsPort` (127.0.0.1), the certificate in tls/, the Maildirs in mail/, the users file `users`.
 * `server` goes into [server]; `tail` follows the [auth] table. The development setup (dev.ts) and the tests'
 * real servers (test/helpers/realServer.ts) are both this; it imports nothing, so tests load it cheaply.
 */
export function folderConfig(o: { port: number; tlsPort: number; server: string; tail: string }): string {
  return `[server]
${o.server}

[[listen]]
address = "127.0.0.1"
port = ${o.port}
tls = "starttls"

[[listen]]
address = "127.0.0.1"
port = ${o.tlsPort}
tls = "implicit"

[tls]
cert = "tls/cert.pem"
key = "tls/key.pem"

[storage]
root = "mail"

[auth]
users_file = "users"
${o.tail}`;
}
