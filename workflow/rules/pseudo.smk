rule pseudo_stage1:
    input:
        data=DATA_DIR,
        probs="results/stage1/ensemble/test.parquet",
    output:
        "results/pseudo/stage1.parquet",
    log:
        "results/logs/pseudo_stage1/pseudo_stage1.log",
    benchmark:
        "results/benchmarks/pseudo_stage1/pseudo_stage1.tsv"
    conda:
        "../../envs/saltseg.yaml"
    params:
        tile=config["tile_size"],
        pseudo=config["pseudo"],
        n_folds=config["folds"]["n_folds"],
        seed=config["seed"],
    shell:
        "python -m saltseg pseudo --data-dir {input.data} --tile-size {params.tile}"
        " --probs {input.probs} --method {params.pseudo[method]}"
        " --min-confidence {params.pseudo[min_confidence]} --n-folds {params.n_folds}"
        " --seed {params.seed} --out {output} > {log} 2>&1"
