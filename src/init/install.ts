// Who builds: on a multi-user install the nix-daemon runs builds (and the build hook's
// ssh) as root, so root's ~/.ssh and /etc/nix are what count; on a single-user install
// the invoking user builds, with their own ~/.ssh and ~/.config/nix.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { detectTarget, realTargetCtx, type Target, type TargetCtx, type TargetName } from '../targets/index.js';

export interface BuildUser {
  name: string;
  uid: number;
  gid: number;
  /** From the passwd entry: OpenSSH takes home from there, not from $HOME. */
  home: string;
}

export interface Install {
  multiUser: boolean;
  reason: string;
  user: BuildUser;
  /** Where nix.conf and the machines file go. */
  confDir: string;
  daemon: { restart: string[] | null; how: string } | null;
  /** Where this Nix keeps its config (src/targets), and where its settings go (null: a module). */
  target: TargetName;
  settingsFile: string | null;
}

export const DAEMON_SOCKET = '/nix/var/nix/daemon-socket/socket';

function writable(p: string): boolean {
  try {
    fs.accessSync(p, fs.constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

export function detectInstall(env: NodeJS.ProcessEnv = process.env): Install {
  const me = os.userInfo();
  const user: BuildUser = { name: me.username, uid: me.uid, gid: me.gid, home: me.homedir };
  let reason: string | null = null;
  if (env.NIX_REMOTE === 'daemon') reason = 'NIX_REMOTE=daemon is set';
  else if (fs.existsSync(DAEMON_SOCKET)) reason = `the daemon socket ${DAEMON_SOCKET} exists`;
  else if (fs.existsSync('/nix/store') && !writable('/nix/store')) reason = `this user cannot write /nix/store`;
  const multiUser = reason !== null;
  const isRoot = me.uid === 0;
  const systemConf = env.NIX_CONF_DIR || '/etc/nix';
  const userConf = path.join(env.XDG_CONFIG_HOME || path.join(user.home, '.config'), 'nix');
  const confDir = multiUser || isRoot ? systemConf : userConf;
  const tctx = realTargetCtx(confDir);
  const { target } = detectTarget(tctx);
  return {
    multiUser,
    reason: reason ?? 'no nix-daemon socket, NIX_REMOTE is not daemon, and this user can write /nix/store',
    user,
    confDir,
    daemon: multiUser ? daemonRestart(target, tctx) : null,
    target: target.name,
    settingsFile: target.settingsFile(tctx),
  };
}

/** How this machine's target makes the nix-daemon re-read its settings. */
function daemonRestart(target: Target, ctx: TargetCtx): { restart: string[] | null; how: string } {
  const restart = target.restart(ctx);
  return { restart, how: restart ? restart.join(' ') : target.restartHow(ctx) };
}

/** A path that is a symlink into /nix/store is managed declaratively (NixOS, home-manager). */
export function storeSymlink(p: string): string | null {
  try {
    if (!fs.lstatSync(p).isSymbolicLink()) return null;
    const target = fs.realpathSync(p);
    return target.startsWith('/nix/store/') ? target : null;
  } catch {
    return null;
  }
}
