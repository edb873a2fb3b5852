rule pretrain:
    input:
        train="results/data/source/train.h5",
        val="results/data/source/val.h5",
        summary="results/data/source/summary.json",
    output:
        best="results/pretrain/model.pt",
        last="results/pretrain/model_last.pt",
        history="results/pretrain/history.tsv",
        stage="results/pretrain/stage.json",
    log:
        sw_paths.log("pretrain"),
    benchmark:
        sw_paths.benchmark("pretrain")
    conda:
        "../../envs/stagewise.yaml"
    threads: training_threads(get_pretrain_params)
    resources:
        **training_resources(get_pretrain_params),
        mem_mb=training_mem_mb(get_pretrain_params),
        runtime=get_pretrain_runtime,
    params:
        stage=get_pretrain_params,
        model=config["model"],
        plugin=get_plugin_source(),
        version=VERSION,
    script:
        "../scripts/pretrain.py"


rule check_compatibility:
    input:
        checkpoint=get_pretrained_checkpoint(),
        train="results/data/target/train.h5",
        feature_names=get_feature_names_file(),
        label_names=get_label_names_file(),
    output:
        json="results/compatibility.json",
        txt="results/compatibility.txt",
        model="results/start/model.pt",
    log:
        sw_paths.log("check_compatibility"),
    benchmark:
        sw_paths.benchmark("check_compatibility")
    localrule: True
    conda:
        "../../envs/stagewise.yaml"
    threads: 1
    params:
        model=config["model"],
        pretrained=config["pretrained"],
        seed=config["training"]["seed"],
        plugin=get_plugin_source(),
        version=VERSION,
    script:
        "../scripts/compatibility.py"
