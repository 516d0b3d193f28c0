"""Inference Endpoints custom handler for a BT-SR model folder (`handler.py` at the repository's root).

Self-contained: imports only torch and transformers, and loads the folder's own code (`trust_remote_code=True`), so
an endpoint needs no extra package. `save_pretrained` copies this file into every saved folder.

Request::

    {"inputs": [[1193, 661, 914], [3408]], "parameters": {"k": 10}}

(`inputs`: one history per user, raw item ids of the training data, oldest first; a single flat history is taken as
one user. `parameters`, all optional: `k` (or `top_k`, default 10), `exclude_seen` (default true), `unknown_items`
(`"error"`, the default, or `"skip"`).)

Response: one list per user of `{"item_id": raw_id, "score": float}`, best first: `model.recommend`'s lists.
"""

import torch
from transformers import AutoModel

_PARAMETERS = ("k", "top_k", "exclude_seen", "unknown_items", "batch_size")


class EndpointHandler:
    """`EndpointHandler(path)(data)`: the interface Inference Endpoints calls."""

    def __init__(self, path: str = ""):
        self.model = AutoModel.from_pretrained(path or ".", trust_remote_code=True)
        if torch.cuda.is_available():
            self.model.to("cuda")
        self.model.eval()

    def __call__(self, data: dict) -> list:
        if not isinstance(data, dict) or "inputs" not in data:
            raise ValueError('the request must be a JSON object with "inputs": a list of item-id histories')
        histories = data["inputs"]
        parameters = data.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise ValueError('"parameters" must be a JSON object, e.g. {"k": 10}')
        unknown = sorted(set(parameters) - set(_PARAMETERS))
        if unknown:
            raise ValueError(f"unknown parameter(s) {', '.join(unknown)}; known: {', '.join(_PARAMETERS)}")
        if "k" in parameters and "top_k" in parameters:
            raise ValueError('give "k" or "top_k", not both')
        if not isinstance(histories, list):
            kind = type(histories).__name__
            raise ValueError(f'"inputs" must be a list of histories (lists of item ids), got {kind}')
        single = bool(histories) and not any(isinstance(item, list) for item in histories)
        ids, scores = self.model.recommend(
            [histories] if single else histories,
            k=parameters.get("k", parameters.get("top_k", 10)),
            exclude_seen=parameters.get("exclude_seen", True),
            unknown_items=parameters.get("unknown_items", "error"),
            batch_size=parameters.get("batch_size", 256),
            return_scores=True,
        )
        return [
            [{"item_id": item, "score": float(score)} for item, score in zip(user_ids, user_scores)]
            for user_ids, user_scores in zip(ids, scores)
        ]
