rule synthetic_data:
    output:
        directory(SYNTHETIC_DIR),
    log:
        layout.log("synthetic_data", "synthetic_data"),
    benchmark:
        layout.benchmark("synthetic_data", "synthetic_data")
    conda:
        "../../envs/saltseg.yaml"
    params:
        synth=config["synthetic"],
        tile=config["tile_size"],
    shell:
        "python -m saltseg synth --out {output} --seed {params.synth[seed]}"
        " --sections {params.synth[sections]} --rows {params.synth[rows]}"
        " --cols {params.synth[cols]} --train-fraction {params.synth[train_fraction]}"
        " --blank-fraction {params.synth[blank_fraction]} --tile-size {params.tile} > {log} 2>&1"


rule folds:
    input:
        data=DATA_DIR,
        layout=mosaic_layout,
    output:
        layout.result("folds.csv"),
    log:
        layout.log("folds", "folds"),
    benchmark:
        layout.benchmark("folds", "folds")
    conda:
        "../../envs/saltseg.yaml"
    params:
        data_files=data_files(FOLDS_READ),
        folds=config["folds"],
        layout=lambda wildcards, input: (
            f"--layout {input.layout}" if input.layout else ""
        ),
        seed=config["seed"],
        tile=config["tile_size"],
    shell:
        "python -m saltseg folds --data-dir {input.data} --out {output}"
        " --n-folds {params.folds[n_folds]} --stratify {params.folds[stratify]}"
        " --seed {params.seed} --tile-size {params.tile}"
        " {params.layout} > {log} 2>&1"
