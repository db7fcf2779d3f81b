import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root (tests run from dist/test/unit). */
export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
