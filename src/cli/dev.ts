/**
 * The embedded default behind `npm start` (`postern serve --dev`): everything lives in ./var — a config file,
 * a Maildir tree, a user file, and a development TLS certificate made on first start — and a demo user with a
 * few demo messages is created once. Nothing here needs root: the ports are 1110 (POP3 + STLS) and 1995
 * (POP3S) on 127.0.0.1.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { generate } from 'selfsigned';
import { addUser } from '../auth/passwd.ts';
import { type Config, loadConfig } from '../config/config.ts';
import { Databases, openMailStore } from './backends.ts';
import { folderConfig } from './folder-config.ts';

export const DEV_DIR = 'var';
export const DEMO_USER = 'demo';

const DEV_CONFIG = `# Development config written by \`postern serve --dev\` on first start. Edit freely;
# delete the var/ folder to start over. Every key is described in README.md.
${folderConfig({
  port: 1110,
  tlsPort: 1995,
  server: 'greeting = "Postern POP3 server ready (development)."',
  tail: '\n[log]\nlevel = "info"\n',
})}`;

function demoMessages(now: Date): string[] {
  const date = now.toUTCString().replace('GMT', '+0000');
  const msg = (n: number, subject: string, body: string) =>
    [
      'Return-Path: <postmaster@postern.invalid>',
      'From: Postern <postmaster@postern.invalid>',
      `To: ${DEMO_USER}@localhost`,
      `Subject: ${subject}`,
      `Date: ${date}`,
      `Message-ID: <demo-${n}.${now.getTime()}@postern.invalid>`,
      'MIME-Version: 1.0',
      'Content-Type: text/plain; charset=utf-8',
      '',
      body,
      '',
    ].join('\r\n');
  return [
    msg(1, 'Welcome to Postern', 'This is the first demo message.\r\nRead it with curl or any POP3 client.'),
    msg(
      2,
      'Dots and long lines',
      '.A line that starts with a dot is dot-stuffed on the wire.\r\n..Two dots become three.\r\n.\r\nThat line above was a single dot.',
    ),
    msg(3, 'Grüße in UTF-8', 'Ünïcödé body text: ✉️ 📬\r\nThe end.'),
  ];
}

export interface DevSetup {
  readonly config: Config;
  readonly configFile: string;
  readonly password: string;
  readonly created: boolean;
}

/** Creates (once) and loads the development setup under `dir`. */
export async function prepareDev(dir = DEV_DIR): Promise<DevSetup> {
  const root = resolve(dir);
  mkdirSync(join(root, 'tls'), { recursive: true, mode: 0o700 });
  const configFile = join(root, 'postern.toml');
  if (!existsSync(configFile)) writeFileSync(configFile, DEV_CONFIG, { mode: 0o600 });

  const certFile = join(root, 'tls', 'cert.pem');
  const keyFile = join(root, 'tls', 'key.pem');
  if (!existsSync(certFile) || !existsSync(keyFile)) {
    const pems = await generate([{ name: 'commonName', value: 'localhost' }], {
      keySize: 2048,
      algorithm: 'sha256',
      extensions: [
        { name: 'basicConstraints', cA: false },
        {
          name: 'subjectAltName',
          altNames: [
            { type: 2, value: 'localhost' },
            { type: 7, ip: '127.0.0.1' },
            { type: 7, ip: '::1' },
          ],
        },
      ],
    });
    writeFileSync(keyFile, pems.private, { mode: 0o600 });
    writeFileSync(certFile, pems.cert, { mode: 0o644 });
  }

  const config = loadConfig(configFile);
  const passwordFile = join(root, 'demo-password');
  let created = false;
  if (!existsSync(passwordFile)) {
    const password = randomBytes(9).toString('base64url');
    await addUser(config.auth.usersFile, DEMO_USER, password);
    const dbs = new Databases();
    const store = await openMailStore(config, dbs);
    for (const m of demoMessages(new Date())) await store.deliver(DEMO_USER, Readable.from([Buffer.from(m)]));
    await store.close();
    await dbs.close();
    // Kept so the banner can print it on every start; a development convenience, never used in production.
    writeFileSync(passwordFile, `${password}\n`, { mode: 0o600 });
    created = true;
  }
  const password = readFileSync(passwordFile, 'utf8').trim();
  return { config, configFile, password, created };
}

export function devBanner(setup: DevSetup): string {
  const p = setup.password;
  return [
    '',
    'Postern is running (development setup in ./var).',
    `  POP3 + STLS  127.0.0.1:1110      POP3S (implicit TLS)  127.0.0.1:1995`,
    `  demo user    ${DEMO_USER}    password  ${p}`,
    '  try          curl -k pop3s://' + `${DEMO_USER}:${p}@127.0.0.1:1995/1`,
    `  config       ${setup.configFile}  (certificate: self-signed, for development only)`,
    '  logs         JSON lines on stdout; Ctrl-C stops the server',
    '',
  ].join('\n');
}
