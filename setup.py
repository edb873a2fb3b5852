"""Builds the wheel with the workflow's files inside the package (stagewise/_workflow), copied from the repository."""

import shutil
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

sys.path.insert(0, str(Path(__file__).parent / "workflow"))
from stagewise.assets import SHIPPED

IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ".snakemake")


class BuildWithWorkflow(build_py):
    """A regular build also copies the Snakefile, rules, schema, scripts, envs, profiles and examples; an editable one
    uses them where they are."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        target = Path(self.build_lib) / "stagewise" / "_workflow"
        for item in SHIPPED:
            source, dest = Path(item), target / item
            dest.parent.mkdir(parents=True, exist_ok=True)
            if source.is_dir():
                shutil.copytree(source, dest, ignore=IGNORED, dirs_exist_ok=True)
            else:
                shutil.copy2(source, dest)


setup(cmdclass={"build_py": BuildWithWorkflow})
