# nixremote for nixpkgs' callPackage: `pkgs.callPackage ./package.nix { }`.
# buildNpmPackage with its dependencies read from package-lock.json by importNpmLock, so no
# npmDepsHash is kept by hand (nixpkgs manual, "importNpmLock"); name and version come from
# package.json.
{
  lib,
  buildNpmPackage,
  importNpmLock,
  nodejs_20,
  openssh,
}:

let
  manifest = lib.importJSON ./package.json;
in
buildNpmPackage {
  pname = manifest.name;
  inherit (manifest) version;

  # Only what the build reads: the tests and benchmarks stay out of the store path.
  src = lib.fileset.toSource {
    root = ./.;
    fileset = lib.fileset.unions [
      ./package.json
      ./package-lock.json
      ./tsconfig.json
      ./bin
      ./src
      ./README.md
      ./LICENSE
    ];
  };

  npmDeps = importNpmLock { npmRoot = ./.; };
  npmConfigHook = importNpmLock.npmConfigHook;
  nodejs = nodejs_20;

  npmBuildScript = "build";
  # ssh2's optional cpu-features is a native addon it does without; not building it keeps
  # the build free of node-gyp.
  npmRebuildFlags = [ "--ignore-scripts" ];
  # prepack would clean and rebuild; the build above already did.
  npmPackFlags = [ "--ignore-scripts" ];

  # nixremote runs ssh, ssh-keygen and nix as the nix-daemon would find them: the ones on
  # PATH come first, OpenSSH from nixpkgs only when there are none.
  makeWrapperArgs = [
    "--suffix"
    "PATH"
    ":"
    (lib.makeBinPath [ openssh ])
  ];

  meta = {
    description = manifest.description;
    license = lib.licenses.mit;
    mainProgram = "nixremote";
    platforms = lib.platforms.linux ++ lib.platforms.darwin;
  };
}
