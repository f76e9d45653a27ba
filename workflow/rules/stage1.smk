# Stage 1: the models of `stage1.models`, trained on the labelled tiles of every fold
# (rules in models.smk) -> results/stage1/<model>/{oof,test}.parquet -> results/stage1/ensemble.


rule stage1:
    input:
        stage_outputs("cv.json", ["stage1"]),
        layout.ensemble_file("stage1", "cv.json"),
