from stagewise.entry import run_step
from stagewise.steps import prepare

run_step(prepare.run, snakemake)  # noqa: F821 (injected by Snakemake)
