"""HR@K, NDCG@K and MRR@K of next-item ranking, as an `evaluate` metric.

A thin wrapper: the math lives in `modeling_btsr.metrics` (evaluate is in maintenance mode, and the evaluation
loop of BT-SR computes the same numbers without it). `evaluate` copies this file into its module cache, so it
imports the installed package, not a relative module. Load it offline with
`evaluate.load("<path to>/modeling_btsr/metrics_hub/ranking")` and `HF_EVALUATE_OFFLINE=1`.
"""

import datasets
import evaluate
import torch
from modeling_btsr.metrics import hit_rate_at_k
from modeling_btsr.metrics import mrr_at_k
from modeling_btsr.metrics import ndcg_at_k

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
        ranks = torch.as_tensor(ranks, dtype=torch.long)
        results = {}
        for k in ks:
            results[f"hr@{k}"] = hit_rate_at_k(ranks, k).double().mean().item()
            results[f"ndcg@{k}"] = ndcg_at_k(ranks, k).double().mean().item()
            results[f"mrr@{k}"] = mrr_at_k(ranks, k).double().mean().item()
        return results
