"""The card's figures, as PNG files beside it: the validation curve of the run and, where an alpha sweep exists,
the accuracy / coverage trade-off.

matplotlib draws them and is optional (`pip install 'btsr[plots]'`): without it a card is still written, and says
in its body which figures were not drawn and why (:func:`missing_plots_note`), so nothing is left out silently.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

__all__ = [
    "CURVE_FILE",
    "TRADEOFF_FILE",
    "PLOTS_INSTALL",
    "can_plot",
    "missing_plots_note",
    "validation_curve",
    "curve_from_log_history",
    "draw_validation_curve",
    "draw_tradeoff",
]

CURVE_FILE = "validation_curve.png"
TRADEOFF_FILE = "alpha_tradeoff.png"
PLOTS_INSTALL = "pip install 'btsr[plots]'"
# PNG metadata without the library's version: the same figures give the same bytes on every machine.
_METADATA = {"Software": None}


def can_plot() -> bool:
    """Whether matplotlib is installed (the figures need it; nothing else does)."""
    return importlib.util.find_spec("matplotlib") is not None


def missing_plots_note(names: list[str]) -> str:
    """The card's sentence for figures that were not drawn."""
    return f"Figures not drawn ({', '.join(names)}): matplotlib is not installed (`{PLOTS_INSTALL}`)."


def curve_from_log_history(log_history: list[dict]) -> list[list[float]]:
    """`[epoch, validation NDCG@10]` of each epoch's evaluation in a Trainer's `log_history`, a resumed run's earlier
    sessions included. The first entry of an epoch only: the selected model's evaluation after training is logged
    at the last epoch too, and is not a point of the curve."""
    curve, seen = [], set()
    for entry in log_history:
        if "eval_ndcg@10" in entry and "epoch" in entry and entry["epoch"] not in seen:
            seen.add(entry["epoch"])
            curve.append([float(entry["epoch"]), float(entry["eval_ndcg@10"])])
    return curve


def validation_curve(folder: Path, results: dict) -> list[list[float]]:
    """`(epoch, validation NDCG@10)` pairs of a run: its `all_results.json` `validation_curve`, or for a folder
    written before that key existed, the newest checkpoint's `trainer_state.json` log (empty when neither exists)."""
    if results.get("validation_curve"):
        return [[float(e), float(v)] for e, v in results["validation_curve"]]
    states = sorted(
        Path(folder).glob("checkpoint-*/trainer_state.json"), key=lambda p: int(p.parent.name.split("-")[-1])
    )
    if not states:
        return []
    history = json.loads(states[-1].read_text(encoding="utf-8")).get("log_history", [])
    return curve_from_log_history(history)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    return plt


def draw_validation_curve(curve: list[list[float]], path: Path, best_epoch: float | None = None) -> Path:
    """Validation NDCG@10 by epoch, with the selected (best) epoch marked, written to `path`."""
    plt = _pyplot()
    epochs, values = zip(*curve)
    fig, axis = plt.subplots(figsize=(6, 3.2), dpi=100)
    axis.plot(epochs, values, color="#1f77b4", linewidth=1.5)
    if best_epoch is not None:
        axis.axvline(best_epoch, color="#888888", linestyle="--", linewidth=1)
        axis.annotate(
            f"selected: epoch {best_epoch:g}",
            (best_epoch, min(values)),
            xytext=(4, 4),
            textcoords="offset points",
            fontsize=8,
            color="#555555",
        )
    axis.set_xlabel("epoch")
    axis.set_ylabel("validation NDCG@10")
    axis.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, metadata=_METADATA)
    plt.close(fig)
    return Path(path)


def draw_tradeoff(points: list[dict], path: Path, marked_alpha: float | None = None) -> Path:
    """Test NDCG@10 against Coverage@10 over an alpha sweep, each point labelled with its alpha, written to `path`.

    `points`: dicts with `alpha`, `ndcg@10` and `coverage@10` (one per alpha, e.g. means over seeds).
    """
    plt = _pyplot()
    points = sorted(points, key=lambda p: p["alpha"])
    fig, axis = plt.subplots(figsize=(5, 3.6), dpi=100)
    coverage = [p["coverage@10"] for p in points]
    ndcg = [p["ndcg@10"] for p in points]
    axis.plot(coverage, ndcg, color="#1f77b4", marker="o", linewidth=1)
    for p in points:
        bold = marked_alpha is not None and abs(p["alpha"] - marked_alpha) < 1e-12
        axis.annotate(
            f"α={p['alpha']:g}",
            (p["coverage@10"], p["ndcg@10"]),
            xytext=(4, 4),
            textcoords="offset points",
            fontsize=8,
            fontweight="bold" if bold else "normal",
        )
    axis.margins(x=0.15, y=0.1)  # room for the labels of the outermost points
    axis.set_xlabel("test Coverage@10")
    axis.set_ylabel("test NDCG@10")
    axis.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, metadata=_METADATA)
    plt.close(fig)
    return Path(path)
