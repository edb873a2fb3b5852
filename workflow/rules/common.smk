import stagewise
from stagewise import config as sw_config
from stagewise import config_files as sw_config_files
from stagewise import paths as sw_paths
from stagewise import resources as sw_resources
from stagewise import tasks as sw_tasks
from stagewise.errors import StagewiseError
from snakemake.exceptions import WorkflowError

# The files this run's config came from: the --configfile files (they replace the Snakefile's),
# else config/config.yaml. Snakemake has parsed them already; they are read again to refuse a
# duplicate key and to name the file and line of each error.
# `module stagewise:` in the user's Snakefile
_AS_MODULE = workflow.modifier.namespace is not None
_CONFIG_FILES = list(map(str, workflow.overwrite_configfiles or workflow.configfiles))
_CONFIG_SOURCE = " + ".join(_CONFIG_FILES) or "config"
if workflow.config_settings.config:
    _CONFIG_SOURCE += " with --config overrides"
try:
    _config_lines = [sw_config.read(path)[1] for path in _CONFIG_FILES]
    _one_file = _config_lines and _CONFIG_SOURCE == _CONFIG_FILES[0]
    _config_lines = _config_lines[0] if _one_file else None
    _validated = sw_config.validate(config, source=_CONFIG_SOURCE, lines=_config_lines)
    # every file the config names exists: a missing one must not pass for "Nothing to be done" on
    # old results. Used as a module, the user's own rules may make them: checked with the DAG.
    if not _AS_MODULE:
        sw_config_files.check_files(_validated, _CONFIG_SOURCE, _config_lines)
except StagewiseError as error:
    raise WorkflowError(str(error)) from None
config.clear()
config.update(sw_config.canonical(_validated))  # sorted keys: YAML order never reruns

VERSION = stagewise.__version__
RAW_BYTES = sw_resources.raw_bytes(config["data"])
# same on every machine: torch results depend on it
THREADS = sw_resources.threads(RAW_BYTES)
NAME = "[A-Za-z0-9][A-Za-z0-9_-]*"


wildcard_constraints:
    dataset=NAME,
    experiment=NAME,
    stage=NAME,
    index="[0-9]+",
    model=f"start|baselines/scratch|{NAME}/stages/[0-9]+_{NAME}",


def get_pretrained_checkpoint():
    return config["pretrained"]["checkpoint"] or "results/pretrain/model.pt"


_FILES_CHECKED = []


def check_config_files():
    """With stagewise as a module: every file the config names exists or a rule makes it. Run once,
    when the DAG is built (every rule is known then, the user's own too)."""
    if _AS_MODULE and not _FILES_CHECKED:
        try:
            sw_config_files.check_files(
                config,
                _CONFIG_SOURCE,
                _config_lines,
                made=lambda path: any(r.is_producer(path) for r in workflow.rules),
            )
        except StagewiseError as error:
            raise WorkflowError(str(error)) from None
        _FILES_CHECKED.append(True)


def get_raw_files(wildcards):
    """The user's files of a dataset (built-in data such as sklearn:digits has none): a changed file reruns."""
    check_config_files()
    spec = config["data"][wildcards.dataset]
    genome = [spec["genome"]["annotation"]] if spec.get("genome") else []
    return [
        spec[k] for k in ("train", "test") if spec.get(k) and ":" not in spec[k]
    ] + genome


_PLUGIN = []


def get_plugin_source():
    """A plug-in architecture's source sha256 (or installed package and version); None for built-ins.

    A param of the rules that build the model from its class, so an edit of the plug-in's file
    reruns check_compatibility (and pretrain) and everything after them.
    """
    if ":" not in config["model"]["architecture"]:
        return None
    if not _PLUGIN:  # torch is imported for plug-ins only, once
        from stagewise.models import source

        _PLUGIN.append(
            sw_config.canonical(source.describe(config["model"]["architecture"]))
        )
    return _PLUGIN[0]


def get_feature_names_file():
    return config["pretrained"]["feature_names"] or []


def get_label_names_file():
    return config["pretrained"]["label_names"] or []


def get_dataset_params(wildcards):
    return sw_config.canonical(config["data"][wildcards.dataset])


def get_pretrain_params(wildcards):
    return sw_config.pretrain_config(config)


def _stage_position(wildcards):
    dirs = sw_config.stage_dirs(config, wildcards.experiment)
    folder = f"{wildcards.index}_{wildcards.stage}"
    if folder not in dirs:
        raise WorkflowError(
            f"experiment {wildcards.experiment} has no stage {folder}; stages: {dirs}"
        )
    return dirs.index(folder)


def get_parent_model(wildcards):
    position = _stage_position(wildcards)
    if position == 0:
        return "results/start/model.pt"
    previous = sw_config.stage_dirs(config, wildcards.experiment)[position - 1]
    return f"results/{wildcards.experiment}/stages/{previous}/model_best.pt"


def get_stage_params(wildcards):
    return sw_config.stage_config(
        config, wildcards.experiment, _stage_position(wildcards)
    )


def get_scratch_params(wildcards):
    return sw_config.scratch_config(config)


def get_evaluation_params():
    """What evaluate reads of `evaluation` (not `baselines`: the report's business)."""
    return {k: v for k, v in config["evaluation"].items() if k != "baselines"}


def get_eval_model(wildcards):
    if wildcards.model == "start":
        return "results/start/model.pt"
    return f"results/{wildcards.model}/model_best.pt"


def get_knn_reference():
    """Labelled samples whose latent space kNN label transfer starts from: the training split of
    evaluation.knn_reference, by default the source data when there is one."""
    if not sw_tasks.get(config["model"]["task"]).latent_key:
        return []
    dataset = config["evaluation"].get("knn_reference") or (
        "source" if "source" in config["data"] else "target"
    )
    if dataset not in config["data"]:
        raise StagewiseError(
            f"evaluation.knn_reference: {dataset}, but the config has no data.{dataset}"
        )
    return f"results/data/{dataset}/train.h5"


def get_evaluated_models():
    """Every model the report compares: each stage of each experiment, then the baselines."""
    models = [
        {
            "experiment": name,
            "stage": folder,
            "dir": f"results/{name}/stages/{folder}",
            "kind": "stage",
        }
        for name in config["experiments"]
        for folder in sw_config.stage_dirs(config, name)
    ]
    baselines = config["evaluation"]["baselines"]
    if "scratch" in baselines:
        models.append(
            {
                "experiment": "scratch",
                "stage": "scratch",
                "dir": "results/baselines/scratch",
                "kind": "baseline",
            }
        )
    if "pretrained" in baselines and config["pretrained"]["head"] is None:
        models.append(
            {
                "experiment": "pretrained",
                "stage": "start",
                "dir": "results/start",
                "kind": "baseline",
            }
        )
    return models


def get_report_metrics():
    return [f"{m['dir']}/test_metrics.json" for m in get_evaluated_models()]


def get_report_predictions():
    return [f"{m['dir']}/test_predictions.h5" for m in get_evaluated_models()]


def get_report_benchmarks():
    """The benchmark file of every job before the report (its time and memory table)."""
    pretrain = config["pretrained"]["checkpoint"] is None
    jobs = [("prepare_data", "target"), ("check_compatibility", None)]
    jobs += [("prepare_data", "source"), ("pretrain", None)] if pretrain else []
    jobs += [
        ("finetune", sw_paths.stage_label(name, folder))
        for name in config["experiments"]
        for folder in sw_config.stage_dirs(config, name)
    ]
    models = get_evaluated_models()
    if any(m["dir"] == "results/baselines/scratch" for m in models):
        jobs.append(("train_scratch", None))
    jobs += [("evaluate", m["dir"].removeprefix("results/")) for m in models]
    return [sw_paths.benchmark(rule, job) for rule, job in jobs]


def get_report_histories():
    return [
        f"{m['dir']}/history.tsv"
        for m in get_evaluated_models()
        if m["dir"] != "results/start"
    ]


def get_final_outputs():
    return ["results/report.html", "results/metrics.tsv"]


# Cluster resources (README "Running on a SLURM cluster"). A missing summary.json (a dry run
# before prepare_data) makes Snakemake show <TBD> and evaluate the function again at submission.
def get_train_mem_mb(wildcards, input):
    return sw_resources.train_mem_mb(input.summary)


def get_stage_runtime(wildcards, input):
    return sw_resources.train_runtime(
        input.summary, get_stage_params(wildcards)["training"]["epochs"]
    )


def get_scratch_runtime(wildcards, input):
    return sw_resources.train_runtime(
        input.summary, get_scratch_params(wildcards)["training"]["epochs"]
    )


def get_pretrain_runtime(wildcards, input):
    return sw_resources.train_runtime(
        input.summary, get_pretrain_params(wildcards)["training"]["epochs"]
    )


def get_eval_runtime(wildcards, input):
    return sw_resources.evaluate_runtime(input.summary)


# Training rules ask for what the stage's processes need: `training.devices` per node × `training.nodes`
# (stagewise.resources.slurm_layout; README "Several GPUs or nodes"). Values None leave a resource unset.
def _training_layout(get_params, key):
    def layout(wildcards):
        training = get_params(wildcards)["training"]
        return sw_resources.slurm_layout(training, THREADS).get(key)

    return layout


def training_threads(get_params):
    def threads(wildcards):
        return sw_resources.stage_threads(THREADS, get_params(wildcards)["training"])

    return threads


def training_mem_mb(get_params):
    def mem_mb(wildcards, input):
        training = get_params(wildcards)["training"]
        return sw_resources.stage_mem_mb(input.summary, training)

    return mem_mb


def training_resources(get_params):
    """The SLURM layout resources of a training rule whose stage config `get_params(wildcards)` returns."""
    keys = [
        "gpu",
        "mpi",
        "nodes",
        "tasks_per_node",
        "tasks",
        "tasks_per_gpu",
        "cpus_per_task",
        "gres",
    ]
    return {key: _training_layout(get_params, key) for key in keys}
