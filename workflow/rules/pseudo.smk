# Confident pseudo-labels from a stage's test predictions (see saltseg.pseudo).

PSEUDO_SHELL = (  # both rules select the same way; they differ in the maps they read
    "python -m saltseg pseudo --data-dir {input.data} --tile-size {params.tile}"
    " --probs {input.probs} --method {params.pseudo[method]}"
    " --min-confidence {params.pseudo[min_confidence]} --n-folds {params.n_folds}"
    " --seed {params.seed} --out {output} > {log} 2>&1"
)


rule pseudo_fold:
    """Fold k's labels, from the stage's fold-k models only: leak-free for fold k's OOF."""
    input:
        data=DATA_DIR,
        probs=stage_fold_outputs("test.parquet"),
    output:
        "results/pseudo/{stage}/fold{fold}.parquet",
    log:
        "results/logs/pseudo_fold/{stage}_fold{fold}.log",
    benchmark:
        "results/benchmarks/pseudo_fold/{stage}_fold{fold}.tsv"
    conda:
        "../../envs/saltseg.yaml"
    params:
        tile=config["tile_size"],
        pseudo=config["pseudo"],
        n_folds=config["folds"]["n_folds"],
        seed=config["seed"],
    shell:
        PSEUDO_SHELL


rule pseudo:
    """The labels of the stage ensemble (all folds): the artifact to inspect or reuse."""
    input:
        data=DATA_DIR,
        probs="results/{stage}/ensemble/test.parquet",
    output:
        "results/pseudo/{stage}.parquet",
    log:
        "results/logs/pseudo/{stage}.log",
    benchmark:
        "results/benchmarks/pseudo/{stage}.tsv"
    conda:
        "../../envs/saltseg.yaml"
    params:
        tile=config["tile_size"],
        pseudo=config["pseudo"],
        n_folds=config["folds"]["n_folds"],
        seed=config["seed"],
    shell:
        PSEUDO_SHELL
