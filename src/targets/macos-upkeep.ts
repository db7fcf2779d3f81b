// What is known to undo a Nix install on macOS, checked from files. Each is a report
// people keep filing against Nix's installers:
// - macOS updates put back the stock /etc/zshrc and /etc/bashrc, dropping the lines the
//   installer added to source nix-daemon.sh (NixOS/nix#3616, #7100, #7841): new shells lose
//   nix, and nixremote with it. The daemon itself keeps running.
// - /nix exists at boot only because /etc/synthetic.conf names it (synthetic.conf(5)); an
//   update or a clean-up that loses the line loses /nix at the next boot (NixOS/nix#7106).
// - The launchd job that starts the nix-daemon at boot is a plist in /Library/LaunchDaemons.
import type { Finding, TargetCtx } from './types.js';

const HOOK = '/nix/var/nix/profiles/default/etc/profile.d/nix-daemon.sh';

export function macosUpkeep(ctx: TargetCtx, plist: string, rcFiles: string[]): Finding[] {
  const out: Finding[] = [];
  for (const rc of rcFiles) {
    const text = ctx.read(rc);
    if (text !== null && !text.includes('nix-daemon.sh')) {
      out.push({
        summary: `${rc} no longer sources Nix's nix-daemon.sh`,
        cause:
          'macOS updates put back the stock /etc/zshrc and /etc/bashrc (NixOS/nix#3616), so new shells lose nix and nixremote from PATH; the nix-daemon keeps running',
        fix: `add to ${rc}: if [ -e '${HOOK}' ]; then . '${HOOK}'; fi`,
      });
    }
  }
  const synthetic = ctx.read('/etc/synthetic.conf');
  if (!(synthetic ?? '').split('\n').some((l) => l.split(/\s+/)[0] === 'nix')) {
    out.push({
      summary: `/etc/synthetic.conf ${synthetic === null ? 'is missing' : 'has no "nix" line'}`,
      cause:
        'macOS makes /nix at boot only from a "nix" line in /etc/synthetic.conf; without it /nix is gone after the next restart',
      fix: 'add the line: echo nix | sudo tee -a /etc/synthetic.conf',
    });
  }
  if (!ctx.exists(plist)) {
    out.push({
      summary: `${plist} is missing`,
      cause:
        'launchd starts the nix-daemon at boot from that file; without it no daemon runs after a restart, and no build offloads',
      fix: 'reinstall Nix with the same installer; it puts the launchd job back',
    });
  }
  return out;
}
