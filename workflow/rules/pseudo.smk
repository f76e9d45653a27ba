# Pseudo-labels from a stage's test predictions (see saltseg.pseudo), binarised at the
# teacher's tuned cut.

PSEUDO_SHELL = (  # both rules select the same way; they differ in the maps and the cut they read
    "python -m saltseg pseudo --data-dir {input.data} --tile-size {params.tile}"
    " --probs {input.probs} --method {params.pseudo[method]}"
    " --min-confidence {params.pseudo[min_confidence]} --n-folds {params.n_folds}"
    " --seed {params.seed} {params.cut} --out {output} > {log} 2>&1"
)


rule pseudo_fold:
    """Fold k's labels, all for fold k, from the stage's fold-k models only, cut where the other
    folds' OOF maps score best (pseudo.teacher: fold; docs/recipe.md says what may leak).
    """
    input:
        data=DATA_DIR,
        probs=stage_fold_outputs("test.parquet"),
        cut_oof=other_folds_oof,
    output:
        layout.pseudo_file("{stage}", "{fold}"),
    log:
        layout.log("pseudo_fold", "{stage}_fold{fold}"),
    benchmark:
        layout.benchmark("pseudo_fold", "{stage}_fold{fold}")
    conda:
        "../../envs/saltseg.yaml"
    params:
        data_files=data_files(TRAIN, TEST),
        tile=config["tile_size"],
        pseudo=config["pseudo"],
        n_folds=config["folds"]["n_folds"],
        seed=config["seed"],
        cut=lambda wildcards, input: f"--cut-oof {input.cut_oof}",
    shell:
        PSEUDO_SHELL


rule pseudo:
    """The labels of the stage ensemble (all folds) at its tuned cut: what every fold of the next
    stage learns from with pseudo.teacher: ensemble, and the artifact to inspect or reuse.
    """
    input:
        data=DATA_DIR,
        probs=layout.ensemble_file("{stage}", "test.parquet"),
        cv=layout.ensemble_file("{stage}", "cv.json"),
    output:
        layout.pseudo_file("{stage}"),
    log:
        layout.log("pseudo", "{stage}"),
    benchmark:
        layout.benchmark("pseudo", "{stage}")
    conda:
        "../../envs/saltseg.yaml"
    params:
        data_files=data_files(TRAIN, TEST),
        tile=config["tile_size"],
        pseudo=config["pseudo"],
        n_folds=config["folds"]["n_folds"],
        seed=config["seed"],
        cut=lambda wildcards, input: f"--cut-cv {input.cv}",
    shell:
        PSEUDO_SHELL
