# Stage 3: the models of `stage3.models`, taught by the previous stage's pseudo-labels
# (stage 2 when it runs): phases with `data: pseudo` pretrain on fold k's confident test tiles,
# phases with `data: train+pseudo` add fold k's share of them to its train tiles. Fold k's
# labels come from the previous stage's fold-k models only (pseudo.smk), so no stage-3 OOF
# score sees a model that trained on its own tile.

if "stage3" in STAGES:

    rule stage3:
        input:
            stage_outputs("cv.json", ["stage3"]),
            layout.ensemble_file("stage3", "cv.json"),
