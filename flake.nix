{
  description = "Set up remote Nix builders over SSH, and find out why builds stopped offloading";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs =
    { self, nixpkgs }:
    let
      systems = [
        "x86_64-linux"
        "aarch64-linux"
        "x86_64-darwin"
        "aarch64-darwin"
      ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f system nixpkgs.legacyPackages.${system});
    in
    {
      packages = forAllSystems (system: pkgs: { default = pkgs.callPackage ./package.nix { }; });
      apps = forAllSystems (
        system: pkgs: {
          default = {
            type = "app";
            program = nixpkgs.lib.getExe self.packages.${system}.default;
          };
        }
      );
    };
}
