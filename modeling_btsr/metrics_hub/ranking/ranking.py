"""HR@K, NDCG@K and MRR@K of next-item ranking, as an `evaluate` metric.

Self-contained (torch, datasets and evaluate only), so the folder works as a Hub metric Space and loads where the
`btsr` package is not installed: `evaluate.load("<path to>/metrics_hub/ranking")` (offline with
`HF_EVALUATE_OFFLINE=1`). The same formulas as `modeling_btsr.metrics`, which the tests compare it with. One import a
line: evaluate misreads `import a, b`.
"""

import datasets
import evaluate
import torch

_DESCRIPTION = """
Full-ranking next-item metrics from the 1-based rank of each user's single target item among all candidates:
HR@K = [rank <= K], NDCG@K = [rank <= K] / log2(rank + 1) (ideal DCG 1), MRR@K = [rank <= K] / rank, each
averaged over users. Ranks come from full ranking over the catalogue (no sampled negatives); use the
pessimistic tie rule (ties count against the target) so ties never inflate the metrics.
"""

_KWARGS_DESCRIPTION = """
Args:
    ranks (`list` of `int`): 1-based rank of each user's target; a rank larger than every K is a miss.
    ks (`list` of `int`, *optional*, defaults to `[1, 5, 10, 20, 50]`): cut-offs.
Returns:
    `dict` with `hr@K`, `ndcg@K` and `mrr@K` (floats) for every K.
Example:
    >>> ranking = evaluate.load("path/to/modeling_btsr/metrics_hub/ranking")  # doctest: +SKIP
    >>> ranking.compute(ranks=[1, 3, 11], ks=[10])  # doctest: +SKIP
    {'hr@10': 0.666..., 'ndcg@10': 0.5, 'mrr@10': 0.444...}
"""

_CITATION = """
@inproceedings{krichene2020sampled,
  title={On Sampled Metrics for Item Recommendation},
  author={Krichene, Walid and Rendle, Steffen},
  booktitle={KDD},
  year={2020}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Ranking(evaluate.Metric):
    """HR@K, NDCG@K and MRR@K from per-user target ranks."""

    def _info(self):
        return evaluate.MetricInfo(
            module_type="metric",
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"ranks": datasets.Value("int64")}),
            reference_urls=["https://doi.org/10.1145/3394486.3403226"],
        )

    def _compute(self, ranks, ks=(1, 5, 10, 20, 50)):
        ranks = torch.as_tensor(ranks, dtype=torch.float64)
        if len(ranks) and ranks.min() < 1:
            raise ValueError(f"ranks are 1-based: got {int(ranks.min())}")
        results = {}
        for k in ks:
            hit = ranks <= k
            results[f"hr@{k}"] = hit.double().mean().item()
            results[f"ndcg@{k}"] = torch.where(hit, 1.0 / torch.log2(ranks + 1.0), 0.0).mean().item()
            results[f"mrr@{k}"] = torch.where(hit, 1.0 / ranks, 0.0).mean().item()
        return results
