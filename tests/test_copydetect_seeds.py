"""benchmarks/copydetect.py --seeds: each edit's spread over the seeds, and its table."""

import numpy as np
import pytest
from conftest import load_benchmark

from hashsdk.edits import EDITS


@pytest.fixture(scope="module")
def copydetect():
    return load_benchmark("copydetect")


def seed_row(seed: int, recall: float) -> dict:
    """A row whose every edit's recall is ``recall`` at 99.9% and recall + 0.1 at 99%."""
    cell = {"recall_at_0.999": recall, "recall_at_0.99": recall + 0.1, "map": 0.9}
    return dict(seed=seed, images_per_second=100.0, minus_first=0.0, bootstrap_se=0.01,
                scores={e: dict(cell) for e in ["all", *EDITS]})


def test_the_spread_is_each_edits_mean_and_sample_sd(copydetect):
    rows = [seed_row(0, 0.5), seed_row(1, 0.7), seed_row(2, 0.6)]
    rows[2]["scores"]["text"]["recall_at_0.999"] = 0.0  # one edit apart from the others
    spread = copydetect.spread_of(rows)
    assert set(spread) == {"0.99", "0.999"}
    assert spread["0.999"]["all"] == pytest.approx((0.6, np.std([0.5, 0.7, 0.6], ddof=1)))
    assert spread["0.999"]["text"] == pytest.approx((0.4, np.std([0.5, 0.7, 0.0], ddof=1)))
    assert spread["0.99"]["blur"] == pytest.approx((0.7, 0.1))


def test_the_table_has_a_row_a_seed_and_the_spread_beside_phash(copydetect):
    rows = [seed_row(0, 0.5), seed_row(1, 0.7)]
    rows[1].update(minus_first=0.2, bootstrap_se=0.03)
    phash = {e: {"recall_at_0.999": 0.25, "recall_at_0.99": 0.5} for e in ["all", *EDITS]}
    report = dict(rows=rows, phash=phash, spread=copydetect.spread_of(rows), copies=20,
                  database=10)
    lines = copydetect.seed_table(report, "Some sets")
    assert lines[0].startswith("Some sets (20 edited copies searching 10 images)")
    assert "| 1 | 0.700 |" in "\n".join(lines) and "+0.200 ± 0.030 |" in lines[5]
    seeds_lines = [line for line in lines if line.startswith("| seeds |")]
    assert seeds_lines[0].count("0.600 ± 0.141") == len(EDITS) + 1  # at 99.9%, first
    assert seeds_lines[1].count("0.700 ± 0.141") == len(EDITS) + 1
    assert [line for line in lines if line.startswith("| pHash |")][0].count("0.250") == \
        len(EDITS) + 1


def test_the_finetune_table_shows_each_precisions_gain_over_the_frozen_row():
    """copydetect_blur.py --finetune: a table a precision, each row's gain over the first
    read at that precision, its SE and minutes beside it (none for the frozen row)."""
    blur = load_benchmark("copydetect_blur")
    frozen, tuned = seed_row(0, 0.8), seed_row(0, 0.5)
    frozen.update(model="frozen", train_minutes=None, nearest_other_median=16.0,
                  gain_se={"0.999": 0.0, "0.99": 0.0})
    tuned.update(model="fine-tuned, 4 epochs", train_minutes=21.94, nearest_other_median=11.5,
                 gain_se={"0.999": 0.07, "0.99": 0.02})
    tuned["scores"]["all"]["recall_at_0.99"] = 0.4  # -0.5 at 99%, -0.3 at 99.9%
    lines = blur.finetune_table(dict(rows=[frozen, tuned], copies=20, database=10))
    at = [i for i, line in enumerate(lines) if line.startswith("Recall at")]
    assert [lines[i] for i in at] == ["Recall at 99.9% precision:", "Recall at 99% precision:"]
    strict, loose = ([line for line in part if line.startswith("| ")]
                     for part in (lines[at[0]:at[1]], lines[at[1]:]))
    assert strict[-1].startswith("| fine-tuned, 4 epochs | 0.500 |")
    assert strict[-1].endswith("| 21.9 | 11.5 | -0.300 ± 0.070 |")
    assert loose[-1].endswith("| 21.9 | 11.5 | -0.500 ± 0.020 |")
    assert loose[-2].endswith("|  | 16 | +0.000 ± 0.000 |")


def test_a_koleo_weight_names_its_runs_and_results_without_a_dot(copydetect):
    assert copydetect.koleo_tag(0.0) == ""  # off: the names of the runs made before it
    assert copydetect.koleo_tag(1.0) == "-koleo1"
    assert copydetect.koleo_tag(0.3) == "-koleo0p3"  # a results name cannot hold a dot
