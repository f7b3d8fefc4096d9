"""Where containers/image looks for its files, for the current user or a rendered node tree.

`NodeFiles.from_environment()` answers as podman would for this user; with `root` set
(`--root ROOT`), the tree under ROOT stands for a node's `/` and no per-user file applies.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .certsd import CertsDirSettings
from .registries_conf import RegistriesConfPaths


@dataclass(frozen=True)
class NodeFiles:
    """The configuration a pull reads, with explicit overrides applied."""

    home: str = ""
    root: str = ""
    registries_conf: str | None = None
    registries_conf_dir: str | None = None
    policy: str | None = None
    certs_dir: str | None = None
    auth_file: str | None = None
    registries_d: str | None = None
    xdg_runtime_dir: str = ""
    xdg_config_home: str = ""
    docker_config: str = ""
    uid: int = 0

    @classmethod
    def from_environment(cls, *, root: str = "", **overrides: str | None) -> NodeFiles:
        env = os.environ
        if root:
            return cls(root=os.path.abspath(root), **overrides)  # type: ignore[arg-type]
        home = env.get("HOME", "")
        return cls(
            home=home,
            xdg_runtime_dir=env.get("XDG_RUNTIME_DIR", ""),
            xdg_config_home=env.get("XDG_CONFIG_HOME", "") or (home and f"{home}/.config"),
            docker_config=env.get("DOCKER_CONFIG", ""),
            uid=os.getuid(),
            **overrides,  # type: ignore[arg-type]
        )

    def system(self, path: str) -> str:
        """An absolute node path, under `root` when one is set."""
        return self.root.rstrip("/") + path if self.root else path

    def user(self, relative: str) -> str | None:
        return os.path.join(self.home, relative) if self.home else None

    def registries_conf_paths(self) -> RegistriesConfPaths:
        system_dir = self.system("/etc/containers/registries.conf.d")
        user_dir = self.user(".config/containers/registries.conf.d")
        default_dirs = tuple(d for d in (system_dir, user_dir) if d)
        if self.registries_conf is not None:
            dirs = (self.registries_conf_dir,) if self.registries_conf_dir else default_dirs
            return RegistriesConfPaths(self.registries_conf, True, dirs)
        user_main = self.user(".config/containers/registries.conf")
        if user_main and os.path.exists(user_main):
            dirs = (self.registries_conf_dir,) if self.registries_conf_dir else (user_dir or "",)
            return RegistriesConfPaths(user_main, False, dirs)
        dirs = (self.registries_conf_dir,) if self.registries_conf_dir else default_dirs
        return RegistriesConfPaths(self.system("/etc/containers/registries.conf"), False, dirs)

    def policy_path(self) -> str:
        if self.policy is not None:
            return self.policy
        user = self.user(".config/containers/policy.json")
        if user and os.path.exists(user):
            return user
        return self.system("/etc/containers/policy.json")

    def registries_d_dir(self) -> str:
        """registries.d as containers/image picks it (`docker/registries_d.go`:
        `registriesDirPathWithHomeDir`): the user's directory when it exists, else the
        system's."""
        if self.registries_d is not None:
            return self.registries_d
        user = self.user(".config/containers/registries.d")
        if user and os.path.exists(user):
            return user
        return self.system("/etc/containers/registries.d")

    def default_lookaside(self) -> str:
        """The built-in lookaside when registries.d names none: root's, under `root`."""
        if self.uid != 0 and self.home:
            return "file://" + os.path.join(self.home, ".local/share/containers/sigstore")
        return "file://" + self.system("/var/lib/containers/sigstore")

    def certs_settings(self) -> CertsDirSettings:
        return CertsDirSettings(home=self.home, root=self.root, per_host_dir=self.certs_dir)

    def auth_file_paths(self) -> list[tuple[str, bool]]:
        """Auth files in search order, each with whether it is the legacy `.dockercfg`."""
        if self.auth_file is not None:
            return [(self.auth_file, False)]
        if self.root:
            return [(self.system("/var/lib/kubelet/config.json"), False)]
        runtime = self.xdg_runtime_dir or f"/run/containers/{self.uid}"
        paths = [(os.path.join(runtime, "containers/auth.json"), False)]
        if self.xdg_config_home:
            paths.append((os.path.join(self.xdg_config_home, "containers/auth.json"), False))
        if self.docker_config:
            paths.append((os.path.join(self.docker_config, "config.json"), False))
        elif self.home:
            paths.append((os.path.join(self.home, ".docker/config.json"), False))
        if self.home:
            paths.append((os.path.join(self.home, ".dockercfg"), True))
        return paths
