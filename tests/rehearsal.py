"""Images and pods rehearsed without Docker or a cluster (tests/integration/test_pod_rehearsal.py).

No container engine runs on the machines this project is tested on, so the images cannot be
built and the chart cannot be deployed. What can be done is to carry out on the host what the
Dockerfile and the rendered chart say, as literally as possible:

- `build_image`: the builder stage's RUN commands, executed by bash, with the image's absolute
  paths (/opt/venv, /wheels, WORKDIR) mapped into a host directory and the build context holding
  only what the stage COPYs. A runtime dependency missing from the image's lock file, or a file
  missing from the wheel, breaks the rehearsal as it would break the image.
- `start_pod_container`: one container of a rendered pod spec, as a process: the image's
  ENTRYPOINT (or the container's command) plus args; the image's ENV, then envFrom ConfigMaps,
  then env (secretKeyRef resolved from the rendered Secret); mounted volumes and the image's paths
  mapped to host directories; run as the pod's runAsUser (when the tests run as root) in a
  root-owned WORKDIR, so that the process can write only where the pod has emptyDirs.

The mapping is the only liberty taken: container ports become free host ports, 0.0.0.0
becomes 127.0.0.1 (tests bind to loopback only), and Service addresses the caller names become
host addresses.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.pipeline import free_port

REPO = Path(__file__).resolve().parents[1]


# --- Dockerfile --------------------------------------------------------------------------------


@dataclass
class Stage:
    name: str
    base: str
    args: dict[str, str] = field(default_factory=dict)
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, instruction: str) -> list[str]:
        return [rest for name, rest in self.instructions if name == instruction]

    def last(self, instruction: str) -> str | None:
        found = self.all(instruction)
        return found[-1] if found else None


@dataclass
class Dockerfile:
    path: Path
    args: dict[str, str]  # global ARGs (before the first FROM) with their defaults
    stages: list[Stage]

    @classmethod
    def parse(cls, path: Path) -> Dockerfile:
        args: dict[str, str] = {}
        stages: list[Stage] = []
        for line in _logical_lines(path.read_text()):
            instruction, _, rest = line.partition(" ")
            instruction, rest = instruction.upper(), rest.strip()
            if instruction == "FROM":
                words = rest.split()
                name = (
                    words[2] if len(words) == 3 and words[1].upper() == "AS" else str(len(stages))
                )
                stages.append(Stage(name, words[0]))
            elif instruction == "ARG":
                key, _, default = rest.partition("=")
                (stages[-1].args if stages else args)[key] = default
            elif stages:
                stages[-1].instructions.append((instruction, rest))
        return cls(path, args, stages)

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)

    def env(self, stage: Stage) -> dict[str, str]:
        """The stage's ENV, in order; `$NAME` refers to earlier values or the host's."""
        env: dict[str, str] = {}
        for rest in stage.all("ENV"):
            for word in shlex.split(rest):
                key, _, value = word.partition("=")
                env[key] = re.sub(
                    r"\$\{?(\w+)\}?", lambda m: env.get(m[1], os.environ.get(m[1], "")), value
                )
        return env

    def entrypoint(self) -> list[str]:
        exec_form = self.final.last("ENTRYPOINT")
        assert exec_form, f"{self.path}: no ENTRYPOINT"
        return list(json.loads(exec_form))

    def user(self) -> tuple[int, int]:
        user = self.final.last("USER") or "0"
        uid, _, gid = user.partition(":")
        return int(uid), int(gid or uid)

    def expected_venv_mb(self) -> int:
        """The size the Dockerfile's comment promises for the virtualenv ("venv ... adds ~N MB")."""
        match = re.search(r"venv\b[^~]*adds ~(\d+) MB", self.path.read_text(), re.S)
        assert match, (
            f"{self.path}: state the virtualenv's expected size ('the venv ... adds ~N MB')"
        )
        return int(match[1])


# --- the build context (.dockerignore) -----------------------------------------------------------


def dockerignore_rules() -> list[tuple[bool, str]]:
    """(negated, pattern) per rule of the repository's .dockerignore, in order."""
    rules = []
    for raw in (REPO / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            rules.append((line.startswith("!"), line.lstrip("!").rstrip("/")))
    return rules


def ignored(path: str, rules: list[tuple[bool, str]]) -> bool:
    """Docker's rule: the last matching pattern wins; a pattern also covers what is below it."""
    result = False
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for negate, pattern in rules:
        pattern = pattern.replace("**/", "*/") if pattern.startswith("**/") else pattern
        candidates = [pattern, pattern.replace("*/", "")] if pattern.startswith("*/") else [pattern]
        if any(fnmatch.fnmatch(p, c) for p in prefixes for c in candidates):
            result = not negate
    return result


def copied_files(stage: Stage) -> list[str]:
    """The repository files a stage's COPY instructions take from the build context: every file
    below each source that .dockerignore lets into the context (COPY --from=... excluded)."""
    rules = dockerignore_rules()
    files = []
    for rest in stage.all("COPY"):
        if rest.startswith("--from"):
            continue
        *sources, _target = rest.split()
        for source in sources:
            top = REPO / source
            found = sorted(p for p in top.rglob("*") if p.is_file()) if top.is_dir() else [top]
            relative = (path.relative_to(REPO).as_posix() for path in found)
            files += [path for path in relative if not ignored(path, rules)]
    return files


def _logical_lines(text: str) -> list[str]:
    """Instructions joined across backslash continuations; comments and blank lines dropped."""
    lines, pending = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        lines.append(pending + line)
        pending = ""
    return lines


# --- image build -------------------------------------------------------------------------------


class PathMap:
    """Absolute paths inside the image -> directories under one host root."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.paths: dict[str, Path] = {}

    def add(self, image_path: str, host_path: Path | None = None) -> Path:
        host = host_path or self.root / image_path.strip("/")
        self.paths[image_path.rstrip("/")] = host
        return host

    def translate(self, text: str) -> str:
        if not self.paths:
            return text
        # One pass, longest first: a host path (itself under /tmp) is never translated again.
        # Only whole path starts match, never the path part of a URL (after a host name).
        alternatives = "|".join(re.escape(p) for p in sorted(self.paths, key=len, reverse=True))
        pattern = rf"(?<![\w.:/-])({alternatives})(?=/|:|\s|$)"
        return re.sub(pattern, lambda m: str(self.paths[m[1]]), text)


@dataclass
class BuiltImage:
    dockerfile: Dockerfile
    paths: PathMap
    venv: Path
    log: Path

    def venv_mb(self) -> float:
        # Symlinks (bin/python -> the base image's interpreter) belong to the base image.
        files = [p for p in self.venv.rglob("*") if not p.is_symlink() and p.is_file()]
        total = sum(p.stat().st_size for p in files)
        return total / 1_000_000


def build_image(dockerfile_path: Path, root: Path) -> BuiltImage:
    """Runs the builder stage of `dockerfile_path` on the host under `root`; see the module doc."""
    dockerfile = Dockerfile.parse(dockerfile_path)
    builder = dockerfile.stage("builder")
    paths = PathMap(root)
    context = paths.add(builder.last("WORKDIR") or "/", root / "context")
    for path in copied_files(builder):
        (context / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / path, context / path)
    venv = paths.add("/opt/venv")
    paths.add("/wheels")
    log = root / "build.log"
    toolchain = _base_image_python(root, log)
    args = {**dockerfile.args, **builder.args}
    env = {
        **os.environ,
        **dockerfile.env(builder),
        "PATH": f"{toolchain / 'bin'}:{os.environ['PATH']}",
        **args,
    }
    for command in builder.all("RUN"):
        _run(["bash", "-euo", "pipefail", "-c", paths.translate(command)], env, context, log)
    return BuiltImage(dockerfile, paths, venv, log)


def _base_image_python(root: Path, log: Path) -> Path:
    """The base image's `python` and pip: a venv of a host Python of the same minor version
    that the pods' user can run (the tests' own may live under root's 0700 home)."""
    toolchain = root / "toolchain"
    base = _python_others_can_run()
    _run([base, "-m", "venv", "--without-pip", str(toolchain)], dict(os.environ), root, log)
    pip = [sys.executable, "-m", "pip", "--python", str(toolchain / "bin/python")]
    _run([*pip, "install", "--quiet", "pip"], dict(os.environ), root, log)
    return toolchain


def _python_others_can_run() -> str:
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    candidates = [sys._base_executable, shutil.which(version), f"/usr/bin/{version}"]  # noqa: SLF001
    if os.geteuid() != 0:
        return sys._base_executable  # noqa: SLF001 (no user switch: any Python will do)
    for candidate in filter(None, candidates):
        real = Path(os.path.realpath(candidate))
        if real.is_file() and all(p.stat().st_mode & 0o001 for p in [real, *real.parents]):
            return str(real)
    raise AssertionError(f"no {version} that an unprivileged user can run: {candidates}")


def _run(command: list[str], env: dict[str, str], cwd: Path, log: Path) -> None:
    with log.open("a") as out:
        out.write(f"$ {shlex.join(command)}\n")
        out.flush()
        proc = subprocess.run(command, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, check=False)  # fmt: skip
    if proc.returncode != 0:
        tail = log.read_text()[-3000:]
        raise AssertionError(f"image build step failed ({proc.returncode}): {command}\n{tail}")


# --- pods --------------------------------------------------------------------------------------


@dataclass
class ContainerProcess:
    name: str
    process: subprocess.Popen[bytes]
    ports: dict[str, int]  # container port name (and number, as text) -> host port
    env: dict[str, str]
    log: Path
    workdir: Path  # the image's WORKDIR on the host: root-owned, must stay empty
    started_at: float

    def url(self, port: int | str, path: str = "") -> str:
        return f"http://127.0.0.1:{self.ports[str(port)]}{path}"

    def probe(self, probe: dict[str, Any]) -> int:
        """The HTTP status of an httpGet probe, 0 when nothing answers."""
        get = probe["httpGet"]
        try:
            with urllib.request.urlopen(self.url(get["port"], get["path"]), timeout=3) as resp:  # noqa: S310
                return int(resp.status)
        except urllib.error.HTTPError as error:
            return int(error.code)
        except OSError:
            return 0

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, grace: float) -> int | None:
        """SIGTERM, as the kubelet sends; SIGKILL after `grace` seconds. The exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
            return None


def start_pod_container(
    image: BuiltImage,
    pod: dict[str, Any],
    config_maps: dict[str, dict[str, str]],
    secrets: dict[str, dict[str, str]],
    extra_args: list[str] | None = None,
    services: dict[str, str] | None = None,
) -> ContainerProcess:
    """Starts the pod's first container from `image`; see the module doc for the mapping.
    `services` maps in-cluster addresses ("name:port") to host ones, in env and args."""
    (container, *_) = pod["containers"]
    root = image.paths.root / f"pod-{container['name']}-{len(list(image.paths.root.iterdir()))}"
    root.mkdir()
    uid, gid = _identity(pod, container, image.dockerfile)
    paths = PathMap(root)
    for image_path, host_path in image.paths.paths.items():
        paths.add(image_path, host_path)
    workdir = paths.add(image.dockerfile.final.last("WORKDIR") or "/", root / "workdir")
    workdir.mkdir()  # root-owned: the process cannot write here
    for mount in container.get("volumeMounts", []):
        writable = paths.add(mount["mountPath"], root / "volumes" / mount["name"])
        writable.mkdir(parents=True)
        _give(writable, uid, gid)  # an emptyDir, writable through fsGroup
    ports = {}
    for port in container.get("ports", []):
        ports[str(port["containerPort"])] = ports[port["name"]] = free_port()

    env = _container_env(image, container, config_maps, secrets)
    env = {k: _to_host(v, paths, ports) for k, v in env.items()}
    command = container.get("command") or image.dockerfile.entrypoint()
    argv = [*command, *container.get("args", []), *(extra_args or [])]
    for address, host_address in (services or {}).items():
        argv = [arg.replace(f"//{address}/", f"//{host_address}/") for arg in argv]
        env = {k: v.replace(f"//{address}/", f"//{host_address}/") for k, v in env.items()}
    argv[0] = shutil.which(argv[0], path=env["PATH"]) or argv[0]
    log = root / "output.log"
    started_at = time.time()
    with log.open("wb") as out:
        process = subprocess.Popen(  # noqa: S603
            argv, env=env, cwd=workdir, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True, **_as_user(uid, gid),
        )  # fmt: skip
    return ContainerProcess(container["name"], process, ports, env, log, workdir, started_at)


def _identity(
    pod: dict[str, Any], container: dict[str, Any], dockerfile: Dockerfile
) -> tuple[int, int]:
    context = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
    uid, gid = dockerfile.user()
    return int(context.get("runAsUser", uid)), int(context.get("runAsGroup", gid))


def _give(path: Path, uid: int, gid: int) -> None:
    if os.geteuid() == 0:
        os.chown(path, uid, gid)


def _as_user(uid: int, gid: int) -> dict[str, Any]:
    """Drop to the pod's user when we can (running as root); otherwise stay who we are."""
    if os.geteuid() != 0:
        return {}
    return {"user": uid, "group": gid, "extra_groups": []}


def _container_env(
    image: BuiltImage,
    container: dict[str, Any],
    config_maps: dict[str, dict[str, str]],
    secrets: dict[str, dict[str, str]],
) -> dict[str, str]:
    """Kubernetes' order: the image's ENV, then envFrom, then env (later wins)."""
    env = {"PATH": os.environ["PATH"], **image.dockerfile.env(image.dockerfile.final)}
    for source in container.get("envFrom", []):
        env.update(config_maps[source["configMapRef"]["name"]])
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = str(item["value"])
            continue
        ref = item["valueFrom"]["secretKeyRef"]
        value = secrets.get(ref["name"], {}).get(ref["key"])
        if value is None:
            assert ref.get("optional"), f"{item['name']}: secret {ref['name']}/{ref['key']} missing"
            continue
        env[item["name"]] = value
    return env


def _to_host(value: str, paths: PathMap, ports: dict[str, int]) -> str:
    if value == "0.0.0.0":  # noqa: S104 (the pod's "all interfaces"; loopback for the test)
        return "127.0.0.1"
    if value in ports:
        return str(ports[value])
    return paths.translate(value)
