"""`tailor-localenv`: build the cache, or run the local control plane and Kafka until Ctrl-C."""

from __future__ import annotations

import argparse
import shlex
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from types import FrameType

from tailor_localenv import bootstrap as bootstrap_mod
from tailor_localenv import cache
from tailor_localenv.processes import StartError
from tailor_localenv.progress import say
from tailor_localenv.real_node import RealNodeUnavailable
from tailor_pipeline.program import add_version

REPO_ROOT = Path(__file__).resolve().parents[2]


def _cmd_bootstrap(args: argparse.Namespace) -> int:
    toolchain = bootstrap_mod.bootstrap(include_optional=not args.skip_optional)
    if args.images:
        _build_images(toolchain)
    say(f"bootstrap complete: cache {cache.cache_root()}")
    for name, directory in sorted(toolchain.bin_dirs.items()):
        print(f"{name}\t{directory}")
    print(f"kafka\t{toolchain.kafka_libs}")
    return 0


def _build_images(toolchain: bootstrap_mod.Toolchain) -> None:
    """The real node's packages and Tailor's images, or one line on why this host has none."""
    from tailor_localenv import real_node
    from tailor_localenv.images import ImageBuilder

    missing = sorted(
        {pkg for tool, pkg in real_node.APT_PACKAGES.items() if not shutil.which(tool)}
    )
    if missing:
        bootstrap_mod.apt_install(missing)
    reason = real_node.host_support()
    if reason is not None:
        say(f"images: not built, this host cannot run the real node: {reason}")
        return
    builder = ImageBuilder(REPO_ROOT, toolchain)
    try:
        builder.build()
    finally:
        builder.close()


def _cmd_images(_: argparse.Namespace) -> int:
    _build_images(bootstrap_mod.locate())
    return 0


def _cmd_verify(_: argparse.Namespace) -> int:
    toolchain = bootstrap_mod.locate()
    say(f"every cached binary and jar matches its recorded sha256 ({cache.cache_root()})")
    for name, directory in sorted(toolchain.bin_dirs.items()):
        print(f"{name}\t{directory}")
    return 0


def _cmd_up(args: argparse.Namespace) -> int:
    from tailor_localenv import real_node as real_node_mod
    from tailor_localenv.environment import LocalEnvironment
    from tailor_localenv.tailor import install_crds

    run_dir = cache.cache_root() / "run"
    # A previous `up` that was SIGKILLed leaves its data behind; its processes died with it.
    if run_dir.exists():
        shutil.rmtree(run_dir)
    env = LocalEnvironment(
        needs_kube=True,
        needs_kafka=True,
        needs_real_node=args.real_node,
        run_dir=run_dir,
        nodes=args.nodes,
    )
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        control_plane = env.kube()
        broker = env.kafka()
        node = env.real_node() if args.real_node else None
        kubectl = control_plane.kubectl_command()
        crds = install_crds(kubectl, args.crds)
        if crds:
            say(f"installed CRDs: {', '.join(crds)}")
        env_file = run_dir / "env.sh"
        bin_dir = control_plane.binary("kubectl").parent
        env_file.write_text(
            f"export KUBECONFIG={shlex.quote(str(control_plane.kubeconfig))}\n"
            f"export TAILOR_KAFKA_BOOTSTRAP={broker.bootstrap_servers}\n"
            f"export PATH={shlex.quote(str(bin_dir))}:$PATH\n"
        )
        pin = " ".join(
            f"{k}={shlex.quote(v)}" for k, v in real_node_mod.namespace_annotations().items()
        )
        real = (
            f"  real node    {real_node_mod.NODE_NAME}: pods of a namespace run there once it"
            f" is pinned\n               (kubectl annotate ns NS {pin})\n"
            f"  images       {', '.join(node.images.all())}\n"
            if node is not None
            else ""
        )
        print(
            "\nThe local environment is up (Ctrl-C stops it and removes its data).\n\n"
            f"  API server   {control_plane.server}\n"
            f"  kubeconfig   {control_plane.kubeconfig}\n"
            f"  Kafka        {broker.bootstrap_servers}\n"
            f"{real}"
            f"  logs         {run_dir}/*/logs/\n\n"
            "In another terminal:\n"
            f"  source {env_file}\n"
            "  kubectl get nodes\n"
            "  kubectl get crd\n" + ("  kubectl explain ppl.spec\n" if crds else ""),
            flush=True,
        )
        while not stop.wait(1.0):
            processes = [*control_plane.processes, broker.process]
            if node is not None:
                processes += node.processes
            dead = [p.name for p in processes if p and not p.alive()]
            if dead:
                say(f"{', '.join(dead)} exited unexpectedly; stopping (logs in {run_dir})")
                return 1
        say("stopping")
        return 0
    finally:
        env.stop()


def _cmd_demo(args: argparse.Namespace) -> int:
    from tailor_localenv import demo

    return demo.run(
        demo.Options(
            headless=args.headless,
            duration=args.duration if args.duration is not None else (60 if args.headless else 0),
            rate=args.rate,
            update_after=args.update_after,
            work_dir=args.work_dir,
            local_processes=args.local_processes,
            settle_s=args.settle,
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tailor-localenv", description=__doc__)
    add_version(parser)
    sub = parser.add_subparsers(dest="command", required=True)
    boot = sub.add_parser("bootstrap", help="build or verify the control plane and Kafka cache")
    boot.add_argument(
        "--skip-optional", action="store_true", help="do not build kind (only Docker users need it)"
    )
    boot.add_argument(
        "--images",
        action="store_true",
        help="also install the real node's Debian packages (as root) and build Tailor's images",
    )
    boot.set_defaults(func=_cmd_bootstrap)
    images = sub.add_parser(
        "images", help="build Tailor's images for the real node (mmdebstrap + buildah)"
    )
    images.set_defaults(func=_cmd_images)
    verify = sub.add_parser("verify", help="check the cache against its checksums, build nothing")
    verify.set_defaults(func=_cmd_verify)
    up = sub.add_parser("up", help="run the control plane and Kafka until Ctrl-C")
    up.add_argument("--nodes", type=int, default=2, help="number of KWOK fake nodes (default 2)")
    up.add_argument(
        "--real-node",
        action="store_true",
        help="also start the real kubelet node that runs Tailor's images (root; see README)",
    )
    up.add_argument(
        "--crds",
        type=Path,
        default=REPO_ROOT / "crds",
        help="directory of CRD YAML files to install (default: the repo's crds/)",
    )
    up.set_defaults(func=_cmd_up)
    demo = sub.add_parser(
        "demo", help="the whole pipeline: operator, stream workers, scorers, live clicks"
    )
    demo.add_argument("--headless", action="store_true", help="no screen; a JSON summary")
    demo.add_argument(
        "--duration", type=float, help="seconds to run (default: until Ctrl-C; headless 60)"
    )
    demo.add_argument(
        "--settle",
        type=float,
        default=120.0,
        help="after --duration, wait at most this long (seconds) for a model rollout still"
        " going to end, so that the summary says how it ended (default 120)",
    )
    demo.add_argument("--rate", type=int, default=200, help="click events per second")
    demo.add_argument(
        "--update-after",
        type=float,
        help="seconds before the model update (default: half the duration, else 40)",
    )
    demo.add_argument(
        "--work-dir",
        type=Path,
        help="logs, models and cluster data (default: $TAILOR_CACHE/demo, wiped at start)",
    )
    demo.add_argument(
        "--local-processes",
        action="store_true",
        help="run workers and scorers as local processes even where the real node could run"
        " them as pods (the fallback on hosts without root or runc)",
    )
    demo.set_defaults(func=_cmd_demo)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except bootstrap_mod.BootstrapError as exc:
        print(f"tailor-localenv: {exc}", file=sys.stderr)
        return 2
    except (StartError, RealNodeUnavailable) as exc:
        print(f"tailor-localenv: {exc}", file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as exc:
        print(f"tailor-localenv: {shlex.join(exc.cmd)} failed:\n{exc.stderr}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
