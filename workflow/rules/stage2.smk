# Stage 2: the models of `stage2.models`, taught by the previous stage's pseudo-labels
# (stage 1 when it runs): phases with `data: pseudo` pretrain on fold k's confident test tiles,
# phases with `data: train+pseudo` add fold k's share of them to its train tiles. Fold k's
# labels come from the previous stage's fold-k models only (pseudo.smk), so no stage-2 OOF
# score sees a model that trained on its own tile.

if "stage2" in STAGES:

    rule stage2:
        input:
            stage_outputs("cv.json", ["stage2"]),
            layout.ensemble_file("stage2", "cv.json"),
