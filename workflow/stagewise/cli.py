"""The `stagewise` command: check a checkpoint, run the packaged workflow, install profiles, copy examples."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from . import __version__, assets
from . import config as sw_config
from .errors import StagewiseError


def _check(args: argparse.Namespace) -> int:
    """Read the target data (no split), check the checkpoint against it, validate every stage; print the report.
    Without a checkpoint, the model `pretrain` would build from data.source (random weights) stands in for it."""
    cfg = sw_config.load(args.config, files=True)  # a bad config fails before torch is imported
    from . import checkpoints
    from .steps import compatibility, prepare, pretrain, stage

    task, checkpoint, problems = cfg["model"]["task"], cfg["pretrained"]["checkpoint"], []
    with tempfile.TemporaryDirectory() as tmp:

        def read(name: str) -> str:
            prepare.read(cfg["data"][name], name, task, f"{tmp}/{name}.h5")
            return f"{tmp}/{name}.h5"

        if checkpoint is None:
            source = pretrain.untrained(read("source"), cfg["model"], cfg["training"]["seed"])
            problems += stage.validate(source, cfg, pretraining=True)
            checkpoint = f"{tmp}/pretrain.pt"
            checkpoints.save(checkpoint, source.state_dict, source.meta)
            print(
                "pretrained.checkpoint is null: checked with the model `pretrain` builds from data.source (untrained)"
            )
        report, start = compatibility.check(
            checkpoint, read("target"), cfg["model"], cfg["pretrained"], cfg["training"]["seed"]
        )
    print(compatibility.render(report), end="")
    if start is None:
        return 1
    problems += stage.validate(start, cfg)
    total = sum(len(e["stages"]) for e in cfg["experiments"].values()) + (cfg["pretrained"]["checkpoint"] is None)
    print(f"stages: {total - len(problems)} of {total} valid" + "".join(f"\n  [  error] {p}" for p in problems))
    return 1 if problems else 0


def _run(args: argparse.Namespace, extra: list[str]) -> int:
    """Run the packaged workflow on the user's config in the current directory."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(assets.SNAKEFILE), "--directory", str(Path.cwd())]
    if args.config:
        sw_config.load(args.config, files=True)  # fail here, with the key and line named, before Snakemake starts
        cmd += ["--configfile", str(Path(args.config).resolve()), "--replace-workflow-config"]
    return subprocess.call(cmd + extra)


def _profile_install(args: argparse.Namespace) -> int:
    """Copy a shipped profile to ~/.config/snakemake/NAME (or /etc/xdg/snakemake/NAME with --site)."""
    source = assets.PROFILES / args.name
    if not source.is_dir():
        raise StagewiseError(
            f"profile {args.name!r} not found; shipped: {sorted(p.name for p in assets.PROFILES.iterdir())}"
        )
    base = Path("/etc/xdg/snakemake") if args.site else Path.home() / ".config" / "snakemake"
    target = base / args.name
    if target.exists() and not args.force:
        raise StagewiseError(f"{target} exists; pass --force to overwrite it")
    shutil.copytree(source, target, dirs_exist_ok=True)
    print(f"installed {source} -> {target}; use: snakemake --profile {args.name}")
    return 0


def _init(args: argparse.Namespace) -> int:
    """Copy an example config (and the plug-in module it names) into a new folder and write its data."""
    from .synthetic.examples import write_example_data

    examples = {p.stem: p for p in assets.EXAMPLES.glob("*.yaml")} | {"digits": assets.EXAMPLE_CONFIG}
    if args.example not in examples:
        raise StagewiseError(f"unknown example {args.example!r}; available: {sorted(examples)}")
    folder = Path(args.dir)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "config.yaml"
    if target.exists():
        raise StagewiseError(f"{target} exists; choose an empty folder")
    shutil.copy(examples[args.example], target)
    module = sw_config.load(target)["model"]["architecture"].partition(":")[0]
    written = [target]
    if (assets.EXAMPLES / f"{module}.py").is_file():
        written.append(Path(shutil.copy(assets.EXAMPLES / f"{module}.py", folder)))
    written += write_example_data(args.example, folder)
    print(
        "wrote " + ", ".join(map(str, written)) + f"\nrun: cd {folder} && stagewise run --config config.yaml --cores 2"
    )
    return 0


def _provenance(args: argparse.Namespace) -> int:
    """Print the chain from a model back to the pretrained checkpoint and data; exit 1 if a link changed."""
    from . import provenance

    links = provenance.chain(args.path)
    print(provenance.render(links), end="")
    return 1 if provenance.changed(links) else 0


def parser() -> argparse.ArgumentParser:
    """The argument parser of the `stagewise` command."""
    top = argparse.ArgumentParser(prog="stagewise", description=__doc__)
    top.add_argument("--version", action="version", version=f"stagewise {__version__}")
    sub = top.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="check a pretrained checkpoint against the config and data (exit 0/1)")
    check.add_argument("--config", required=True)
    run = sub.add_parser("run", help="run the workflow; other arguments go to snakemake")
    run.add_argument("--config", "--configfile", dest="config", help="your config file (replaces config/config.yaml)")
    profile = sub.add_parser("profile", help="install a shipped Snakemake profile")
    profile.add_argument("action", choices=["install"])
    profile.add_argument("name")
    profile.add_argument("--site", action="store_true", help="install to /etc/xdg/snakemake (all users)")
    profile.add_argument("--force", action="store_true")
    prov = sub.add_parser("provenance", help="print where a checkpoint came from; exit 1 if a link changed")
    prov.add_argument("path")
    init = sub.add_parser("init", help="start a project from an example config")
    init.add_argument("--example", required=True)
    init.add_argument("dir")
    return top


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    args, extra = parser().parse_known_args(argv)
    if extra and args.command != "run":
        parser().error(f"unrecognized arguments: {' '.join(extra)}")
    handlers = {
        "check": lambda: _check(args),
        "run": lambda: _run(args, extra),
        "profile": lambda: _profile_install(args),
        "init": lambda: _init(args),
        "provenance": lambda: _provenance(args),
    }
    try:
        return handlers[args.command]()
    except (StagewiseError, OSError) as error:
        print(f"stagewise: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
