/**
 * The `postern` package: `import { Pop3Client } from 'postern'`. See README.md, "Client library".
 */
export * from './client/index.ts';
