# The blend: a weighted average of models of the stages that run (config `blend`), each already
# averaged over folds, snapshots and flip TTA; scored on OOF at 0.5 and tuned, blank tiles forced
# empty. With `blend.method: fit` the weights are fitted on the OOF maps and judged within folds
# (saltseg.blend), else they are the configured ones. members.json records them and lets
# `saltseg predict-section --models results/blend` use the same members and weights.


rule blend:
    input:
        data=DATA_DIR,
        oof=blend_outputs("oof.parquet"),
        test=blend_outputs("test.parquet"),
        cv=blend_outputs("cv.json"),
        folds=layout.result("folds.csv"),
    output:
        oof=layout.blend_file("oof.parquet"),
        test=layout.blend_file("test.parquet"),
        cv=layout.blend_file("cv.json"),
        members=layout.blend_file("members.json"),
    log:
        layout.log("blend", "blend"),
    benchmark:
        layout.benchmark("blend", "blend")
    conda:
        "../../envs/saltseg.yaml"
    params:
        data_files=data_files(TRAIN),
        tile=config["tile_size"],
        weights=(
            f"--fit-folds {layout.result('folds.csv')} --n-folds {config['folds']['n_folds']}"
            if config["blend"]["method"] == "fit"
            else "--weights " + " ".join(str(weight) for _, _, weight in BLEND)
        ),
    shell:
        "python -m saltseg ensemble --data-dir {input.data} --tile-size {params.tile}"
        " --oof-parts {input.oof} --test-parts {input.test} {params.weights}"
        " --oof {output.oof} --test {output.test} --cv {output.cv}"
        " --cv-parts {input.cv} --members {output.members} > {log} 2>&1"
