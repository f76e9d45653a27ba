# Per-fold training and prediction, fold merge and stage ensemble: the same rules serve every
# stage ({stage} is stage1, stage2 or stage3); a stage's models and its pseudo-label source come
# from config (see stage1.smk, stage2.smk, stage3.smk).


# Besides its outputs, a train job keeps fold<k>/checkpoint.pt between epochs, so that a killed
# job resumes where it stopped; the job deletes it when it succeeds. It stays undeclared on
# purpose: Snakemake removes a job's declared outputs before it reruns it, which would throw the
# resume away.
rule train:
    input:
        data=DATA_DIR,
        folds=layout.result("folds.csv"),
        pseudo=fold_pseudo,
        init=model_init,
        context=model_context,
    output:
        model=layout.fold_file("{stage}", "{model}", "{fold}", "model.pt"),
        metrics=layout.fold_file("{stage}", "{model}", "{fold}", "metrics.json"),
        history=layout.fold_file("{stage}", "{model}", "{fold}", "history.csv"),
        settings=layout.fold_file("{stage}", "{model}", "{fold}", "params.json"),
    log:
        layout.log("train", "{stage}_{model}_fold{fold}"),
    benchmark:
        layout.benchmark("train", "{stage}_{model}_fold{fold}")
    conda:
        "../../envs/saltseg.yaml"
    threads: RUNTIME["threads"]
    resources:
        gpu=1,
        cuda_graphs=CUDA_GRAPHS,
        jobs_per_gpu=JOBS_PER_GPU,
        compile=COMPILE,
        batch_size=PREDICT_BATCH,
    params:
        data_files=train_data,
        model=model_json,
        n_folds=config["folds"]["n_folds"],
        seed=config["seed"],
        tile=config["tile_size"],
        numerics=NUMERICS,
        tta=",".join(config["predict"]["tta"]),
        out_dir=subpath(output.model, parent=True),
        pseudo=lambda wildcards, input: (
            f"--pseudo {input.pseudo}" if input.pseudo else ""
        ),
        init=lambda wildcards, input: f"--init {input.init}" if input.init else "",
        context=context_arg,
    shell:
        "python -m saltseg train --data-dir {input.data} --folds {input.folds} --fold {wildcards.fold}"
        " --n-folds {params.n_folds} --tile-size {params.tile} --params {params.model:q}"
        " --seed {params.seed} --device {params.numerics[device]} --amp {params.numerics[amp]}"
        " --channels-last {params.numerics[channels_last]} --threads {threads}"
        " --cuda-graphs {resources.cuda_graphs} --jobs-per-gpu {resources.jobs_per_gpu}"
        " --workers {params.numerics[workers]} --compile {resources.compile} {params.pseudo}"
        " {params.init}"
        " --predict-tta {params.tta} --predict-batch-size {resources.batch_size}"
        " {params.context}"
        " --out-dir {params.out_dir}"
        " > {log} 2>&1"


rule predict:
    input:
        data=DATA_DIR,
        folds=layout.result("folds.csv"),
        model=layout.fold_file("{stage}", "{model}", "{fold}", "model.pt"),
        context=model_context,
    output:
        oof=layout.fold_file("{stage}", "{model}", "{fold}", "oof.parquet"),
        test=layout.fold_file("{stage}", "{model}", "{fold}", "test.parquet"),
    log:
        layout.log("predict", "{stage}_{model}_fold{fold}"),
    benchmark:
        layout.benchmark("predict", "{stage}_{model}_fold{fold}")
    conda:
        "../../envs/saltseg.yaml"
    threads: RUNTIME["threads"]
    resources:
        gpu=1,
        cuda_graphs=CUDA_GRAPHS,
        jobs_per_gpu=JOBS_PER_GPU,
        batch_size=PREDICT_BATCH,
    params:
        data_files=data_files(TRAIN, TEST),
        n_folds=config["folds"]["n_folds"],
        tile=config["tile_size"],
        numerics=NUMERICS,
        tta=",".join(config["predict"]["tta"]),
        context=context_arg,
    shell:
        "python -m saltseg predict --model {input.model} --data-dir {input.data} --folds {input.folds}"
        " --fold {wildcards.fold} --n-folds {params.n_folds} --tile-size {params.tile}"
        " --device {params.numerics[device]} --amp {params.numerics[amp]}"
        " --channels-last {params.numerics[channels_last]} --threads {threads}"
        " --cuda-graphs {resources.cuda_graphs} --jobs-per-gpu {resources.jobs_per_gpu}"
        " --tta {params.tta} --batch-size {resources.batch_size}"
        " --oof {output.oof} --test {output.test} {params.context} > {log} 2>&1"


rule merge_folds:
    input:
        data=DATA_DIR,
        oof=fold_outputs("oof.parquet"),
        test=fold_outputs("test.parquet"),
    output:
        oof=layout.model_file("{stage}", "{model}", "oof.parquet"),
        test=layout.model_file("{stage}", "{model}", "test.parquet"),
        cv=layout.model_file("{stage}", "{model}", "cv.json"),
    log:
        layout.log("merge_folds", "{stage}_{model}"),
    benchmark:
        layout.benchmark("merge_folds", "{stage}_{model}")
    conda:
        "../../envs/saltseg.yaml"
    params:
        data_files=data_files(TRAIN),
        tile=config["tile_size"],
    shell:
        "python -m saltseg merge --data-dir {input.data} --tile-size {params.tile}"
        " --oof-parts {input.oof} --test-parts {input.test}"
        " --oof {output.oof} --test {output.test} --cv {output.cv} > {log} 2>&1"


rule ensemble:
    input:
        data=DATA_DIR,
        oof=lambda wildcards: stage_outputs("oof.parquet", [wildcards.stage]),
        test=lambda wildcards: stage_outputs("test.parquet", [wildcards.stage]),
        cv=lambda wildcards: stage_outputs("cv.json", [wildcards.stage]),
    output:
        oof=layout.ensemble_file("{stage}", "oof.parquet"),
        test=layout.ensemble_file("{stage}", "test.parquet"),
        cv=layout.ensemble_file("{stage}", "cv.json"),
    log:
        layout.log("ensemble", "{stage}"),
    benchmark:
        layout.benchmark("ensemble", "{stage}")
    conda:
        "../../envs/saltseg.yaml"
    params:
        data_files=data_files(TRAIN),
        tile=config["tile_size"],
    shell:
        "python -m saltseg ensemble --data-dir {input.data} --tile-size {params.tile}"
        " --oof-parts {input.oof} --test-parts {input.test} --cv-parts {input.cv}"
        " --oof {output.oof} --test {output.test} --cv {output.cv} > {log} 2>&1"
