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
        layout.pseudo_file("{stage}", "{fold}"),
    log:
        layout.log("pseudo_fold", "{stage}_fold{fold}"),
    benchmark:
        layout.benchmark("pseudo_fold", "{stage}_fold{fold}")
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
        probs=layout.ensemble_file("{stage}", "test.parquet"),
    output:
        layout.pseudo_file("{stage}"),
    log:
        layout.log("pseudo", "{stage}"),
    benchmark:
        layout.benchmark("pseudo", "{stage}")
    conda:
        "../../envs/saltseg.yaml"
    params:
        tile=config["tile_size"],
        pseudo=config["pseudo"],
        n_folds=config["folds"]["n_folds"],
        seed=config["seed"],
    shell:
        PSEUDO_SHELL
