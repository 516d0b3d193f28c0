"""The BT-SR recommendation pipeline: top-k next items, with their scores, for item histories.

Self-contained: imports only transformers and its sibling files, because `save_pretrained` copies it to the model
folder (and the Hub), where `config.json`'s `custom_pipelines` names it. So, where this package is not installed::

    from transformers import pipeline

    recommender = pipeline(model="org/btsr-ml1m", trust_remote_code=True)
    recommender([[1, 2, 3], [48]], top_k=10)  # one list per user: [{"item_id": ..., "score": ...}, ...], best first

and with the package imported (it registers the task), without remote code::

    import modeling_btsr  # noqa: F401
    recommender = pipeline("sequential-recommendation", model="org/btsr-ml1m")

The lists are `model.recommend(histories, k=top_k, return_scores=True)`'s, item for item.
"""

from transformers import Pipeline

from .configuration_btsr import PIPELINE_TASK

__all__ = ["BTSRRecommendationPipeline", "PIPELINE_TASK"]

_DEFAULT_BATCH_SIZE = 256


def _is_single_history(inputs) -> bool:
    """Whether `inputs` is one history (a flat sequence of ids) rather than a list of histories."""
    if hasattr(inputs, "ndim") and not isinstance(inputs, (list, tuple)):  # numpy array or tensor
        return inputs.ndim == 1
    if not isinstance(inputs, (list, tuple)) or not inputs:
        return False
    return not any(isinstance(item, (list, tuple)) or getattr(item, "ndim", 0) >= 1 for item in inputs)


class BTSRRecommendationPipeline(Pipeline):
    """Top-k next-item recommendation with a BT-SR model (the `"sequential-recommendation"` task).

    Call it with one history (raw item ids of the training data, oldest first) or a list of them; it returns, for
    each, the `top_k` items as `{"item_id": raw_id, "score": float}` dicts, best first (one list for one history,
    a list of lists for several). The scores are the model's dot products; a user with no known item gets the most
    popular training items, scored by their training interaction counts.

    Parameters (at construction or per call):
        top_k (`int`, defaults to 10): list length.
        exclude_seen (`bool`, defaults to `True`): never recommend an item of the user's own history.
        unknown_items (`str`, defaults to `"error"`): `"error"` raises `KeyError` on an id the model does not know,
            `"skip"` drops such ids with a warning.
        batch_size (`int`, defaults to 256): users scored at once.
    """

    _load_processor = False
    _load_image_processor = False
    _load_video_processor = False
    _load_feature_extractor = False
    _load_tokenizer = False

    def _sanitize_parameters(self, top_k=None, exclude_seen=None, unknown_items=None, **unknown):
        if unknown:
            raise TypeError(
                f"unexpected parameter(s) for {PIPELINE_TASK}: {', '.join(sorted(unknown))} "
                "(known: top_k, exclude_seen, unknown_items, batch_size)"
            )
        forward = {}
        if top_k is not None:
            forward["k"] = top_k
        if exclude_seen is not None:
            forward["exclude_seen"] = exclude_seen
        if unknown_items is not None:
            forward["unknown_items"] = unknown_items
        return {}, forward, {}

    def __call__(self, histories, batch_size=None, **kwargs):
        """Recommendations for `histories`: one history or a list of them (lists, tuples, arrays or tensors)."""
        _, forward, _ = self._sanitize_parameters(**kwargs)
        forward = {**self._forward_params, **forward}
        forward["batch_size"] = batch_size or self._batch_size or _DEFAULT_BATCH_SIZE
        single = _is_single_history(histories)
        inputs = self.preprocess([histories] if single else histories)
        outputs = self.forward(inputs, **forward)
        lists = self.postprocess(outputs)
        return lists[0] if single else lists

    def preprocess(self, histories):
        return {"histories": histories}

    def _forward(self, model_inputs, k=10, exclude_seen=True, unknown_items="error", batch_size=_DEFAULT_BATCH_SIZE):
        ids, scores = self.model.recommend(
            model_inputs["histories"],
            k=k,
            exclude_seen=exclude_seen,
            unknown_items=unknown_items,
            batch_size=batch_size,
            return_scores=True,
        )
        return {"ids": ids, "scores": scores}

    def postprocess(self, model_outputs):
        return [
            [{"item_id": item, "score": float(score)} for item, score in zip(ids, scores)]
            for ids, scores in zip(model_outputs["ids"], model_outputs["scores"])
        ]
