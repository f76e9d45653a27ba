# Your own labelled survey (config `survey`, docs/own-data.md): tiled into the Kaggle layout the
# other rules read, with its known mosaic layout and folds of contiguous slices in place of the
# assembled mosaics and stratified folds; `snakemake volume` predicts the whole survey.
if SURVEY:

    ruleorder: survey_mosaic > mosaic
    ruleorder: survey_folds > folds

    # cheap (no torch): on the submitting node with a cluster executor, as in the Snakefile
    localrules:
        survey_mosaic,
        survey_folds,
        report_volume,
        volume,

    rule survey_data:
        input:
            seismic=SURVEY["seismic"],
            labels=SURVEY["labels"],
        output:
            directory(DATA_DIR),
        log:
            layout.log("survey_data", "survey_data"),
        benchmark:
            layout.benchmark("survey_data", "survey_data")
        conda:
            "../../envs/saltseg.yaml"
        params:
            axis=config["sections"]["axis"],
            tile=config["tile_size"],
            test_every=SURVEY["test_every"],
        shell:
            "python -m saltseg survey-tiles --seismic {input.seismic} --labels {input.labels}"
            " --out {output} --axis {params.axis} --tile-size {params.tile}"
            " --test-every {params.test_every} > {log} 2>&1"

    rule survey_mosaic:
        input:
            data=DATA_DIR,
        output:
            tiles=layout.result("mosaic", "tiles.parquet"),
            pairs=layout.result("mosaic", "pairs.parquet"),
            png=report(
                directory(layout.result("mosaic", "png")),
                patterns=["{name}.png"],
                caption="../report/mosaic.rst",
                category="Mosaics",
            ),
        log:
            layout.log("survey_mosaic", "survey_mosaic"),
        benchmark:
            layout.benchmark("survey_mosaic", "survey_mosaic")
        conda:
            "../../envs/saltseg.yaml"
        params:
            data_files=data_files(TRAIN, TEST),
            tile=config["tile_size"],
            draw=config["mosaic"]["draw"],
        shell:
            "python -m saltseg survey-mosaic --data-dir {input.data} --tile-size {params.tile}"
            " --tiles {output.tiles} --pairs {output.pairs} --png-dir {output.png}"
            " --draw {params.draw} > {log} 2>&1"

    rule survey_folds:
        input:
            data=DATA_DIR,
        output:
            layout.result("folds.csv"),
        log:
            layout.log("survey_folds", "survey_folds"),
        benchmark:
            layout.benchmark("survey_folds", "survey_folds")
        conda:
            "../../envs/saltseg.yaml"
        params:
            data_files=data_files(TRAIN),
            n_folds=config["folds"]["n_folds"],
        shell:
            "python -m saltseg survey-folds --data-dir {input.data} --out {output}"
            " --n-folds {params.n_folds} > {log} 2>&1"

    rule predict_volume:
        input:
            seismic=SURVEY["seismic"],
            labels=SURVEY["labels"],
            models=blend_outputs("model.pt", folds=True),
            members=layout.blend_file("members.json"),
            cv=layout.blend_file("cv.json"),
        output:
            directory(layout.result("volume")),
        log:
            layout.log("predict_volume", "volume"),
        benchmark:
            layout.benchmark("predict_volume", "volume")
        conda:
            "../../envs/saltseg.yaml"
        threads: RUNTIME["threads"]
        resources:
            gpu=1,
            cuda_graphs=CUDA_GRAPHS,
            jobs_per_gpu=JOBS_PER_GPU,
            batch_size=PREDICT_BATCH,
        params:
            blend=lambda wildcards, input: Path(input.members).parent,
            stride=config["sections"]["stride"],
            axis=config["sections"]["axis"],
            tta=",".join(config["predict"]["tta"]),
            numerics=NUMERICS,
            threshold=config["submission"]["threshold"],
            keep=lambda wildcards, input: (
                f"--keep-labels {input.labels}" if SURVEY["keep_labels"] else ""
            ),
        shell:
            "python -m saltseg predict-section --models {params.blend} --cv {input.cv}"
            " --input {input.seismic} --out {output} --stride {params.stride}"
            " --axis {params.axis} --batch-size {resources.batch_size}"
            " --tta {params.tta} --threshold {params.threshold} {params.keep}"
            " --device {params.numerics[device]} --amp {params.numerics[amp]}"
            " --channels-last {params.numerics[channels_last]} --threads {threads}"
            " --cuda-graphs {resources.cuda_graphs} --jobs-per-gpu {resources.jobs_per_gpu}"
            " > {log} 2>&1"

    rule report_volume:
        input:
            seismic=SURVEY["seismic"],
            labels=SURVEY["labels"],
            volume=layout.result("volume"),
        output:
            report(
                layout.result("report", "volume_slices.png"),
                caption="../report/volume.rst",
                category="Volume",
            ),
        log:
            layout.log("report_volume", "report_volume"),
        benchmark:
            layout.benchmark("report_volume", "report_volume")
        conda:
            "../../envs/saltseg.yaml"
        params:
            axis=config["sections"]["axis"],
        shell:
            "python -m saltseg plot-volume --seismic {input.seismic} --labels {input.labels}"
            " --volume {input.volume} --axis {params.axis} --out {output} > {log} 2>&1"

    rule volume:
        input:
            layout.result("volume"),
            layout.result("report", "volume_slices.png"),
