// The service that runs `nixremote keep` every N seconds: a systemd service and timer on
// Linux, a launchd daemon on macOS. Text functions only; `keep --install` writes them as a
// plan and says (or runs, where the service manager runs) what makes them start.
import * as path from 'node:path';
import { nixOptions, nixString, type ModuleSystem } from '../nix/nixos-module.js';
import type { Markers } from '../text/managed-block.js';

export const SYSTEMD_DIR = '/etc/systemd/system';
export const SERVICE = 'nixremote-keep.service';
export const TIMER = 'nixremote-keep.timer';
export const LAUNCHD_PLIST = '/Library/LaunchDaemons/org.nixremote.keep.plist';
export const LAUNCHD_LABEL = 'org.nixremote.keep';
export const LAUNCHD_LOG = '/var/log/nixremote-keep.log';

/** What the service runs: this node and this nixremote, by their real paths. */
export interface KeeperCommand {
  node: string;
  cli: string;
}

/**
 * Where Nix and ssh are for a service: Nix's multi-user profile, NixOS's system path, then
 * the usual directories (a service does not get a login shell's PATH).
 */
export const SERVICE_PATH =
  '/nix/var/nix/profiles/default/bin:/run/current-system/sw/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export const MARK = '# Written by nixremote keep --install; nixremote keep --uninstall removes it.';

export function systemdService(k: KeeperCommand): string {
  return [
    MARK,
    '[Unit]',
    "Description=nixremote keep: builders that are down out of Nix's machines file, and back when they answer",
    'Wants=network-online.target',
    'After=network-online.target',
    '',
    '[Service]',
    'Type=oneshot',
    `Environment=PATH=${SERVICE_PATH}`,
    `ExecStart=${k.node} ${k.cli} keep`,
    // keep exits 1 when a builder is down: news for the log, not a failure of the service.
    'SuccessExitStatus=1',
    '',
  ].join('\n');
}

export function systemdTimer(intervalS: number): string {
  return [
    MARK,
    '[Unit]',
    `Description=Run nixremote keep every ${intervalS} s`,
    '',
    '[Timer]',
    `OnBootSec=${intervalS}`,
    `OnUnitActiveSec=${intervalS}`,
    'AccuracySec=1',
    '',
    '[Install]',
    'WantedBy=timers.target',
    '',
  ].join('\n');
}

const xml = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** A launchd daemon (launchd.plist(5)): StartInterval seconds, its output to a log file. */
export function launchdPlist(k: KeeperCommand, intervalS: number): string {
  const args = [k.node, k.cli, 'keep'].map((a) => `      <string>${xml(a)}</string>`);
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    '<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">',
    `<!-- ${MARK.replace(/^# /, '')} -->`,
    '<plist version="1.0">',
    '  <dict>',
    '    <key>Label</key>',
    `    <string>${LAUNCHD_LABEL}</string>`,
    '    <key>ProgramArguments</key>',
    '    <array>',
    ...args,
    '    </array>',
    '    <key>EnvironmentVariables</key>',
    '    <dict>',
    '      <key>PATH</key>',
    `      <string>${SERVICE_PATH}</string>`,
    '    </dict>',
    '    <key>StartInterval</key>',
    `    <integer>${intervalS}</integer>`,
    '    <key>RunAtLoad</key>',
    '    <true/>',
    '    <key>StandardOutPath</key>',
    `    <string>${LAUNCHD_LOG}</string>`,
    '    <key>StandardErrorPath</key>',
    `    <string>${LAUNCHD_LOG}</string>`,
    '  </dict>',
    '</plist>',
    '',
  ].join('\n');
}

/** The files of the keeper on this platform. */
export function keeperFiles(platform: string, k: KeeperCommand, intervalS: number): { path: string; text: string }[] {
  if (platform === 'darwin') return [{ path: LAUNCHD_PLIST, text: launchdPlist(k, intervalS) }];
  return [
    { path: path.join(SYSTEMD_DIR, SERVICE), text: systemdService(k) },
    { path: path.join(SYSTEMD_DIR, TIMER), text: systemdTimer(intervalS) },
  ];
}

/** What starts it (and stops it), for the user to run where the service manager is not running here. */
export function keeperStart(platform: string): string {
  return platform === 'darwin'
    ? `launchctl bootstrap system ${LAUNCHD_PLIST}`
    : `systemctl daemon-reload && systemctl enable --now ${TIMER}`;
}

export function keeperStop(platform: string): string {
  return platform === 'darwin' ? `launchctl bootout system/${LAUNCHD_LABEL}` : `systemctl disable --now ${TIMER}`;
}

/** The interval of an installed keeper, read back from its files (null: none installed). */
export function installedInterval(read: (p: string) => string | null, platform: string): number | null {
  if (platform === 'darwin') {
    const t = read(LAUNCHD_PLIST);
    const m = t && /<key>StartInterval<\/key>\s*<integer>(\d+)<\/integer>/.exec(t);
    return m ? Number(m[1]) : null;
  }
  const t = read(path.join(SYSTEMD_DIR, TIMER));
  const m = t?.includes(MARK) ? /^OnUnitActiveSec=(\d+)$/m.exec(t) : null;
  return m ? Number(m[1]) : null;
}

// On NixOS and nix-darwin /etc/nix/machines is built from the configuration (a link into
// the store) and cannot be edited between rebuilds. The keeper's block in nixremote's module
// points Nix's `builders` at a live copy instead, which each round writes from
// /etc/nix/machines with the builders that are down commented out: Nix reads an @file afresh
// for each build (machines.cc), so the next build goes without them.

/** The live machines file the keeper writes on a declarative system. */
export function liveMachinesPath(system: ModuleSystem): string {
  // /var/lib is NixOS's (and systemd's) place for state; macOS keeps it in /var/db.
  return system === 'nixos' ? '/var/lib/nixremote/machines' : '/var/db/nixremote/machines';
}

/** The first words of a live machines file (the keeper's, never the user's). */
export const LIVE_HEADER = '# Written by nixremote keep from ';

export const KEEPER_MARKERS: Markers = { begin: '# BEGIN nixremote keeper', end: '# END nixremote keeper' };

/** What the keeper service runs on a declarative system: a round that writes the live file. */
export function liveKeepArgs(k: KeeperCommand, live: string, module: string): string[] {
  return [k.node, k.cli, 'keep', '--live', live, '--module', module];
}

/** The paths a service command line holds must not need quoting (systemd splits ExecStart at spaces). */
export function plainPath(p: string): boolean {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(p);
}

/**
 * The keeper's block for nixremote's module: `builders` at the live file, and the service
 * that writes it every intervalS seconds. NixOS: systemd.services/timers, with Nix and ssh
 * from the system on its `path` (nixpkgs builds a service's PATH from it, so
 * environment.PATH cannot be set beside it); nix-darwin: launchd.daemons.<name>.serviceConfig,
 * the keys of launchd.plist(5), as the plist above.
 */
export function keeperModuleBody(system: ModuleSystem, k: KeeperCommand, module: string, intervalS: number): string[] {
  const live = liveMachinesPath(system);
  const o = nixOptions(system);
  const args = liveKeepArgs(k, live, module);
  const head = [
    `      # nixremote keep, every ${intervalS} s: Nix takes its builders from a live copy of`,
    '      # /etc/nix/machines that leaves out the ones that are down (each round writes it).',
    `      ${o.prefix}.${o.settings}.builders = ${nixString(`@${live}`)};`,
  ];
  if (system === 'nixos')
    return [
      '    ({ config, pkgs, ... }: {',
      ...head,
      '      systemd.services.nixremote-keep = {',
      `        description = ${nixString("nixremote keep: builders that are down out of Nix's machines file, and back when they answer")};`,
      '        wants = [ "network-online.target" ];',
      '        after = [ "network-online.target" ];',
      '        path = [ config.nix.package pkgs.openssh ];',
      '        serviceConfig = {',
      '          Type = "oneshot";',
      `          ExecStart = ${nixString(args.join(' '))};`,
      // keep exits 1 when a builder is down: news for the journal, not a failure.
      '          SuccessExitStatus = 1;',
      '        };',
      '      };',
      // OnActiveSec counts from the timer's start, at boot and at the switch that adds it alike
      // (systemd.timer(5)): the live file is there a second later.
      '      systemd.timers.nixremote-keep = {',
      '        wantedBy = [ "timers.target" ];',
      `        timerConfig = { OnActiveSec = 1; OnUnitActiveSec = ${intervalS}; AccuracySec = 1; };`,
      '      };',
      '    })',
    ];
  return [
    '    {',
    ...head,
    '      launchd.daemons.nixremote-keep.serviceConfig = {',
    `        ProgramArguments = [ ${args.map(nixString).join(' ')} ];`,
    `        EnvironmentVariables.PATH = ${nixString(SERVICE_PATH)};`,
    `        StartInterval = ${intervalS};`,
    '        RunAtLoad = true;',
    `        StandardOutPath = ${nixString(LAUNCHD_LOG)};`,
    `        StandardErrorPath = ${nixString(LAUNCHD_LOG)};`,
    '      };',
    '    }',
  ];
}

/** The interval of the keeper in a module nixremote wrote (null: none there). */
export function moduleKeeperInterval(text: string): number | null {
  const m = /# nixremote keep, every (\d+) s:/.exec(text);
  return m && text.includes(KEEPER_MARKERS.begin) ? Number(m[1]) : null;
}
