"""Significance tests against hand-computed cases, and `compare --baseline` on stored outcomes."""
import math
import warnings

import numpy as np
import pytest

from crsbench.results import significance as sig
from crsbench.results.compare import compare
from crsbench.results.outcomes import GenOutcomes, Outcomes, RecOutcomes, read_outcomes, write_outcomes
from crsbench.results.row_tests import add_confidence_intervals, add_significance
from crsbench.results.store import ResultStore


def test_exact_permutation_test_by_hand():
    # differences (1, 1, 1): of the 8 sign assignments only +++ and --- reach |sum| = 3
    assert sig.paired_permutation_test(np.ones(3), np.zeros(3)) == pytest.approx(2 / 8)
    # differences (2, 1, 0): |sum| >= 3 for ++x and --x, x either sign: 4 of 8
    assert sig.paired_permutation_test(np.array([2, 1, 0]), np.zeros(3)) == pytest.approx(4 / 8)
    # differences (3, -1): sums 2, 4, -4, -2 -> |sum| >= 2 always
    assert sig.paired_permutation_test(np.array([3, 0]), np.array([0, 1])) == 1.0
    assert sig.paired_permutation_test(np.ones(5), np.ones(5)) == 1.0
    assert math.isnan(sig.paired_permutation_test(np.zeros(0), np.zeros(0)))


def test_sampled_permutation_test_agrees_with_the_exact_one():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=12), rng.normal(size=12) + 0.4
    exact = sig.paired_permutation_test(a, b, resamples=2 ** 12)
    sampled = sig.paired_permutation_test(np.tile(a, 1), np.tile(b, 1), resamples=2 ** 12 - 1, seed=3)
    assert sampled == pytest.approx(exact, abs=0.02)
    # a large, consistent difference over 2,000 instances: the smallest p the resamples allow
    many = sig.paired_permutation_test(np.full(2000, 0.6), np.full(2000, 0.4) + rng.normal(0, 0.01, 2000),
                                       resamples=999)
    assert many == pytest.approx(1 / 1000)


def test_welch_by_hand():
    a, b = [1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 6.0, 8.0, 10.0]
    va, vb = np.var(a, ddof=1) / 4, np.var(b, ddof=1) / 5          # 1.6667/4, 10/5
    t = (np.mean(a) - np.mean(b)) / math.sqrt(va + vb)             # -3.5 / 1.5546 = -2.2514
    df = (va + vb) ** 2 / (va ** 2 / 3 + vb ** 2 / 4)              # 5.521
    from scipy.stats import t as student
    assert t == pytest.approx(-2.2514, abs=1e-4) and df == pytest.approx(5.521, abs=1e-3)
    assert sig.welch_test(a, b) == pytest.approx(2 * student.sf(abs(t), df))
    assert math.isnan(sig.welch_test([1.0], [1.0, 2.0]))
    assert math.isnan(sig.welch_test([1.0, 1.0], [2.0, 2.0]))      # no seed variance on either side
    assert sig.welch_test([1.0, 1.0, 1.0], [2.0, 2.1, 1.9]) < 0.05      # one deterministic side: testable
    with warnings.catch_warnings():      # ... and quiet: scipy's "precision loss" warning for popularity's
        warnings.simplefilter("error")   # three equal recalls is not printed under the table
        assert sig.welch_test([0.1436] * 3, [0.33, 0.34, 0.335]) < 0.05


def test_corpus_statistics_randomisation_and_interval():
    responses = [["a", "b", "c"], ["a", "b"], ["x", "y", "z"], []]
    dist2, ratio2 = sig.distinct_statistics([responses], 2)[0], sig.distinct_statistics([responses], 2, True)[0]
    # bigrams: ab bc | ab | xy yz -> 4 distinct over 4 responses; 5 bigrams in all
    assert dist2.value() == pytest.approx(4 / 4) and ratio2.value() == pytest.approx(4 / 5)
    from crsbench.metrics.generation import distinct
    assert distinct(responses, 2) == (pytest.approx(4 / 4), pytest.approx(4 / 5))   # the metric's own
    # responses 0 and 2 only: ab bc xy yz over 2 responses
    assert dist2.value(np.array([[1.0, 0, 1, 0]]), 2)[0] == pytest.approx(4 / 2)
    ppl = sig.perplexity_statistic(np.array([2.0, 4.0]), np.array([1.0, 3.0]))
    assert ppl.value() == pytest.approx(math.exp(6 / 4))
    # exchanging identical systems changes nothing
    same_a, same_b = sig.distinct_statistics([responses, responses], 2)
    assert sig.paired_randomization_test([same_a], [same_b], resamples=200) == 1.0
    # 300 distinct replies against one repeated reply: every swap shrinks the gap
    diverse, dull = sig.distinct_statistics([[[f"w{i}", f"v{i}", "x"] for i in range(300)],
                                             [["the", "movie", "x"] for _ in range(300)]], 2)
    assert sig.paired_randomization_test([diverse], [dull], resamples=500) == pytest.approx(1 / 501)
    # the interval is centred on the corpus value (the with-replacement bootstrap is not: see docstring)
    assert sig.subsample_ci([diverse], resamples=500) == (pytest.approx(2.0), pytest.approx(2.0))
    mixed = sig.distinct_statistics([[[f"w{i % 50}", "x"] for i in range(300)]], 2)[0]   # 50 replies, 6x each
    low, high = sig.subsample_ci([mixed], resamples=500)
    assert mixed.value() == pytest.approx(50 / 300) and low < 50 / 300 < high


def _rec(ranks, views=("all",)):
    keys = np.array([f"c{i}|1|{i}" for i in range(len(ranks))])
    return RecOutcomes(keys, np.array(ranks), {v: np.ones(len(ranks), bool) for v in views})


def test_outcomes_round_trip(tmp_path):
    gen = GenOutcomes(np.array(["c1|1", "c2|3"]), {"bleu@2": np.array([0.1, 0.0]), "items": np.array([1.0, 0.0])},
                      [["i", "like", "@1"], []], [["i", "like", "@1", "it"], ["so"]])
    write_outcomes(tmp_path / "o.npz", Outcomes(_rec([1, 7, 60]), gen))
    back = read_outcomes(tmp_path / "o.npz")
    assert back.rec.ranks.tolist() == [1, 7, 60] and back.rec.keys.tolist()[1] == "c1|1|1"
    assert back.gen.responses == [["i", "like", "@1"], []]
    assert back.gen.release == [["i", "like", "@1", "it"], ["so"]]
    assert back.gen.scores["bleu@2"].tolist() == [0.1, 0.0]


def test_compare_baseline_marks_a_real_gap_and_not_noise(tmp_path):
    """Three rows on the same 400 instances: `good` ranks every target first, `noisy` differs from
    the baseline by chance only; the paired test marks `good` and not `noisy`."""
    rng = np.random.default_rng(0)
    store = ResultStore(tmp_path / "r.sqlite")
    base_ranks = rng.integers(1, 200, size=400)
    rows = {"base": lambda s: base_ranks, "good": lambda s: np.ones(400, dtype=int),
            "noisy": lambda s: np.where(rng.random(400) < 0.5, base_ranks, np.roll(base_ranks, 1))}
    for model, ranks_of in rows.items():
        for seed in (1, 2):
            run_dir = tmp_path / f"{model}{seed}"
            run_dir.mkdir()
            ranks = ranks_of(seed)
            write_outcomes(run_dir / "outcomes_test.npz", Outcomes(_rec(ranks)))
            store.record_run(run_id=f"{model}{seed}", model=model, dataset="redial", tag="", seed=seed, config={},
                             code_version="t", metrics={"test/all/recall@10": float(np.mean(ranks <= 10))},
                             timings={}, run_dir=str(run_dir), status="finished", recorded_at=f"t{seed}",
                             data_version="d", data_fingerprint="d")
    table = compare(store, "redial", data_version="d")
    add_significance(table, "base", resamples=2000)
    good, noisy = table.row("good").cells["all/recall@10"], table.row("noisy").cells["all/recall@10"]
    assert good.p_paired < 0.001 and noisy.p_paired > 0.05
    markdown = table.to_markdown()
    assert "1.0000 ± 0.0000*" in markdown and "differs from base" in markdown
    assert table.row("base").cells["all/recall@10"].p_paired is None
    csv_text = table.to_csv()
    assert "all/recall@10 p_paired" in csv_text.splitlines()[0]


def test_compare_baseline_on_generation_outcomes_with_intervals(tmp_path):
    store = ResultStore(tmp_path / "r.sqlite")
    keys = np.array([f"c{i}|1" for i in range(200)])
    replies = {"dull": [["i", "like", "it"]] * 200, "varied": [[f"w{i}", f"v{i}", "x"] for i in range(200)]}
    for model, responses in replies.items():
        run_dir = tmp_path / model
        run_dir.mkdir()
        scores = {"bleu@2": np.full(200, 0.1), "items": np.zeros(200), "nll": np.full(200, 3.0),
                  "tokens": np.full(200, 4.0)}
        write_outcomes(run_dir / "outcomes_test.npz", Outcomes(gen=GenOutcomes(keys, scores, responses)))
        dist = sig.distinct_statistics([responses], 2)[0].value()
        store.record_run(run_id=model, model=model, dataset="redial", tag="", seed=1, config={}, code_version="t",
                         metrics={"test/gen/dist@2": dist, "test/gen/bleu@2": 0.1, "test/gen/ppl": math.exp(0.75)},
                         timings={}, run_dir=str(run_dir), status="finished", recorded_at="t",
                         data_version="d", data_fingerprint="d")
    table = compare(store, "redial", data_version="d")
    add_significance(table, "dull", resamples=500)
    add_confidence_intervals(table, resamples=500, seed=0)
    varied = table.row("varied").cells
    assert varied["gen/dist@2"].p_paired == pytest.approx(1 / 501)
    assert varied["gen/bleu@2"].p_paired == 1.0 and varied["gen/ppl"].p_paired == 1.0
    low, high = varied["gen/dist@2"].ci
    assert varied["gen/dist@2"].mean == pytest.approx(2.0) and low <= 2.0 <= high and high - low < 0.5
    assert varied["gen/bleu@2"].ci == (pytest.approx(0.1), pytest.approx(0.1))   # a constant mean
    assert table.row("dull").cells["gen/dist@2"].ci == (pytest.approx(2 / 200), pytest.approx(2 / 200))


def test_a_one_seed_row_is_paired_with_the_baselines_run_of_the_same_seed(tmp_path):
    """The baseline has seeds 1-3, the row only seed 2, which ranks exactly as the baseline's seed 2
    does: paired seed with seed there is nothing to find (p = 1). Pooled over the baseline's seeds,
    its seeds 1 and 3 (far worse) would make the row look better. The corpus test pairs by seed too,
    and the table says which seeds the paired tests used."""
    rng = np.random.default_rng(3)
    store = ResultStore(tmp_path / "r.sqlite")
    same = rng.integers(1, 60, size=300)
    keys = np.array([f"c{i}|1" for i in range(300)])
    replies = {1: [["i", "like", "it"]] * 300, 2: [[f"w{i}", f"v{i}"] for i in range(300)],
               3: [["so", "good"]] * 300}
    runs = [("base", s, np.where(s == 2, same, same + 100), replies[s]) for s in (1, 2, 3)]
    runs.append(("row", 2, same, replies[2]))
    for model, seed, ranks, responses in runs:
        run_dir = tmp_path / f"{model}{seed}"
        run_dir.mkdir()
        scores = {"bleu@2": np.zeros(300), "items": np.zeros(300), "nll": np.full(300, 3.0),
                  "tokens": np.full(300, 4.0)}
        write_outcomes(run_dir / "outcomes_test.npz", Outcomes(_rec(ranks), GenOutcomes(keys, scores, responses)))
        dist = sig.distinct_statistics([responses], 2)[0].value()
        store.record_run(run_id=f"{model}{seed}", model=model, dataset="redial", tag="", seed=seed, config={},
                         code_version="t", metrics={"test/all/recall@10": float(np.mean(ranks <= 10)),
                                                    "test/gen/dist@2": dist},
                         timings={}, run_dir=str(run_dir), status="finished", recorded_at=f"t{seed}",
                         data_version="d", data_fingerprint="d")
    table = compare(store, "redial", data_version="d")
    add_significance(table, "base", resamples=500)
    cells = table.row("row").cells
    assert cells["all/recall@10"].paired_seeds == [2] and cells["all/recall@10"].p_paired == 1.0
    assert cells["gen/dist@2"].p_paired == 1.0
    assert cells["gen/dist@2"].mean > table.row("base").cells["gen/dist@2"].mean    # the unpaired means differ
    assert "row: paired tests (*) on seed(s) 2 only, the seeds it shares with base." in table.notes
