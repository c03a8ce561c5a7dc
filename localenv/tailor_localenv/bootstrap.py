"""Builds the control plane from the Go module proxy and fetches Kafka from Maven Central.

Standard library only, so it runs before the project's dependencies are installed. Every entry
is built into a staging folder, checksummed, then moved into place: a half-built binary or a
corrupt jar never passes ``verify_entry`` and is rebuilt.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tailor_localenv import cache, versions
from tailor_localenv.progress import duration, say

HEARTBEAT_SECONDS = 30.0


class BootstrapError(RuntimeError):
    """A step of the bootstrap failed; the message says what to do about it."""


@dataclass(frozen=True)
class Toolchain:
    """Where the verified binaries and jars of this machine's cache are."""

    bin_dirs: dict[str, Path]
    kafka_libs: Path

    def binary(self, name: str) -> Path:
        for directory in self.bin_dirs.values():
            candidate = directory / name
            if candidate.is_file():
                return candidate
        raise BootstrapError(f"{name} is not in the cache: run `make bootstrap`")


# --- the tools the build itself needs -------------------------------------------------------

_APT_PACKAGES = {"java": "openjdk-17-jre-headless", "mvn": "maven"}


def apt_install(packages: list[str]) -> None:
    """Install Debian packages when running as root with apt (TAILOR_NO_APT unset)."""
    _apt_install(packages)


def _apt_install(packages: list[str]) -> None:
    if os.geteuid() != 0 or not shutil.which("apt-get") or os.environ.get("TAILOR_NO_APT"):
        return
    say(f"installing {' '.join(packages)} with apt-get (set TAILOR_NO_APT=1 to skip)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for args in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", *packages]):
        result = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise BootstrapError(f"`{' '.join(args)}` failed:\n{result.stderr[-2000:]}")


def _go_version() -> tuple[int, int]:
    out = subprocess.run(
        ["go", "env", "GOVERSION"], capture_output=True, text=True, check=True
    ).stdout
    match = re.match(r"go(\d+)\.(\d+)", out.strip())
    if not match:
        raise BootstrapError(f"cannot read the Go version from {out.strip()!r}")
    return int(match[1]), int(match[2])


def require_tools(need_go: bool, need_mvn: bool) -> None:
    """Fail with one line per missing tool; install the Debian ones when running as root.

    Java is always needed: it runs the broker even when the jars are cached.
    """
    missing_apt = [
        _APT_PACKAGES[tool]
        for tool, needed in (("java", True), ("mvn", need_mvn))
        if needed and not shutil.which(tool)
    ]
    if missing_apt:
        _apt_install(missing_apt)
    problems = []
    if not shutil.which("java"):
        problems.append(
            "java not found: install a JDK 17+ (apt-get install openjdk-17-jre-headless)"
        )
    if need_mvn and not shutil.which("mvn"):
        problems.append("mvn not found: install Maven 3.6+ (apt-get install maven)")
    if need_go:
        if not shutil.which("go"):
            problems.append(
                "go not found: install Go 1.21+ (apt-get install golang-go on Debian 13); "
                "the bootstrap then fetches the exact toolchain it needs from the Go module proxy"
            )
        elif _go_version() < (1, 21):
            problems.append(
                f"go {'.'.join(map(str, _go_version()))} is too old: install Go 1.21+ "
                "(older releases cannot fetch a newer toolchain from the module proxy)"
            )
    if problems:
        raise BootstrapError("\n".join(problems))


# --- running a long build with progress lines -----------------------------------------------


def _run_logged(args: list[str], log: Path, what: str, env: dict[str, str], cwd: Path) -> None:
    """Run a build step, its output to ``log``, with a heartbeat line while it runs."""
    started = time.monotonic()
    with log.open("ab") as sink:
        sink.write(f"\n$ {' '.join(args)}\n".encode())
        sink.flush()
        proc = subprocess.Popen(
            args, cwd=cwd, env=env, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        next_beat = started + HEARTBEAT_SECONDS
        while proc.poll() is None:
            time.sleep(0.5)
            if time.monotonic() >= next_beat:
                next_beat += HEARTBEAT_SECONDS
                lines = log.read_bytes().count(b"\n")
                say(
                    f"  {what}: still running, {duration(time.monotonic() - started)}, "
                    f"{lines} log lines in {log}"
                )
    if proc.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-40:]
        raise BootstrapError(
            f"{what} failed (exit {proc.returncode}); last lines of {log}:\n" + "\n".join(tail)
        )


def _go_env() -> dict[str, str]:
    env = dict(os.environ)
    env["CGO_ENABLED"] = "0"
    # The go.sum files under hack/go are the pins: never let a build rewrite them.
    env["GOFLAGS"] = "-mod=readonly -buildvcs=false"
    # A Go older than a module's `go` line fetches that toolchain from the module proxy.
    env.setdefault("GOTOOLCHAIN", "auto")
    return env


def ensure_go_component(component: versions.GoComponent) -> Path:
    final = cache.entry_dir("bin", component.name, component.version, component.recipe())
    reason = cache.verify_entry(final)
    if reason is None:
        say(f"{component.name} {component.version}: cached in {final}")
        return final
    say(f"{component.name} {component.version}: building from the Go module proxy ({reason})")
    started = time.monotonic()
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = final.parent / f"{final.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    log = cache.cache_root() / "logs" / f"build-{component.name}.log"
    log.parent.mkdir(exist_ok=True)
    log.write_text("")
    ldflags = " ".join(["-s", "-w", *component.ldflags])
    built = []
    for package, binary in component.commands.items():
        say(f"  {component.name}: go build {package}")
        _run_logged(
            [
                "go",
                "build",
                "-v",
                "-trimpath",
                "-ldflags",
                ldflags,
                "-o",
                str(staging / binary),
                package,
            ],
            log,
            f"go build {package}",
            _go_env(),
            component.module_dir,
        )
        built.append(staging / binary)
    cache.write_stamp(
        staging,
        built,
        {"version": component.version, "seconds": round(time.monotonic() - started, 1)},
    )
    cache.replace_entry(staging, final)
    cache.prune_siblings(final)
    say(f"{component.name} {component.version}: built in {duration(time.monotonic() - started)}")
    return final


def _check_jar(jar: Path) -> None:
    try:
        with zipfile.ZipFile(jar) as archive:
            bad = archive.testzip()
    except zipfile.BadZipFile as exc:
        raise BootstrapError(f"{jar.name} is not a valid jar: {exc}") from exc
    if bad is not None:
        raise BootstrapError(f"{jar.name}: entry {bad} fails its CRC check")


def ensure_kafka() -> Path:
    recipe = versions.kafka_recipe()
    final = cache.entry_dir("kafka", "kafka", versions.kafka_version(), recipe)
    reason = cache.verify_entry(final)
    if reason is None:
        say(f"kafka {versions.kafka_version()}: cached in {final}")
        return final / "libs"
    say(f"kafka {versions.kafka_version()}: fetching the broker jars from Maven Central ({reason})")
    started = time.monotonic()
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = final.parent / f"{final.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "libs").mkdir(parents=True)
    log = cache.cache_root() / "logs" / "build-kafka.log"
    log.parent.mkdir(exist_ok=True)
    log.write_text("")
    _run_logged(
        [
            "mvn",
            "-B",
            "--no-transfer-progress",
            # Fail on a checksum mismatch instead of Maven's default warning.
            "--strict-checksums",
            "-f",
            str(versions.KAFKA_POM),
            "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies",
            f"-DoutputDirectory={staging / 'libs'}",
            "-DincludeScope=runtime",
        ],
        log,
        "mvn copy-dependencies",
        dict(os.environ),
        versions.KAFKA_POM.parent,
    )
    jars = sorted((staging / "libs").glob("*.jar"))
    if not any(j.name.startswith(f"kafka_2.13-{versions.kafka_version()}") for j in jars):
        raise BootstrapError(f"Maven copied no kafka_2.13 jar; see {log}")
    for jar in jars:
        _check_jar(jar)
    cache.write_stamp(staging, jars, {"version": versions.kafka_version()})
    cache.replace_entry(staging, final)
    cache.prune_siblings(final)
    took = duration(time.monotonic() - started)
    say(f"kafka {versions.kafka_version()}: {len(jars)} jars in {took}")
    return final / "libs"


def bootstrap(include_optional: bool = True) -> Toolchain:
    """Build or verify everything; a second run that finds all of it cached takes seconds."""
    components = [c for c in versions.GO_COMPONENTS if include_optional or not c.optional]
    with cache.locked():
        pending_go = any(
            cache.verify_entry(cache.entry_dir("bin", c.name, c.version, c.recipe()))
            for c in components
        )
        pending_kafka = cache.verify_entry(
            cache.entry_dir("kafka", "kafka", versions.kafka_version(), versions.kafka_recipe())
        )
        require_tools(need_go=pending_go, need_mvn=pending_kafka is not None)
        bin_dirs = {c.name: ensure_go_component(c) for c in components}
        kafka_libs = ensure_kafka()
    return Toolchain(bin_dirs=bin_dirs, kafka_libs=kafka_libs)


def locate() -> Toolchain:
    """The verified toolchain, without building anything: for fixtures and the demo."""
    bin_dirs = {}
    for component in versions.GO_COMPONENTS:
        if component.optional:
            continue
        entry = cache.entry_dir("bin", component.name, component.version, component.recipe())
        reason = cache.verify_entry(entry)
        if reason:
            raise BootstrapError(
                f"{component.name} {component.version} in {entry}: {reason}; "
                "run `make bootstrap` to build it"
            )
        bin_dirs[component.name] = entry
    kafka = cache.entry_dir("kafka", "kafka", versions.kafka_version(), versions.kafka_recipe())
    reason = cache.verify_entry(kafka)
    if reason:
        raise BootstrapError(f"kafka in {kafka}: {reason}; run `make bootstrap` to fetch it")
    return Toolchain(bin_dirs=bin_dirs, kafka_libs=kafka / "libs")
