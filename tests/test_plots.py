import numpy as np
import pandas as pd
from PIL import Image

from poisongate.poisoning_gate import histogram
from poisongate.reports import plots


def saved_png(fig, tmp_path, name):
    path = plots.save(fig, tmp_path / name)
    with Image.open(path) as img:
        assert img.format == "PNG" and img.width > 200 and img.height > 200
    return path


def test_every_plot_renders_to_a_png(tmp_path):
    rng = np.random.default_rng(0)
    saved_png(plots.loss_curve(pd.DataFrame({"epoch": range(5), "loss": [2.0, 1.0, 0.5, 0.3, 0.2]})), tmp_path,
              "loss.png")
    thresholds = {"robust_zscore": 2.5, "knn_label": 0.8}
    scores = {"robust_zscore": rng.normal(size=200), "knn_label": rng.uniform(size=200)}
    histograms = {k: histogram(s, thresholds[k]) for k, s in scores.items()}
    saved_png(plots.score_histograms(histograms, thresholds), tmp_path, "scores.png")
    confusion = [[10, 1, 0], [0, 9, 2], [1, 0, 12]]
    saved_png(plots.confusion_pair(confusion, confusion, [0, 1, 2]), tmp_path, "pair.png")
    saved_png(plots.confusion_pair(confusion, None, [0, 1, 2]), tmp_path, "first.png")  # no champion yet
    X = rng.normal(size=(100, 6))
    saved_png(plots.batch_projection(X, X[:40], np.arange(40) < 5), tmp_path, "pca.png")
    saved_png(plots.tsne_view(X, X[:40], np.arange(40) < 5, np.arange(40) >= 37, max_rows=120), tmp_path, "tsne.png")
    harm = {"tonight": histogram(rng.normal(size=40), 2.0), "trusted": histogram(rng.normal(size=100), 2.0)}
    saved_png(plots.influence_histogram(harm, 2.0), tmp_path, "influence.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["first.png", "influence.png", "loss.png", "pair.png",
                                                          "pca.png", "scores.png", "tsne.png"]


def test_score_histogram_counts_every_finite_row_and_spans_the_threshold():
    scores = np.array([0.1, 0.2, 0.2, 0.9, np.inf, np.nan])
    h = histogram(scores, threshold=3.0, bins=10)
    assert sum(h["counts"]) == 4  # non-finite scores are not binned
    assert h["edges"][0] == 0.1 and h["edges"][-1] == 3.0
    assert histogram(np.array([]), threshold=np.inf) == {"edges": [], "counts": []}


def test_batch_projection_draws_a_sample_of_a_large_batch_with_no_quarantined_or_no_accepted_rows(tmp_path):
    rng = np.random.default_rng(0)
    X, batch = rng.normal(size=(500, 6)), rng.normal(size=(50_000, 6))
    saved_png(plots.batch_projection(X, batch, np.zeros(len(batch), bool)), tmp_path, "none_quarantined.png")
    saved_png(plots.batch_projection(X, batch, np.ones(len(batch), bool)), tmp_path, "all_quarantined.png")
