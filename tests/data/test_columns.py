"""Every reader takes the same column options, checked in one place."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from recfit.data.io import from_frame, load, read_csv, read_parquet, write_parquet
from recfit.data.sources import load_dataset
from recfit.errors import ConfigError

FRAME = pd.DataFrame({"u": [1, 2], "i": [5, 5], "r": [4.0, 2.0], "t": [10, 20]})


def test_every_reader_takes_the_same_options(tmp_path: Path) -> None:
    csv = tmp_path / "r.csv"
    FRAME.to_csv(csv, index=False)
    opts = {"user": "u", "item": "i", "rating": "r", "timestamp": "t", "rating_scale": (1, 5)}
    frames = [
        from_frame(FRAME, **opts),  # type: ignore[arg-type]
        read_csv(csv, **opts),  # type: ignore[arg-type]
        load(csv, **opts),  # type: ignore[arg-type]
        load_dataset(csv, **opts),  # type: ignore[arg-type]
    ]
    pq = tmp_path / "r.parquet"
    write_parquet(frames[0], pq)
    frames.append(read_parquet(pq))  # stored timestamp column and scale come back
    for d in frames:
        assert d.rating.tolist() == [4.0, 2.0]
        assert d.timestamp is not None and d.timestamp.tolist() == [10, 20]
        assert d.rating_scale == (1.0, 5.0)


@pytest.mark.parametrize("reader", ["from_frame", "read_csv", "read_parquet", "load"])
def test_a_misspelt_option_is_refused_with_a_hint(tmp_path: Path, reader: str) -> None:
    csv = tmp_path / "r.csv"
    FRAME.to_csv(csv, index=False)
    pq = tmp_path / "r.parquet"
    write_parquet(from_frame(FRAME, user="u", item="i", rating="r"), pq)
    call = {
        "from_frame": lambda: from_frame(FRAME, users="u"),  # type: ignore[call-arg]
        "read_csv": lambda: read_csv(csv, users="u"),  # type: ignore[call-arg]
        "read_parquet": lambda: read_parquet(pq, users="u"),  # type: ignore[call-arg]
        "load": lambda: load(csv, users="u"),  # type: ignore[call-arg]
    }[reader]
    with pytest.raises(ConfigError, match=rf"{reader}\(\).*received 'users'; did you mean 'user'"):
        call()
