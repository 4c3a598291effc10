"""Replay a Dockerfile on this machine without a container engine.

The builder stage's RUN lines run as written (through /bin/sh, BuildKit `--mount` flags dropped)
inside a fake root folder; image paths (/opt/venv, /models, WORKDIR, ...) become paths under it.
The final stage's ENV, WORKDIR, ENTRYPOINT/CMD and HEALTHCHECK are kept to start the "container".
So a test installs exactly what the Dockerfile installs, into a fresh virtualenv, and runs exactly
its command. What it cannot replay: the base image itself (this machine's Python 3.11 stands in),
USER and other OS-level RUN steps of the final stage.
"""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from tests.deploy.files import ROOT, ignored, stages

HOST_ONLY = ("VIRTUAL_ENV", "PYTHONHOME", "PYTHONPATH", "PYTHONSTARTUP")
ABSOLUTE_PATH = re.compile(r"(?<![\w$.:/-])(/[\w.-][\w./-]*)")
VARIABLE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


class DockerfileReplay:
    """One image, built into `root`; `volumes` map container paths to host folders like -v."""

    def __init__(self, dockerfile: Path, root: Path, *, build_args: dict[str, str] | None = None,
                 volumes: dict[str, Path] | None = None) -> None:
        self.dockerfile, self.root = dockerfile, root
        self.build_args = build_args or {}
        self.volumes = volumes or {}
        self.env: dict[str, str] = {}
        self.workdir = root
        self.entrypoint: list[str] = []
        self.command: list[str] = []
        self.healthcheck: list[str] = []
        self.shim = root / "base-image-bin"  # `python` of the base image = this machine's 3.11
        self.shim.mkdir(parents=True, exist_ok=True)
        # the interpreter behind the test's virtualenv, not the virtualenv itself
        (self.shim / "python").symlink_to(os.path.realpath(sys._base_executable))

    def host_path(self, container_path: str) -> Path:
        """Where a container path lives on this machine."""
        for target in sorted(self.volumes, key=len, reverse=True):
            if container_path == target or container_path.startswith(target + "/"):
                return self.volumes[target] / container_path[len(target):].lstrip("/")
        return self.root / container_path.lstrip("/")

    def map_paths(self, text: str) -> str:
        return ABSOLUTE_PATH.sub(lambda m: str(self.host_path(m[1])), text)

    def base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in HOST_ONLY}
        env["PATH"] = f"{self.shim}{os.pathsep}{env.get('PATH', '')}"
        env["PIP_NO_COMPILE"] = "1"  # same files as the image, minus its .pyc: saves ~30 s of CPU
        return env

    def expand(self, value: str, env: dict[str, str]) -> str:
        return VARIABLE.sub(lambda m: env.get(m[1] or m[2], ""), value)

    def build(self) -> "DockerfileReplay":
        """Run every stage; the last one's settings are what `run_env` and `command` use."""
        all_stages = stages(self.dockerfile)
        for number, stage in enumerate(all_stages, start=1):
            self.env, self.workdir = {}, self.root
            for instruction in stage[1:]:
                getattr(self, "do_" + instruction["instruction"].lower(), self.skip)(
                    instruction["value"], final=number == len(all_stages))
        return self

    def skip(self, value: str, final: bool) -> None:
        """USER, EXPOSE, LABEL: nothing to do outside an engine."""

    def do_arg(self, value: str, final: bool) -> None:
        name, _, default = value.partition("=")
        self.env[name] = self.build_args.get(name, default)

    def do_env(self, value: str, final: bool) -> None:
        current = {**self.base_env(), **self.env}
        for pair in shlex.split(value):
            name, _, raw = pair.partition("=")
            self.env[name] = self.expand(self.map_paths(raw), current)

    def do_workdir(self, value: str, final: bool) -> None:
        self.workdir = self.host_path(value)
        self.workdir.mkdir(parents=True, exist_ok=True)

    def do_copy(self, value: str, final: bool) -> None:
        from_stage = any(part.startswith("--from=") for part in value.split())
        *sources, target = [part for part in value.split() if not part.startswith("--")]
        destination = self.host_path(target) if target.startswith("/") else self.workdir / target
        for source in sources:
            origin = self.host_path(source) if from_stage else ROOT / source
            if origin.resolve() == destination.resolve():
                continue
            if origin.is_dir():
                shutil.copytree(origin, destination, dirs_exist_ok=True,
                                ignore=None if from_stage else self.context_filter)
            else:
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, destination / origin.name if target.endswith("/")
                             else destination)

    @staticmethod
    def context_filter(folder: str, names: list[str]) -> set[str]:
        """shutil.copytree's ignore= callback: .dockerignore applied to the build context."""
        relative = Path(folder).relative_to(ROOT)
        return {name for name in names if ignored(str(relative / name))}

    def do_run(self, value: str, final: bool) -> None:
        if final:
            return  # users, folders: operating-system set-up that needs root and an image
        script = re.sub(r"^(--\S+\s+)+", "", value)
        env = {**self.base_env(), **self.env}
        result = subprocess.run(["/bin/sh", "-c", script], cwd=self.workdir, env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert result.returncode == 0, f"RUN {script[:200]} failed:\n{result.stdout[-3000:]}"

    def do_healthcheck(self, value: str, final: bool) -> None:
        self.healthcheck = json.loads(value[value.index("CMD") + 3:])

    def do_entrypoint(self, value: str, final: bool) -> None:
        self.entrypoint = json.loads(value)
        self.command = list(self.entrypoint)

    def do_cmd(self, value: str, final: bool) -> None:
        self.command = [*self.command, *[self.map_paths(arg) for arg in json.loads(value)]]

    def run_env(self, **overrides: str) -> dict[str, str]:
        """The container's environment: the image's ENV, then `docker run -e` overrides."""
        return {**self.base_env(), **self.env, **overrides}

    def executable(self, env: dict[str, str], command: list[str] | None = None) -> list[str]:
        """The image's ENTRYPOINT + CMD, or ENTRYPOINT + `command` (compose's `command:` replaces
        CMD), with the program resolved on the image's PATH."""
        argv = self.command if command is None else [
            *self.entrypoint, *[self.map_paths(arg) for arg in command]]
        program = shutil.which(argv[0], path=env["PATH"])
        assert program, f"{argv[0]} is not on the image's PATH {env['PATH']}"
        return [program, *argv[1:]]
