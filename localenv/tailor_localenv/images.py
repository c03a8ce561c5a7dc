"""Tailor's images, built on this machine without Docker or a registry, for the real node.

1. **base**: a Debian root filesystem made by ``mmdebstrap`` from Debian's packages (python3,
   its venv module, CA certificates), made into an image by ``buildah``. It trusts the CA
   bundle the host trusts and carries the host's pip index settings, so image builds reach
   the package index the same way the host does (a mirror, a proxy's CA).
2. **pause**: the pod sandbox, one static binary built from ``hack/go/pause``.
3. **operator, stream-worker, scorer**: ``pipeline_images/Dockerfile`` (the same file Docker
   users build from the public base) built by ``buildah bud --build-arg BASE=<base>``.

Each image is tagged ``tailor.local/NAME:KEY``, KEY a hash of everything it is built from,
in buildah's storage inside the cache: a second run finds every tag and builds nothing, and
a changed source tree rebuilds only the images whose inputs changed (buildah's layer cache
keeps their unchanged stages). ``import_into`` copies an image into the node's containerd
only when containerd lacks that tag.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tailor_localenv import cache
from tailor_localenv.bootstrap import BootstrapError, Toolchain, _run_logged
from tailor_localenv.progress import duration, say

# The checkout the images are built from (they need the source tree, so never a wheel).
REPO_ROOT = Path(__file__).resolve().parents[2]
REGISTRY = "tailor.local"
TARGETS = ("operator", "stream-worker", "scorer")
DEBIAN_SUITE = "bookworm"
BASE_PACKAGES = ("python3", "python3-venv", "python-is-python3", "ca-certificates")
# Bump when the way an image is made changes in a way its inputs do not show.
IMAGE_RECIPE_REVISION = 1
# What the Dockerfile copies into the wheel stage (and the Dockerfile itself).
_SOURCES = (
    "pyproject.toml",
    "constraints.txt",
    "README.md",
    "operator",
    "pipeline_images/tailor_pipeline",
    "pipeline_images/Dockerfile",
    "pipeline_images/requirements.py",
    "localenv/tailor_localenv",
)


@dataclass(frozen=True)
class Images:
    """The local tags of one build: what the chart and the operator are told to run."""

    base: str
    pause: str
    operator: str
    stream_worker: str
    scorer: str

    def all(self) -> list[str]:
        return [self.pause, self.operator, self.stream_worker, self.scorer]


def _storage_args(run_root: Path) -> list[str]:
    root = cache.cache_root() / "images" / "buildah"
    return [f"--root={root}", f"--runroot={run_root}", "--storage-driver=overlay"]


def _buildah(run_root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        ["buildah", *_storage_args(run_root), *args], capture_output=True, text=True, check=False
    )
    if check and result.returncode != 0:
        raise BootstrapError(f"buildah {args[0]} failed: {result.stderr.strip()[-1500:]}")
    return result


def _hash_tree(paths: list[Path], digest: hashlib._Hash) -> None:
    for root in paths:
        files = [root] if root.is_file() else sorted(root.rglob("*"))
        for path in files:
            if not path.is_file() or "__pycache__" in path.parts or path.suffix == ".pyc":
                continue
            digest.update(str(path.relative_to(root.parent)).encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")


def _host_pip_config() -> tuple[str, Path | None]:
    """[global] lines for the image's pip.conf from the host's pip settings, and the CA
    bundle file pip is told to trust (copied into the image at the same path)."""
    out = subprocess.run(
        ["python3", "-m", "pip", "config", "list"], capture_output=True, text=True, check=False
    ).stdout
    settings = {}
    for line in out.splitlines():
        key, _, value = line.partition("=")
        if key.startswith(("global.", "install.")) and value:
            settings[key.split(".", 1)[1]] = value.strip("'\"")
    for key in ("index-url", "extra-index-url", "cert", "trusted-host"):
        env = os.environ.get("PIP_" + key.upper().replace("-", "_"))
        if env:
            settings[key] = env
    settings = {
        k: v
        for k, v in settings.items()
        if k in ("index-url", "extra-index-url", "cert", "trusted-host")
    }
    cert = Path(settings["cert"]) if "cert" in settings else None
    lines = "[global]\n" + "".join(f"{k} = {v}\n" for k, v in sorted(settings.items()))
    return lines, cert if cert is not None and cert.is_file() else None


class ImageBuilder:
    def __init__(self, repo: Path, toolchain: Toolchain, log_dir: Path | None = None) -> None:
        self.repo = repo
        self.toolchain = toolchain
        self.log = (log_dir or cache.cache_root() / "logs") / "build-images.log"
        self.run_root = Path(tempfile.mkdtemp(prefix="tailor-buildah-"))

    def _exists(self, tag: str) -> bool:
        return _buildah(self.run_root, "inspect", "--type=image", tag, check=False).returncode == 0

    def _bud(self, context: Path, tag: str, what: str, *args: str) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        _run_logged(
            [
                "buildah",
                *_storage_args(self.run_root),
                "bud",
                "--isolation=chroot",
                "--layers",
                "--quiet",
                f"--tag={tag}",
                *args,
                str(context),
            ],
            self.log,
            what,
            {**os.environ, "BUILDAH_LAYERS": "true"},
            context,
        )

    # --- the base ------------------------------------------------------------------------

    def base(self) -> str:
        pip_conf, cert = _host_pip_config()
        digest = hashlib.sha256(
            f"{IMAGE_RECIPE_REVISION}\n{DEBIAN_SUITE}\n{BASE_PACKAGES}\n{pip_conf}".encode()
        )
        if cert is not None:
            digest.update(cert.read_bytes())
        tag = f"{REGISTRY}/base:{digest.hexdigest()[:16]}"
        if self._exists(tag):
            return tag
        say(f"images: building the base root filesystem from Debian {DEBIAN_SUITE} packages")
        started = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="tailor-base-") as tmp:
            context = Path(tmp)
            _run_logged(
                [
                    "mmdebstrap",
                    "--variant=minbase",
                    f"--include={','.join(BASE_PACKAGES)}",
                    # Documentation and translations are most of a minimal system's size.
                    "--dpkgopt=path-exclude=/usr/share/doc/*",
                    "--dpkgopt=path-include=/usr/share/doc/*/copyright",
                    "--dpkgopt=path-exclude=/usr/share/man/*",
                    "--dpkgopt=path-exclude=/usr/share/locale/*",
                    DEBIAN_SUITE,
                    str(context / "rootfs.tar"),
                ],
                self.log,
                "mmdebstrap",
                dict(os.environ),
                context,
            )
            lines = ["FROM scratch", "ADD rootfs.tar /"]
            (context / "pip.conf").write_text(pip_conf)
            lines.append("COPY pip.conf /etc/pip.conf")
            if cert is not None:
                shutil.copyfile(cert, context / "ca.crt")
                lines.append(f"COPY ca.crt {cert}")
            lines.append('CMD ["python3"]')
            (context / "Containerfile").write_text("\n".join(lines) + "\n")
            self._bud(context, tag, "buildah bud (base)")
        say(f"images: base {tag} built in {duration(time.monotonic() - started)}")
        return tag

    def pause(self) -> str:
        binary = self.toolchain.binary("pause")
        tag = f"{REGISTRY}/pause:{cache.file_sha256(binary)[:16]}"
        if self._exists(tag):
            return tag
        with tempfile.TemporaryDirectory(prefix="tailor-pause-") as tmp:
            context = Path(tmp)
            shutil.copy2(binary, context / "pause")
            (context / "Containerfile").write_text(
                'FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n'
            )
            self._bud(context, tag, "buildah bud (pause)")
        return tag

    # --- Tailor's images -----------------------------------------------------------------

    def build(self) -> Images:
        """Every image, built where missing; seconds when nothing changed."""
        started = time.monotonic()
        with cache.locked():
            base = self.base()
            pause = self.pause()
            digest = hashlib.sha256(f"{IMAGE_RECIPE_REVISION}\n{base}\n".encode())
            _hash_tree([self.repo / p for p in _SOURCES], digest)
            key = digest.hexdigest()[:16]
            tags = {t: f"{REGISTRY}/{t}:{key}" for t in TARGETS}
            for target, tag in tags.items():
                if self._exists(tag):
                    continue
                say(f"images: building {tag} from pipeline_images/Dockerfile")
                began = time.monotonic()
                self._bud(
                    self.repo,
                    tag,
                    f"buildah bud --target {target}",
                    f"--build-arg=BASE={base}",
                    f"--target={target}",
                    f"--file={self.repo / 'pipeline_images' / 'Dockerfile'}",
                )
                say(f"images: {tag} built in {duration(time.monotonic() - began)}")
            images = Images(base, pause, tags["operator"], tags["stream-worker"], tags["scorer"])
            self._prune([images.base, *images.all()])
        say(f"images: {len(images.all())} images ready ({duration(time.monotonic() - started)})")
        return images

    def _prune(self, keep: list[str]) -> None:
        """Drop superseded tailor.local tags: every source change makes new ones. The
        intermediate layers stay; they are the cache that makes the next build fast."""
        listed = _buildah(self.run_root, "images", "--format={{.Name}}:{{.Tag}}").stdout
        stale = [t for t in listed.split() if t.startswith(f"{REGISTRY}/") and t not in keep]
        if stale:
            _buildah(self.run_root, "rmi", *stale, check=False)

    def import_into(self, images: list[str], ctr: list[str]) -> None:
        """Copy each image into containerd (``ctr`` is its argv prefix) unless it is there."""
        present = set(
            subprocess.run(
                [*ctr, "images", "list", "-q"], capture_output=True, text=True, check=True
            ).stdout.split()
        )
        for tag in images:
            if tag in present:
                continue
            started = time.monotonic()
            with tempfile.TemporaryDirectory(prefix="tailor-oci-") as tmp:
                archive = Path(tmp) / "image.tar"
                # Uncompressed: compressing only to unpack it again a second later is waste.
                _buildah(
                    self.run_root,
                    "push",
                    "--disable-compression",
                    tag,
                    f"oci-archive:{archive}:{tag}",
                )
                result = subprocess.run(
                    [*ctr, "images", "import", str(archive)],
                    capture_output=True,
                    text=True,
                    check=False,
                )
                if result.returncode != 0:
                    raise BootstrapError(f"ctr import of {tag} failed: {result.stderr[-800:]}")
            say(f"images: {tag} imported into the node ({duration(time.monotonic() - started)})")

    def close(self) -> None:
        shutil.rmtree(self.run_root, ignore_errors=True)
