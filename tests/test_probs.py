import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from saltseg.errors import InputError
from saltseg.probs import read_probs, write_probs


def test_round_trip_within_quantisation(tmp_path):
    probs = np.random.default_rng(0).random((7, 101, 101)).astype(np.float32)
    ids = [f"id{i}" for i in range(7)]
    write_probs(tmp_path / "p.parquet", ids, probs)
    read_ids, read = read_probs(tmp_path / "p.parquet")
    assert read_ids == ids
    assert read.shape == (7, 101, 101) and read.dtype == np.float32
    assert np.abs(read - probs).max() <= 0.5 / 255 + 1e-6
    table = pq.read_table(tmp_path / "p.parquet")
    column = table.schema.field("prob").type
    assert column.list_size == 101 * 101 and column.value_type == pa.uint8()


def test_nan_probabilities_fail_and_leave_the_old_file(tmp_path):
    path = tmp_path / "p.parquet"
    write_probs(path, ["a"], np.full((1, 4, 4), 0.25))
    with pytest.raises(InputError, match="finite probabilities"):
        write_probs(path, ["a"], np.full((1, 4, 4), np.nan))
    assert read_probs(path)[1][0, 0, 0] == pytest.approx(64 / 255)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.parquet"]


def test_not_a_probability_file(tmp_path):
    path = tmp_path / "bad.parquet"
    path.write_text("not parquet")
    with pytest.raises(InputError, match="bad.parquet"):
        read_probs(path)


def test_atomic_outputs_get_the_usual_file_mode(tmp_path):
    import os

    from saltseg.io import atomic_dir, write_json

    old = os.umask(0o022)
    try:
        write_json(tmp_path / "a.json", {"x": 1})
        with atomic_dir(tmp_path / "d") as tmp:
            (tmp / "f").write_text("x")
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755
