"""Building Go programs from the Go module proxy into the cache, once per version.

No registry we can reach ships kube-apiserver, etcd or containerd binaries, but each is a
Go module the proxy serves. A program whose own ``go.mod`` replaces modules by relative
paths (Kubernetes' staging repositories, etcd's submodules) cannot be ``go install``-ed,
so every build runs in a scratch module of ours that requires it (and, where needed,
pins the replaced modules to served versions), adds its commands with ``go get -tool``
and builds each with ``go build``. Module and build caches live in ``cache.root()/go``,
shared by every build, so a rebuild after a recipe change takes seconds, not minutes.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from stack import cache
from stack.shell import run, say

# The machine's current Go; Debian's older golang-go may come first on PATH.
PREFERRED_GO = Path("/usr/local/go/bin/go")


@dataclass(frozen=True)
class GoBuild:
    """One cached set of binaries built from a scratch module.

    ``name`` and ``version`` key the cache directory; ``requires`` are the scratch
    module's requirements, ``replaces`` its replace directives (module -> "module version"),
    ``commands`` maps each binary's name to its package. ``recipe`` is bumped when flags
    change, so machines rebuild what an older recipe made.
    """

    name: str
    version: str
    requires: Mapping[str, str]
    commands: Mapping[str, str]
    replaces: Mapping[str, str] = field(default_factory=dict)
    go_directive: str | None = None
    godebug: str | None = None
    tags: Sequence[str] = ()
    ldflags: Sequence[str] = ("-s", "-w")
    recipe: str = "1"

    @property
    def bin_dir(self) -> Path:
        return cache.root() / self.name / f"{self.version}-r{self.recipe}" / "bin"

    def binary(self, command: str) -> Path:
        return self.bin_dir / command

    def ensure(self, *, took: str = "a few minutes") -> Path:
        """Builds the binaries unless cached; returns their directory."""
        if all(self.binary(command).is_file() for command in self.commands):
            return self.bin_dir
        say(f"building {self.name} {self.version} ({', '.join(self.commands)}) from the Go "
            f"module proxy (first run on this machine only; {took})")
        source = cache.root() / "src" / f"{self.name}-{self.version}"
        shutil.rmtree(source, ignore_errors=True)
        source.mkdir(parents=True)
        (source / "go.mod").write_text(self._scratch_module())
        logs = cache.root() / "logs"
        env = go_env()
        run([str(go()), "get", "-tool", *(f"{pkg}@{self.requires_version(pkg)}"
                                          for pkg in self.commands.values())],
            cwd=source, env=env, log=logs / f"{self.name}-get.log")
        staging = self.bin_dir.with_name("bin.partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        for command, package in self.commands.items():
            say(f"  go build {package}")
            run([str(go()), "build", "-trimpath", f"-tags={','.join(self.tags)}",
                 f"-ldflags={' '.join(self.ldflags)}", "-o", str(staging / command), package],
                cwd=source, env=env, log=logs / f"{self.name}-{command}-build.log")
        # Renamed into place only when complete: an interrupted build is never taken as done.
        shutil.rmtree(self.bin_dir, ignore_errors=True)
        staging.rename(self.bin_dir)
        say(f"{self.name} {self.version} cached in {self.bin_dir}")
        return self.bin_dir

    def requires_version(self, package: str) -> str:
        """The required version of the module that holds ``package``."""
        module = max((m for m in self.requires if package == m or package.startswith(m + "/")),
                     key=len)
        return self.requires[module]

    def _scratch_module(self) -> str:
        lines = [f"module kubeledger-build/{self.name}", ""]
        if self.go_directive:
            lines.append(f"go {self.go_directive}")
        if self.godebug:
            lines.append(f"godebug {self.godebug}")
        lines += ["", "require ("]
        lines += [f"\t{module} {version}" for module, version in self.requires.items()]
        lines.append(")")
        if self.replaces:
            lines += ["", "replace ("]
            lines += [f"\t{module} => {target}" for module, target in sorted(self.replaces.items())]
            lines.append(")")
        return "\n".join(lines) + "\n"


def go() -> Path:
    if PREFERRED_GO.is_file():
        return PREFERRED_GO
    found = shutil.which("go")
    if found is None:
        raise RuntimeError(f"building needs Go 1.26+; neither {PREFERRED_GO} nor `go` on PATH")
    return Path(found)


def go_env() -> dict[str, str]:
    """Static binaries, caches of our own, and the Go toolchain a module asks for."""
    root = cache.root() / "go"
    return {
        "GOMODCACHE": str(root / "mod"),
        "GOCACHE": str(root / "build"),
        "CGO_ENABLED": "0",
        "GOFLAGS": "-buildvcs=false",
        "GOTOOLCHAIN": "auto",
    }


def download_mod_file(module: str, version: str) -> Path:
    """Fetches ``module@version``'s go.mod into the module cache; returns its path."""
    run([str(go()), "mod", "download", f"{module}@{version}"], cwd=cache.root(), env=go_env())
    escaped = "".join(f"!{c.lower()}" if c.isupper() else c for c in module)
    return cache.root() / "go" / "mod" / "cache" / "download" / escaped / "@v" / f"{version}.mod"
