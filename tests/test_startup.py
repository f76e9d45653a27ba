"""What a job imports before it works: cheap jobs never load the deep-learning stack."""

import subprocess
import sys

HEAVY = ("torch", "timm", "albumentations")


def loaded_after(statement: str) -> set[str]:
    """The heavy modules a fresh interpreter holds after the CLI module and ``statement``."""
    probe = (
        f"import sys, saltseg.cli\n{statement}\nprint(*[m for m in {HEAVY!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_parquet_csv_and_plot_jobs_import_no_torch_timm_or_albumentations():
    cheap = "folds merge ensemble pseudo_labels mosaic postprocess submit summary".split()
    statement = "from saltseg import report, steps\n" + "\n".join(f"steps.{s}" for s in cheap)
    assert loaded_after(statement) == set()


def test_training_and_prediction_leave_albumentations_to_the_per_tile_path():
    assert loaded_after("from saltseg import steps; steps.train; steps.predict") == {
        "torch",
        "timm",
    }
    flips = "[{'name': 'HorizontalFlip'}]"
    tile_path = f"from saltseg.data.augment import build_augment; build_augment({flips})"
    assert "albumentations" in loaded_after(tile_path)
