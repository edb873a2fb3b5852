"""Reference mapping, stagewise's `scarches` recipe against scvi-tools' scArches, on the same cells in one run.

1. `stagewise init --example scarches` in a fresh folder (`--large`: the data replaced by 20,000
   reference cells and 5,000 query cells of 2,000 genes from `stagewise.synthetic.expression.expression_counts`),
   `--set key=value` overrides of its config, then the whole workflow (`stagewise run`), timed.
2. scvi-tools in a child process, on the cells of stagewise's prepared splits: the SCVI reference is
   trained on the source train split (validation: the source val split), `load_query_data` adds the
   query batches, the query model is trained on the target train split (validation: target val);
   same sizes and settings as the config (n_latent, hidden, dropout, NB, batch size, epochs, lr, KL
   warm-up of each stage; scvi-tools' own Adam, eps 0.01), scArches' recommended use_layer_norm="both",
   use_batch_norm="none", encode_covariates=True.
3. Every model's latent space of the 240 (large: 1,500) target test cells against the latent space of
   the source train split: kNN label transfer (stagewise.metrics.knn_hits, k = the config's
   evaluation.knn_k or 15), 95 % percentile bootstrap CIs over the same 1,000 resamples of the test
   cells for all four models; the test NLL (NB, summed over genes, z at the posterior mean, observed
   library size: stagewise's `nll`); wall and CPU time of reference and query training and the
   peak resident memory of the processes that ran them.

    python benchmarks/bench_scarches.py [--large] [--cores 2] [--set model.params.use_layer_norm=both ...]
        [--keep DIR] [--no-scvi]
    python benchmarks/bench_scarches.py --epoch-cpu DIR     # only step 4, on a finished --keep DIR

4. Query training's CPU seconds per epoch, both systems in one process, interleaved (3 rounds of
   5 epochs): on a shared machine the per-epoch wall times of step 1 and 2 are minutes apart.

Peak memory: stagewise's from Snakemake's benchmark files (max_rss of the pretrain and finetune
jobs), scvi-tools' the child process's peak RSS after reference and after query training.
Threads: scvi-tools gets the torch threads stagewise's training jobs get for the same data
(`stagewise.resources.threads`: 1 below 256 MB) and OMP_NUM_THREADS=1; with 2 threads on a loaded
2-core machine its OpenMP threads wait on each other and training runs some 30x slower.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESAMPLES, SEED = 1000, 0


def set_key(raw: dict, dotted: str, value) -> None:
    *path, last = dotted.split(".")
    for key in path:
        raw = raw.setdefault(key, {})
    raw[last] = value


def run_stagewise(folder: Path, cores: int) -> dict:
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    start = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        [sys.executable, "-m", "stagewise.cli", "run", "--configfile", "config.yaml", "--cores", str(cores)],
        cwd=folder,
        capture_output=True,
        text=True,
        env=env,
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode:
        sys.exit(f"stagewise run failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}")
    jobs = sum(1 for _ in (folder / "benchmarks").rglob("*.tsv"))
    return {"wall": wall, "cpu": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime), "jobs": jobs}


def job(folder: Path, tsv: str, stage_json: str) -> dict:
    """A training job: Snakemake's benchmark row (whole job) and the stage record (training loop)."""
    import pandas as pd

    row = pd.read_csv(folder / "benchmarks" / tsv, sep="\t").iloc[0]
    stage = json.loads((folder / stage_json).read_text())
    history = pd.read_csv(folder / Path(stage_json).with_name("history.tsv"), sep="\t")
    return {
        "job_wall": float(row["s"]),
        "job_cpu": float(row["cpu_time"]),
        "peak_mib": float(row["max_rss"]),
        "train_wall": stage["train_seconds"],
        "epochs": int(stage["epochs_run"]),
        "epoch_median": float(history["seconds"].iloc[1:].median()),
    }


def stagewise_model(folder: Path, experiment: str, stage: str) -> dict:
    import h5py

    with h5py.File(folder / "results" / experiment / stage / "test_predictions.h5") as h5:
        return {"hits": h5["knn_correct"][:].astype(bool), "nll": h5["nll"][:], "ids": h5["sample_ids"].asstr()[:]}


def ids(path: Path) -> list[str]:
    import h5py

    with h5py.File(path) as h5:
        return list(h5["sample_ids"].asstr()[:])


def scvi_worker(folder: Path, out: Path) -> None:
    """Runs in its own process: scvi-tools reference and query training on stagewise's splits."""
    import logging
    import warnings

    import anndata
    import torch
    import yaml
    from stagewise import resources

    raw = sum(f.stat().st_size for f in (folder / "data").iterdir())
    torch.set_num_threads(resources.threads(raw))  # the threads stagewise's training jobs get for this data
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    logging.getLogger("scvi").setLevel(logging.ERROR)
    import lightning.pytorch as pl
    import scvi
    from stagewise import likelihoods, metrics

    cfg = yaml.safe_load((folder / "config.yaml").read_text())
    params, pre, train = cfg["model"]["params"], cfg["pretrained"]["training"], cfg["training"]
    k = (cfg.get("evaluation") or {}).get("knn_k", 15)
    epochs_ref, epochs_query = pre.get("epochs", train["epochs"]), train["epochs"]
    lr_ref = (pre.get("optimizer") or {}).get("lr", train["optimizer"]["lr"])
    warm = (pre.get("loss") or {}).get("kl_warmup", 0)
    data, results = folder / cfg["data"]["source"]["train"], folder / "results" / "data"
    split = {f"{d}_{s}": ids(results / d / f"{s}.h5") for d in ("source", "target") for s in ("train", "val", "test")}
    reference = anndata.read_h5ad(data)[split["source_train"] + split["source_val"]].copy()
    query = anndata.read_h5ad(folder / cfg["data"]["target"]["train"])
    query = query[split["target_train"] + split["target_val"] + split["target_test"]].copy()
    for a in (reference, query):
        a.X = a.X.toarray() if hasattr(a.X, "toarray") else a.X
    n_tr, n_va = len(split["source_train"]), len(split["source_val"])
    q_tr, q_va = len(split["target_train"]), len(split["target_val"])

    class EpochTimes(pl.Callback):
        def __init__(self):
            self.times = []

        def on_train_epoch_start(self, trainer, module):
            self.t = time.perf_counter()

        def on_train_epoch_end(self, trainer, module):
            self.times.append(time.perf_counter() - self.t)

    scvi.settings.seed = SEED
    scvi.model.SCVI.setup_anndata(reference, batch_key="batch")
    hidden = params.get("hidden", [128])
    model = scvi.model.SCVI(
        reference,
        n_latent=params.get("n_latent", 10),
        n_hidden=hidden[0],
        n_layers=len(hidden),
        dropout_rate=params.get("dropout", 0.1),
        gene_likelihood=params.get("likelihood", "nb"),
        dispersion="gene",
        use_layer_norm="both",
        use_batch_norm="none",
        encode_covariates=True,
    )
    common = dict(
        batch_size=train["batch_size"],
        accelerator="cpu",
        enable_progress_bar=False,
        early_stopping=False,
        enable_model_summary=False,
        logger=False,
        enable_checkpointing=False,
    )
    record: dict = {"threads": torch.get_num_threads()}

    def timed(name, fit, epochs, n_train, n_val):
        cb = EpochTimes()
        w, c = time.perf_counter(), time.process_time()
        split = [np.arange(n_train), np.arange(n_train, n_train + n_val), np.arange(n_train + n_val, fit.adata.n_obs)]
        fit.train(
            max_epochs=epochs,
            datasplitter_kwargs={"external_indexing": split},
            callbacks=[cb],
            **common,
            plan_kwargs=plan,
        )
        record[name] = {
            "train_wall": time.perf_counter() - w,
            "train_cpu": time.process_time() - c,
            "epochs": len(cb.times),
            "epoch_median": float(np.median(cb.times[1:])),
            "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }

    plan = {"lr": lr_ref, "n_epochs_kl_warmup": warm, "weight_decay": 0.0}
    timed("reference", model, epochs_ref, n_tr, n_va)

    def latent(m, adata, idx):
        return m.get_latent_representation(adata, indices=idx, batch_size=1024)

    def nll(m, adata, idx):
        mod = m.module.eval()
        out = []
        with torch.no_grad():
            for tensors in m._make_data_loader(adata=adata, indices=idx, batch_size=1024):
                inf = mod.inference(**mod._get_inference_input(tensors))
                inf["z"] = inf["qz"].loc
                px = mod.generative(**mod._get_generative_input(tensors, inf))["px"]
                out.append(-likelihoods.nb_log_prob(tensors["X"], px.mu, px.theta).sum(-1))
        return torch.cat(out).numpy()

    ref_latent = latent(model, reference, np.arange(n_tr))
    labels_ref = reference.obs["cell_type"].to_numpy()[:n_tr]
    test = np.arange(q_tr + q_va, len(query))
    labels_test = query.obs["cell_type"].to_numpy()[test]
    query_model = scvi.model.SCVI.load_query_data(query, model, accelerator="cpu")
    query_model.is_trained_ = (
        True  # the reference's weights, the new batch columns as initialised: map without training
    )
    found = {}
    found["scvi_untrained"] = {
        "hits": metrics.knn_hits(ref_latent, labels_ref, latent(query_model, query, test), labels_test, k),
        "nll": nll(query_model, query, test),
    }
    plan = {
        "lr": train["optimizer"]["lr"],
        "n_epochs_kl_warmup": (train.get("loss") or {}).get("kl_warmup", 0),
        "weight_decay": 0.0,
    }
    timed("query", query_model, epochs_query, q_tr, q_va)
    found["scvi_trained"] = {
        "hits": metrics.knn_hits(ref_latent, labels_ref, latent(query_model, query, test), labels_test, k),
        "nll": nll(query_model, query, test),
    }
    np.savez(
        out.with_suffix(".npz"),
        **{f"{m}_{key}": v for m, d in found.items() for key, v in d.items()},
        test_ids=np.array(query.obs_names[test]),
    )
    out.write_text(json.dumps(record | {"scvi_version": scvi.__version__, "k": k}))


def epoch_cpu(folder: Path, epochs: int = 5, rounds: int = 3, threads: int | None = None) -> dict:
    """CPU seconds per epoch of the query training alone, both systems in this one process, interleaved:
    stagewise's surgery stage (`trainer.fit` on the start model, the stage's config, as the finetune job)
    and scvi-tools' query training (on a reference trained 1 epoch: the weights do not change the cost)."""
    import logging
    import warnings

    import anndata
    import torch
    from stagewise import checkpoints, config, freezing, resources, trainer
    from stagewise.io.batches import Batches

    raw = sum(f.stat().st_size for f in (folder / "data").iterdir())
    torch.set_num_threads(threads or resources.threads(raw))
    warnings.filterwarnings("ignore")
    for name in ("lightning", "lightning.pytorch", "scvi"):
        logging.getLogger(name).setLevel(logging.ERROR)
    import scvi

    cfg = config.load(folder / "config.yaml")
    stage = config.stage_config(cfg, "surgery", 0)
    stage["training"]["epochs"] = epochs
    results = folder / "results"
    split = {f"target_{s}": ids(results / "data/target" / f"{s}.h5") for s in ("train", "val")}
    ref_ids = ids(results / "data/source/train.h5")
    reference = anndata.read_h5ad(folder / cfg["data"]["source"]["train"])[ref_ids].copy()
    query = anndata.read_h5ad(folder / cfg["data"]["target"]["train"])[
        split["target_train"] + split["target_val"]
    ].copy()
    for a in (reference, query):
        a.X = a.X.toarray() if hasattr(a.X, "toarray") else a.X
    scvi.settings.seed = SEED
    scvi.model.SCVI.setup_anndata(reference, batch_key="batch")
    params, common = (
        cfg["model"]["params"],
        dict(
            accelerator="cpu",
            enable_progress_bar=False,
            enable_model_summary=False,
            logger=False,
            enable_checkpointing=False,
            batch_size=cfg["training"]["batch_size"],
        ),
    )
    ref_model = scvi.model.SCVI(
        reference,
        n_latent=params["n_latent"],
        n_hidden=params["hidden"][0],
        n_layers=len(params["hidden"]),
        dropout_rate=params["dropout"],
        gene_likelihood="nb",
        use_layer_norm="both",
        use_batch_norm="none",
        encode_covariates=True,
    )
    ref_model.train(max_epochs=1, **common)
    n_tr, n_va = len(split["target_train"]), len(split["target_val"])
    times: dict[str, list[float]] = {"stagewise": [], "scvi-tools": []}
    for _ in range(rounds):
        start = checkpoints.load(results / "start/model.pt")
        model = checkpoints.build_model(start)
        masks = freezing.entry_masks(model, start.meta.new_parameter_masks or {})
        selection = freezing.select(model, stage["policy"], start.meta.new_parameters or [], masks, "timing")
        kwargs = dict(feature_names=start.meta.feature_names, categories=start.meta.categories)
        train = Batches(
            str(results / "data/target/train.h5"), stage["training"]["batch_size"], shuffle=True, seed=0, **kwargs
        )
        val = Batches(str(results / "data/target/val.h5"), stage["training"]["batch_size"], **kwargs)
        c = time.process_time()
        trainer.fit(model, train, val, stage["training"], selection, "timing", start.meta.categories, None, "counts")
        times["stagewise"].append((time.process_time() - c) / epochs)
        train.close()
        val.close()
        q = scvi.model.SCVI.load_query_data(query.copy(), ref_model, accelerator="cpu")
        c = time.process_time()
        q.train(
            max_epochs=epochs,
            plan_kwargs={"lr": 1e-3, "weight_decay": 0.0},
            early_stopping=False,
            datasplitter_kwargs={
                "external_indexing": [np.arange(n_tr), np.arange(n_tr, n_tr + n_va), np.array([], dtype=int)]
            },
            **common,
        )
        times["scvi-tools"].append((time.process_time() - c) / epochs)
    return times


def bootstrap(hits: dict[str, np.ndarray]) -> dict[str, tuple[float, float]]:
    n = len(next(iter(hits.values())))
    idx = np.random.default_rng(SEED).integers(0, n, (RESAMPLES, n))
    return {name: tuple(np.percentile(h[idx].mean(1), [2.5, 97.5])) for name, h in hits.items()}


def print_epoch_cpu(folder: Path, threads: int | None = None) -> None:
    times = epoch_cpu(folder, threads=threads)
    ratios = [a / b for a, b in zip(times["stagewise"], times["scvi-tools"])]
    print(
        "query training, CPU s per epoch (5 epochs, 3 interleaved rounds, one process): "
        + "; ".join(f"{name} {' '.join(f'{t:.3f}' for t in values)}" for name, values in times.items())
        + f"; stagewise / scvi-tools median {np.median(ratios):.2f}",
        flush=True,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--large", action="store_true", help="20,000 reference and 5,000 query cells of 2,000 genes")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=YAML",
        help="config override, e.g. model.params.use_layer_norm=both",
    )
    parser.add_argument("--keep", type=Path, help="run in this folder (kept) instead of a temporary one")
    parser.add_argument("--no-scvi", action="store_true", help="stagewise only")
    parser.add_argument("--scvi-worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument(
        "--epoch-cpu", type=Path, metavar="DIR", help="only the per-epoch CPU timing, on a finished --keep DIR"
    )
    parser.add_argument("--threads", type=int, help="torch threads of --epoch-cpu (default: stagewise's for the data)")
    args = parser.parse_args(argv)
    if args.scvi_worker:
        return scvi_worker(args.scvi_worker, args.out)
    if args.epoch_cpu:
        return print_epoch_cpu(args.epoch_cpu, args.threads)
    import yaml
    from stagewise import cli
    from stagewise.synthetic import examples

    folder = args.keep or Path(tempfile.mkdtemp(prefix="bench_scarches_"))
    if folder.exists() and any(folder.iterdir()):
        shutil.rmtree(folder)
    with open(os.devnull, "w") as null:
        stdout, sys.stdout = sys.stdout, null
        try:
            cli.main(["init", "--example", "scarches", str(folder)])
        finally:
            sys.stdout = stdout
    if args.large:
        examples._scarches_files(folder / "data", reference=20000, query=5000, genes=2000)
    raw = yaml.safe_load((folder / "config.yaml").read_text())
    for item in args.set:
        key, _, value = item.partition("=")
        set_key(raw, key, yaml.safe_load(value))
    (folder / "config.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    print(f"folder {folder}; overrides {args.set or 'none'}", flush=True)

    workflow = run_stagewise(folder, args.cores)
    print(
        f"stagewise workflow: {workflow['jobs']} jobs, {workflow['wall']:.1f} s wall, {workflow['cpu']:.1f} s CPU",
        flush=True,
    )
    pretrain = job(folder, "pretrain/pretrain.tsv", "results/pretrain/stage.json")
    finetune = job(folder, "finetune/surgery/1_new.tsv", "results/surgery/stages/1_new/stage.json")
    models = {
        "stagewise surgery (`train: [new]`)": stagewise_model(folder, "surgery", "stages/1_new"),
        "stagewise untrained surgery (`pretrained`)": stagewise_model(folder, "start", ""),
    }
    scvi = None
    if not args.no_scvi:
        out = folder / "scvi.json"
        w = time.perf_counter()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        done = subprocess.run(
            [sys.executable, __file__, "--scvi-worker", str(folder), "--out", str(out)],
            capture_output=True,
            text=True,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode:
            sys.exit(f"scvi-tools failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}")
        scvi = json.loads(out.read_text()) | {
            "process_wall": time.perf_counter() - w,
            "process_cpu": (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime),
        }
        arrays = np.load(out.with_suffix(".npz"), allow_pickle=True)
        order = {cell: i for i, cell in enumerate(arrays["test_ids"])}
        for name, key in (
            ("scvi-tools untrained query", "scvi_untrained"),
            ("scvi-tools query trained", "scvi_trained"),
        ):
            models[name] = {"hits": arrays[f"{key}_hits"], "nll": arrays[f"{key}_nll"], "ids": arrays["test_ids"]}
        for name in list(models)[:2]:  # stagewise's arrays in the scvi order (the same cells)
            m = models[name]
            perm = np.argsort([order[c] for c in m["ids"]])
            models[name] = {key: v[perm] for key, v in m.items()}
    ci = bootstrap({name: m["hits"] for name, m in models.items()})
    n = len(next(iter(models.values()))["hits"])
    print(f"\n{n} query test cells, kNN k={scvi['k'] if scvi else 15}, {RESAMPLES} paired bootstrap resamples\n")
    print(
        "| model | kNN accuracy (95 % CI) | test NLL | training | wall s | CPU s | epochs | s / epoch (median) "
        "| peak RSS MiB |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, m in models.items():
        acc = f"{m['hits'].mean():.3f} ({ci[name][0]:.3f}–{ci[name][1]:.3f})"
        if name.startswith("stagewise surgery"):
            t, what = finetune, "query (job; loop)"
        elif name.startswith("stagewise"):
            t, what = pretrain, "reference (job; loop)"
        elif "untrained" in name:
            t, what = (
                scvi["reference"]
                | {"job_wall": scvi["reference"]["train_wall"], "job_cpu": scvi["reference"]["train_cpu"]},
                "reference",
            )
        else:
            t, what = (
                scvi["query"] | {"job_wall": scvi["query"]["train_wall"], "job_cpu": scvi["query"]["train_cpu"]},
                "query",
            )
        wall = (
            f"{t['job_wall']:.1f}; {t['train_wall']:.1f}" if name.startswith("stagewise") else f"{t['train_wall']:.1f}"
        )
        cpu = f"{t['job_cpu']:.1f} (job)" if name.startswith("stagewise") else f"{t['train_cpu']:.1f}"
        per_epoch = f"{t['train_wall'] / t['epochs']:.3f} ({t['epoch_median']:.3f})"
        print(
            f"| {name} | {acc} | {m['nll'].mean():.1f} | {what} | {wall} | {cpu} | {t['epochs']} | {per_epoch} "
            f"| {t['peak_mib']:.0f} |"
        )
    if scvi:
        print(
            f"\nscvi-tools {scvi['scvi_version']} process (import, data, both trainings, evaluation): "
            f"{scvi['process_wall']:.1f} s wall, "
            f"{scvi['process_cpu']:.1f} s CPU, {scvi['threads']} torch threads"
        )
        ratio = (finetune["train_wall"] / finetune["epochs"]) / (scvi["query"]["train_wall"] / scvi["query"]["epochs"])
        median = finetune["epoch_median"] / scvi["query"]["epoch_median"]
        print(f"query training per epoch, stagewise / scvi-tools: {ratio:.2f} (mean), {median:.2f} (median epoch)")
        best_sw = max(list(models)[:2], key=lambda k: models[k]["hits"].mean())
        best_scvi = max(list(models)[2:], key=lambda k: models[k]["hits"].mean())
        idx = np.random.default_rng(SEED).integers(0, n, (RESAMPLES, n))
        diff = models[best_sw]["hits"][idx].mean(1) - models[best_scvi]["hits"][idx].mean(1)
        lo, hi = np.percentile(diff, [2.5, 97.5])
        print(
            f"best stagewise ({best_sw}) − best scvi-tools ({best_scvi}): "
            f"{models[best_sw]['hits'].mean() - models[best_scvi]['hits'].mean():+.3f} (paired 95 % CI "
            f"{lo:+.3f} to {hi:+.3f})"
        )
    print(
        f"stagewise workflow: {workflow['jobs']} jobs, {workflow['wall']:.1f} s wall, {workflow['cpu']:.1f} s "
        f"CPU (all jobs)"
    )
    if scvi:
        done = subprocess.run(
            [sys.executable, __file__, "--epoch-cpu", str(folder)],
            capture_output=True,
            text=True,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
        print(
            done.stdout.strip().splitlines()[-1]
            if done.returncode == 0
            else f"epoch timing failed:\n{done.stderr[-3000:]}"
        )


if __name__ == "__main__":
    main()
