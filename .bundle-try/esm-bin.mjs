import { createRequire } from 'node:module';
createRequire(import.meta.url)('../dist/src/cli.cjs');
