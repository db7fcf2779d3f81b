// The flags of `nixremote init`, as commander hands them over.
export interface InitFlags {
  host?: string;
  port?: string;
  user?: string;
  name?: string;
  key?: string;
  hostKeyFingerprint?: string;
  copyKey?: string;
  passwordStdin?: boolean;
  restrict: boolean;
  /** --restrict-to-nix / --no-restrict-to-nix: a forced command on the key line. */
  restrictToNix?: boolean;
  /** --access trusted|signed. */
  access?: string;
  /** --machines-format toml|lines: Lix 2.95's TOML machines file, or the line format. */
  machinesFormat?: string;
  /** --connect-timeout: seconds, for the Host block's ConnectTimeout. */
  connectTimeout?: string;
  /** --builder-sudo: the builder's side of signed access done over ssh, through sudo. */
  builderSudo?: boolean;
  /** false with --no-fix-modes. */
  fixModes?: boolean;
  remoteProgram?: string;
  systems?: string;
  features?: string;
  mandatoryFeatures?: string;
  maxJobs?: string;
  speedFactor?: string;
  target?: string;
  output?: string;
  testBuild: boolean;
  yes?: boolean;
  dryRun?: boolean;
  adopt?: boolean;
  protocol?: string;
  verbose?: boolean;
}
