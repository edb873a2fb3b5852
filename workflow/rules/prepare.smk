# local when the raw data is light, so that check_compatibility can stop a run before any cluster
# job is submitted (README "Running on a SLURM cluster")
rule prepare_data:
    input:
        get_raw_files,
    output:
        train="results/data/{dataset}/train.h5",
        val="results/data/{dataset}/val.h5",
        test="results/data/{dataset}/test.h5",
        summary="results/data/{dataset}/summary.json",
    log:
        sw_paths.log("prepare_data"),
    benchmark:
        sw_paths.benchmark("prepare_data")
    localrule: sw_resources.local_prepare(RAW_BYTES)
    conda:
        "../../envs/stagewise.yaml"
    threads: THREADS
    resources:
        mem_mb=sw_resources.prepare_mem_mb(RAW_BYTES),
        runtime=30,
    params:
        dataset=get_dataset_params,
        name="{dataset}",
        task=config["model"]["task"],
        version=VERSION,
    script:
        "../scripts/prepare.py"
