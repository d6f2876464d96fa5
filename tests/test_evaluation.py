"""The lesion-level scorer and the accuracy benchmark built on it."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from imaging.evaluation import (TruthDeposit, band_of, change_category, format_report,
                                match_deposits, score_film, summarise, CNR_BANDS,
                                AREA_BANDS_MM2)

ROOT = Path(__file__).resolve().parents[1]


def _benchmark(name: str = "accuracy"):
    spec = importlib.util.spec_from_file_location(f"{name}_benchmark",
                                                  ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module        # workers and dataclasses need it importable
    spec.loader.exec_module(module)
    return module


def _disc(shape, centre, radius, label=1, into=None):
    rows, cols = np.ogrid[:shape[0], :shape[1]]
    out = np.zeros(shape, np.int32) if into is None else into
    out[(rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius ** 2] = label
    return out


# --- categories and bands ------------------------------------------------------------------

@pytest.mark.parametrize("base, follow, expected", [
    (10, 12.5, "stable"), (10, 12.6, "progression"), (10, 7.5, "stable"), (10, 7.4, "improvement"),
    (10, 0, "improvement"), (0, 0, "stable"), (0, 0.1, "progression"), (4, 4, "stable"),
])
def test_change_category(base, follow, expected):
    assert change_category(base, follow) == expected


def test_change_category_rejects_negative_areas():
    with pytest.raises(ValueError):
        change_category(-1, 2)


def test_bands_are_half_open():
    assert band_of(2.0, CNR_BANDS) == 1 and band_of(2.999, CNR_BANDS) == 1
    assert band_of(15.0, CNR_BANDS) == 5 and band_of(1e9, CNR_BANDS) == 5
    assert band_of(0.99, AREA_BANDS_MM2) == 0 and band_of(1.0, AREA_BANDS_MM2) == 1
    assert band_of(20.0, AREA_BANDS_MM2) == 3


# --- matching ------------------------------------------------------------------------------

def test_overlap_rule_is_20_percent_of_the_smaller_area():
    truth = np.zeros((20, 20), np.int32)
    truth[5:15, 5:15] = 1                       # 100 px
    for covered, matched in ((19, False), (20, True)):
        pred = np.zeros_like(truth)
        pred[0:5, 0:20] = 1                     # 100 px, none inside the truth
        flat = np.flatnonzero(truth.ravel() == 1)[:covered]
        pred.ravel()[flat] = 1
        pairs, _, _ = match_deposits(truth, pred)
        assert bool(pairs) is matched
    # a small prediction entirely inside a big deposit matches (20 % of the smaller)
    pred = np.zeros_like(truth)
    pred[9, 9] = 7
    assert match_deposits(truth, pred)[0] == [(1, 7)]


def test_split_and_merged_predictions():
    truth = _disc((60, 60), (20, 20), 6, 1)
    _disc((60, 60), (20, 40), 6, 2, into=truth)
    split = np.zeros_like(truth)
    split[14:20, 14:27] = 1
    split[20:27, 14:27] = 2
    score = score_film(truth, [TruthDeposit(1, 1.0, 5), TruthDeposit(2, 1.0, 5)], split,
                       {1: 3.0, 2: 4.0}, 0.01)
    assert [t.detected for t in score.truths] == [True, False]
    assert score.truths[0].score == 4.0 and score.false_positives == 0
    assert score.truths[0].predicted_area_mm2 == pytest.approx(
        np.count_nonzero(split) * 0.01)
    merged = (truth > 0).astype(np.int32)
    score = score_film(truth, [TruthDeposit(1, 1.0, 5), TruthDeposit(2, 1.0, 5)], merged, {}, 0.01)
    assert all(t.detected for t in score.truths) and score.false_positives == 0


def test_score_film_checks_its_inputs():
    truth = _disc((20, 20), (10, 10), 3)
    with pytest.raises(ValueError):
        score_film(truth, [], truth, {}, 1.0)                 # label without a table row
    with pytest.raises(ValueError):
        score_film(truth, [TruthDeposit(1, 1.0, 3)], truth[:10], {}, 1.0)


# --- the oracle and the empty prediction ---------------------------------------------------

def _films():
    shape = (80, 80)
    films = []
    for i in range(4):
        truth = np.zeros(shape, np.int32)
        table = []
        for k in range(i):
            _disc(shape, (15 + 20 * k, 20 + 10 * i), 2 + 2 * k, k + 1, into=truth)
            table.append(TruthDeposit(k + 1, float(np.count_nonzero(truth == k + 1)) * 0.04,
                                      2.5 + 4 * k))
        films.append((f"f{i}", truth, table))
    return films


def test_oracle_scores_perfectly_and_empty_scores_zero():
    films = _films()
    oracle = [score_film(t, table, t, {d.label: d.cnr for d in table}, 0.04, film_id=i)
              for i, t, table in films]
    empty = [score_film(t, table, np.zeros_like(t), {}, 0.04, film_id=i)
             for i, t, table in films]
    pairs = [("f1", "f2"), ("f2", "f3"), ("f0", "f0")]
    good, none = summarise(oracle, pairs), summarise(empty, pairs)
    assert good.sensitivity.value == 1 and good.fp_per_film == 0
    assert good.fp_per_negative_film == 0 and good.negatives_without_fp == 1
    assert good.dice_pooled == 1 and good.dice_mean_positive == 1
    assert good.median_abs_area_error == 0
    assert good.serial["agreement"] == 1
    assert all(cell.value == 1 for cell in good.by_cnr.values() if cell.total)
    assert none.sensitivity.value == 0 and none.dice_pooled == 0 and none.fp_per_film == 0
    assert none.median_abs_area_error is None
    assert none.serial["agreement"] == pytest.approx(1 / 3)    # only f0 → f0 is stable
    # FROC: sensitivity falls and false positives never rise as the threshold goes up
    sens = [s for _, s, _ in good.froc]
    assert sens[0] == 1 and sens == sorted(sens, reverse=True)
    assert none.froc == ((-math.inf, 0.0, 0.0),)
    text = format_report(good, "oracle")
    assert "100.0%" in text and "FROC" in text
    json.dumps(good.to_dict())


def test_false_positives_and_froc():
    truth = _disc((50, 50), (10, 10), 3)
    pred = truth.copy()
    _disc((50, 50), (35, 35), 3, 5, into=pred)              # a false positive
    score = score_film(truth, [TruthDeposit(1, 1.0, 6)], pred, {1: 10.0, 5: 2.0}, 1.0)
    negative = score_film(np.zeros_like(truth), [], pred, {1: 10.0, 5: 2.0}, 1.0, film_id="n")
    report = summarise([score, negative])
    assert report.fp_per_film == 1.5 and report.fp_per_negative_film == 2
    assert report.negatives_without_fp == 0
    froc = {thr: (s, fp) for thr, s, fp in report.froc}
    assert froc[-math.inf] == (1.0, 1.5)
    assert froc[10.0] == (1.0, 0.5)


@settings(max_examples=40, deadline=None)
@given(arrays(np.int32, (12, 12), elements=st.integers(0, 4)))
def test_any_label_image_scored_against_itself_is_perfect(labels):
    table = [TruthDeposit(int(k), float(np.count_nonzero(labels == k)), 5.0)
             for k in np.unique(labels) if k]
    score = score_film(labels, table, labels, None, 1.0)
    assert all(t.detected for t in score.truths) and score.false_positives == 0
    if table:
        assert score.dice == 1
        assert score_film(labels, table, np.zeros_like(labels), None, 1.0).dice == 0


# --- the benchmark -------------------------------------------------------------------------

def test_suite_composition():
    bench = _benchmark()
    items = bench.build_suite(60, seed=0)
    n_films = sum(len(item.ids) for item in items)
    negatives = sum(item.kind == "film" and item.spec.n_deposits == 0 for item in items)
    series = [item for item in items if item.kind == "series"]
    assert n_films == 60 and negatives == 12 and len(series) == 4
    assert {item.spec.anatomy for item in items} == {"hand", "forearm", "lower_leg"}
    ids = [i for item in items for i in item.ids]
    assert len(set(ids)) == len(ids)
    assert len(bench.serial_pairs(items)) == 8


def test_benchmark_proves_the_scorer(tmp_path, monkeypatch):
    bench = _benchmark()

    def unavailable():
        raise bench.PredictorUnavailable("the detector is not available (test)")

    monkeypatch.setattr(bench, "_detector", unavailable)
    results = bench.run(n_films=6, seeds=(1,), predictors=("oracle", "empty", "pipeline"),
                        spacing_mm=0.4)
    assert results["suite"]["n_films"] == 6 and results["suite"]["n_serial_pairs"] == 2
    assert "pipeline" in results["unavailable"]
    oracle, empty = results["results"]["oracle"], results["results"]["empty"]
    assert oracle["sensitivity"]["sensitivity"] == 1 and oracle["sensitivity"]["total"] > 5
    assert oracle["fp_per_film"] == 0 and oracle["dice_pooled"] == 1
    assert oracle["median_abs_area_error"] == 0 and oracle["serial"]["agreement"] == 1
    assert empty["sensitivity"]["sensitivity"] == 0 and empty["dice_pooled"] == 0
    path = tmp_path / "results" / "accuracy.json"
    bench.write_json(results, path)
    written = json.loads(path.read_text())
    assert written["results"]["oracle"]["sensitivity"]["sensitivity"] == 1
    assert "_reports" not in written


def test_several_seeds_pool_their_suites_and_keep_each_seeds_figures():
    bench = _benchmark()
    one = bench.run(n_films=6, seeds=(2,), predictors=("oracle",), spacing_mm=0.45)
    both = bench.run(n_films=6, seeds=(1, 2), predictors=("oracle",), spacing_mm=0.45)
    assert both["suite"]["n_films"] == 12 and both["suite"]["seeds"] == [1, 2]
    assert both["results"]["oracle"]["serial"]["n_pairs"] == 4
    pooled = both["results"]["oracle"]["sensitivity"]
    per_seed = {seed: r["oracle"]["sensitivity"] for seed, r in both["per_seed"].items()}
    assert pooled["total"] == per_seed[1]["total"] + per_seed[2]["total"]
    assert per_seed[2] == one["results"]["oracle"]["sensitivity"] and one["per_seed"] == {}
    ids = [i for _, item in bench.pooled_suite(6, (1, 2)) for i in item.ids]
    assert len(set(ids)) == 12 and all(i.startswith(("1/", "2/")) for i in ids)


def test_benchmark_command_line(tmp_path, capsys):
    bench = _benchmark()
    path = tmp_path / "acc.json"
    assert bench.main(["--n-films", "2", "--predictor", "oracle", "--spacing-mm", "0.45",
                       "--json", str(path), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "predictor: oracle" in out and path.is_file()


def test_clutter_benchmark_sees_quantum_noise_fall_with_dose():
    """The finest scale's spread holds quantum noise: re-exposing the same negative film at
    the phantom's highest dose, masks kept, must lower it; every spread is positive."""
    from imaging.config import AnalysisConfig
    from imaging.phantom import PhantomSpec, make_film
    from imaging.phantom.film import reexpose

    clutter = _benchmark("clutter")
    film = make_film(PhantomSpec("hand", seed=3, spacing_mm=0.3, n_deposits=0, dose=0.5))
    config = AnalysisConfig()
    anatomy, own = clutter.scale_spreads(film, config)
    _, high = clutter.scale_spreads(reexpose(film, clutter.HIGH_DOSE), config, anatomy)
    assert len(own) == len(config.detection.scales_mm)
    assert np.all(own > 0) and np.all(high > 0)
    assert high[0] < 0.8 * own[0]
