from stagewise.entry import run_step
from stagewise.steps import compatibility

run_step(compatibility.run, snakemake)  # noqa: F821 (injected by Snakemake)
