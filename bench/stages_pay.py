"""Does a second stage pay on real data at equal compute? Real fold 0, fixed epochs (stages_pay).

Usage: python -m bench stages_pay --data-dir ../shared/tgs [--epochs 8] [--test-tiles 4000]

On the train tiles of real fold 0 (depth folds), scored on fold 0's tiles, which no arm saw:

- ``stage1_T``: the teacher, E epochs from scratch;
- ``stage1_2T``: 2E epochs from scratch, one cosine cycle (the same compute as the next two);
- ``stage2_T+T``: the teacher fine-tuned E more epochs on its train tiles plus balanced
  pseudo-labels of ``--test-tiles`` random test tiles, cut at the teacher's tuned cut (the
  recipe's ``init: teacher`` student);
- ``restart_T+T``: the same E epochs from the teacher on the train tiles only, which tells
  what the pseudo-labels add beyond a second cosine cycle.

Epochs are fixed, not minutes, so arms that share the machine with other work stay comparable.
The teacher's cut is tuned on its fold-0 maps (the only labelled tiles it did not see), so the
student's pseudo-labels know three numbers of fold 0's truth; the pipeline tunes them on the
other folds instead. ``pseudo_quality`` scores every pseudo-label selection of the teacher on
fold 0's tiles, playing test tiles, by coverage bucket (bench/pseudo_quality.py's table). Arms
resume after a kill: checkpoints and finished rows stay under ``--work``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from bench.common import REPO, speed_probe, write_result
from bench.fold0 import cpu_net, score, split
from bench.pseudo_quality import quality
from saltseg.binarize import binarize, tune
from saltseg.data import kaggle
from saltseg.inference.predict import predict_probs
from saltseg.models import build_model
from saltseg.pseudo import empty_share, select_balanced
from saltseg.runtime.device import keep_freed_memory, resolve_runtime
from saltseg.steps.fold_models import concat
from saltseg.training.loop import fit

TTA = ("none", "hflip")


def params(epochs: int, lr: float, data: str = "train") -> dict:
    """The cpu profile's net at 64 px, one BCE+Dice cosine phase of ``epochs`` on ``data``."""
    phase = {
        "loss": "bce_dice",
        "optimizer": "adam",
        "lr": lr,
        "schedule": "cosine",
        "epochs": epochs,
        "batch_size": 16,
        "snapshots": 1,
        "side_weight": 0.3,
        "empty_weight": 0.05,
        "data": data,
    }
    return {**cpu_net(resize_to=64, pad_to=64), "phases": [phase]}


def predict(model, state: dict, images: np.ndarray, runtime) -> np.ndarray:
    model.load_state_dict(state)
    return predict_probs(model, images, runtime, 128, TTA)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--epochs", type=int, default=8, help="E: the teacher's epochs")
    parser.add_argument("--test-tiles", type=int, default=4000, help="test tiles to label")
    parser.add_argument("--lr", type=float, default=0.003, help="from scratch")
    parser.add_argument("--student-lr", type=float, default=0.001, help="fine-tuning")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", default=str(REPO / "results" / "stages_pay"))
    parser.add_argument("--out", help="default: bench/records/<bench>-<date>.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    keep_freed_memory()
    runtime = resolve_runtime("cpu", "false", "auto")
    speed = speed_probe()
    train, val, blank = split(args.data_dir)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    rows_path = work / "rows.json"
    rows = json.loads(rows_path.read_text()) if rows_path.is_file() else {}
    epochs = args.epochs

    def arm(name: str, spec: dict, sources: dict, init: dict | None = None) -> dict:
        torch.manual_seed(0)
        model = build_model(spec["arch"], 101, **spec["model"])
        if init is not None:
            model.load_state_dict(init)
        trained = fit(model, spec, sources, val, runtime, work / name, 0)
        probs = predict(model, trained["snapshots"][-1], val.images, runtime)
        history = trained["history"]
        rows[name] = {
            "epochs": len(history),
            "train_minutes": round(sum(h.get("seconds", 0.0) for h in history) / 60, 2),
            "scores": score(val.masks, blank, probs),
        }
        rows_path.write_text(json.dumps(rows, indent=2) + "\n")
        print(name, json.dumps({k: rows[name]["scores"][k] for k in ("at_0.5", "tuned")}))
        return {"model": model, "state": trained["snapshots"][-1], "probs": probs}

    teacher = arm("stage1_T", params(epochs, args.lr), {"train": train})
    cut = tune(val.masks, np.where(blank[:, None, None], 0.0, teacher["probs"])).cut
    share = empty_share(train.masks, kaggle.is_blank(train.images))
    selections = quality(val.masks, val.images, teacher["probs"], cut, share)
    test = kaggle.load_test(args.data_dir, 101)
    pick = np.sort(np.random.default_rng(0).choice(len(test), args.test_tiles, replace=False))
    test = test.subset(pick)
    test_probs = predict(teacher["model"], teacher["state"], test.images, runtime)
    test_masks = binarize(test_probs, test.images, cut)
    chosen = select_balanced(test_probs, test_masks, kaggle.is_blank(test.images), share, 5, 0)[
        "index"
    ].to_numpy()
    pseudo = kaggle.Tiles(
        [test.ids[i] for i in chosen], test.images[chosen], test_masks[chosen], test.depths[chosen]
    )
    if "stage1_2T" not in rows:
        arm("stage1_2T", params(2 * epochs, args.lr), {"train": train})
    if "stage2_T+T" not in rows:
        student = params(epochs, args.student_lr, "train+pseudo")
        sources = {"train": train, "train+pseudo": concat(train, pseudo)}
        arm("stage2_T+T", student, sources, init=teacher["state"])
    if "restart_T+T" not in rows:
        arm("restart_T+T", params(epochs, args.student_lr), {"train": train}, init=teacher["state"])
    write_result(
        "stages_pay",
        {
            "command": f"python -m bench stages_pay --data-dir DATA --epochs {epochs}"
            f" --test-tiles {args.test_tiles}",
            "epochs": epochs,
            "n_train": len(train),
            "n_val": len(val),
            "n_test_labelled": args.test_tiles,
            "teacher_cut": cut.__dict__,
            "labelled_empty_share": round(share, 3),
            "pseudo_labels": {
                "kept": len(pseudo),
                "empty": int((~pseudo.masks.any(axis=(1, 2))).sum()),
            },
            "arms": rows,
            "pseudo_quality": selections,
        },
        args.out,
        speed=speed,
        headline=", ".join(f"{name} {arm['scores']['tuned']:.3f}" for name, arm in rows.items())
        + f" (tuned OOF, real fold 0, E = {epochs} epochs)",
    )


if __name__ == "__main__":
    main()
