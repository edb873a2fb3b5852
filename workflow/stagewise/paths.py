"""What each rule's jobs are called: their benchmark and log files, a stage's label and the config path it names.

The rules build their `benchmark:` and `log:` paths and a stage's `label` param here, and the report and the
stages read them back here, so both sides keep one format.
"""

from __future__ import annotations

from pathlib import PurePath

BENCHMARKS, LOGS = "benchmarks", "logs"
STAGE_FOLDER = "{index}_{stage}"  # a stage's folder under its experiment, e.g. 2_top (index from 1)
STAGE_LABEL = "{experiment}/" + STAGE_FOLDER  # a stage of an experiment, e.g. gradual/2_top
SCRATCH_LABEL = "baselines/scratch"
PRETRAIN_LABEL = "pretrain"

JOBS = {  # rule -> its job name, with the rule's wildcards (a rule without wildcards has one job)
    "prepare_data": "{dataset}",
    "pretrain": "pretrain",
    "check_compatibility": "check_compatibility",
    "finetune": STAGE_LABEL,
    "train_scratch": "scratch",
    "evaluate": "{model}",
    "report": "report",
}


def benchmark(rule: str, job: str | None = None) -> str:
    """`benchmarks/<rule>/<job>.tsv` of one job, or with no `job` the wildcard pattern the rule declares."""
    return f"{BENCHMARKS}/{rule}/{JOBS[rule] if job is None else job}.tsv"


def log(rule: str, job: str | None = None) -> str:
    """`logs/<rule>/<job>.log` of one job, or with no `job` the wildcard pattern the rule declares."""
    return f"{LOGS}/{rule}/{JOBS[rule] if job is None else job}.log"


def benchmark_job(path: str) -> tuple[str, str]:
    """(rule, job) of a file `benchmark()` named: the inverse of `benchmark(rule, job)`."""
    parts = PurePath(path).with_suffix("").parts
    start = parts.index(BENCHMARKS) + 1 if BENCHMARKS in parts else 1
    return parts[start], "/".join(parts[start + 1 :])


def stage_folder(index: int, name: str) -> str:
    """The folder of an experiment's stage `index` (from 0) called `name`: STAGE_FOLDER filled in, e.g. 2_top."""
    return STAGE_FOLDER.format(index=index + 1, stage=name)


def stage_label(experiment: str, folder: str) -> str:
    """The label of a stage whose folder is `folder` (`stage_folder`): STAGE_LABEL's form, e.g. gradual/2_top."""
    return f"{experiment}/{folder}"


def config_path(label: str) -> str:
    """The config path a stage's errors name: `experiments.gradual.stages[0] (head)` for label `gradual/1_head`,
    `pretrained.training` for the pretrain stage; any other label (the scratch baseline's) as it is."""
    experiment, _, folder = label.partition("/")
    index, _, name = folder.partition("_")
    if experiment == "baselines" or not index.isdigit():
        return {PRETRAIN_LABEL: "pretrained.training"}.get(label, label)
    return f"experiments.{experiment}.stages[{int(index) - 1}] ({name})"
