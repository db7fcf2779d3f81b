// The registry's window on this machine: files read as they are, for the build user.
import * as fs from 'node:fs';
import { readText } from '../io/files.js';
import type { Install } from '../init/install.js';
import type { RegistryCtx } from './registry.js';

export function realRegistryCtx(install: Install, modulePath?: string): RegistryCtx {
  return {
    read: readText,
    readdir: (p) => {
      try {
        return fs.readdirSync(p);
      } catch {
        return [];
      }
    },
    env: process.env,
    who: { multiUser: install.multiUser, home: install.user.home, name: install.user.name },
    modulePath,
  };
}
