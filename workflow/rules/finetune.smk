rule finetune:
    input:
        model=get_parent_model,
        train="results/data/target/train.h5",
        summary="results/data/target/summary.json",
        val="results/data/target/val.h5",
    output:
        best="results/{experiment}/stages/{index}_{stage}/model_best.pt",
        last="results/{experiment}/stages/{index}_{stage}/model_last.pt",
        history="results/{experiment}/stages/{index}_{stage}/history.tsv",
        stage="results/{experiment}/stages/{index}_{stage}/stage.json",
    log:
        sw_paths.log("finetune"),
    benchmark:
        sw_paths.benchmark("finetune")
    conda:
        "../../envs/stagewise.yaml"
    threads: training_threads(get_stage_params)
    resources:
        **training_resources(get_stage_params),
        mem_mb=training_mem_mb(get_stage_params),
        runtime=get_stage_runtime,
    params:
        stage=get_stage_params,
        init="parent",
        label=sw_paths.STAGE_LABEL,
        version=VERSION,
    script:
        "../scripts/finetune.py"


rule train_scratch:
    input:
        model="results/start/model.pt",
        train="results/data/target/train.h5",
        summary="results/data/target/summary.json",
        val="results/data/target/val.h5",
    output:
        best="results/baselines/scratch/model_best.pt",
        last="results/baselines/scratch/model_last.pt",
        history="results/baselines/scratch/history.tsv",
        stage="results/baselines/scratch/stage.json",
    log:
        sw_paths.log("train_scratch"),
    benchmark:
        sw_paths.benchmark("train_scratch")
    conda:
        "../../envs/stagewise.yaml"
    threads: training_threads(get_scratch_params)
    resources:
        **training_resources(get_scratch_params),
        mem_mb=training_mem_mb(get_scratch_params),
        runtime=get_scratch_runtime,
    params:
        stage=get_scratch_params,
        init="random",
        label=sw_paths.SCRATCH_LABEL,
        version=VERSION,
    script:
        "../scripts/finetune.py"
