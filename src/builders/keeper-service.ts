// The service that runs `nixremote keep` every N seconds: a systemd service and timer on
// Linux, a launchd daemon on macOS. Text functions only; `keep --install` writes them as a
// plan and says (or runs, where the service manager runs) what makes them start.
import * as path from 'node:path';

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
