rule prepare_data:
    input:
        get_raw_files,
    output:
        train="results/data/{dataset}/train.h5",
        val="results/data/{dataset}/val.h5",
        test="results/data/{dataset}/test.h5",
        summary="results/data/{dataset}/summary.json",
    log:
        "logs/prepare_data/{dataset}.log",
    benchmark:
        "benchmarks/prepare_data/{dataset}.tsv"
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
