from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/prepare.smk"
include: "workflow/rules/compatibility.smk"
include: "workflow/rules/finetune.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"


localrules:
    all,
    check_compatibility,
    report,


# prepare_data also runs locally when the raw data is light, so that check_compatibility can stop
# a run before any cluster job is submitted (README "Running on a SLURM cluster").
if sw_resources.local_prepare(RAW_BYTES):

    localrules:
        prepare_data,


rule all:
    input:
        get_final_outputs(),


onsuccess:
    # only when this run's targets include the report (not, e.g., `snakemake results/pretrain/model.pt`)
    if any(job.rule.name == "report" for job in workflow.dag.jobs):
        print(f"stagewise: report at {os.path.abspath('results/report.html')}")
