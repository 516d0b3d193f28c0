"""Stateless same-target partner draws and the torch dataset that serves (view A, view B) pairs.

View B of row ``r`` (BT-SR section 2) is the ``input_ids`` of another row with the same target, drawn uniformly among
the *other* members of ``r``'s group, re-drawn every epoch; a row alone in its group is its own partner (the two
views then differ only by dropout).

The draw is a pure function of ``(seed, epoch, row)``: a splitmix64 hash of the three values, computed in numpy
``uint64`` arithmetic (wrapping modulo 2**64)::

    u = splitmix64(splitmix64(splitmix64(seed) ^ epoch) ^ row)
    j = u mod (size - 1);  j += (j >= rank)          # skip the row's own slot in its group
    partner = partner_rows[start + j]

So it does not depend on how many processes or dataloader workers there are, on the batch order, or on resuming
from a checkpoint. The bias of ``u mod k`` for ``k < 2**32`` is below ``2**-32``.

An epoch's partners are a :class:`datasets.Dataset` (:func:`epoch_pairs`): a batched ``Dataset.map`` over the training
examples whose fingerprint is that of the examples, the seed and the epoch, cached beside the examples' own cache
file. :class:`PairedTrainDataset` reads it at each epoch's start, in every process and data-loader worker, and serves
batches as row indices (``__getitems__``) that :class:`~data_processing.collator.SequenceCollator` gathers from the
examples' Arrow columns (:class:`~data_processing.table.SequenceTable`).
"""

from __future__ import annotations

import glob
import hashlib
import os
from typing import Any

import datasets
import numpy as np
import torch

from .augment import NEGATIVE_VIEW, cl4srec_view, explained_view, operator_pairs, view_keys, view_rng
from .keys import row_keys, splitmix64
from .sequences import TrainExamples, partner_index
from .table import SequenceTable
from .vocab import IGNORE_INDEX

__all__ = [
    "draw_partners",
    "epoch_pairs",
    "masked_item_draws",
    "epoch_pairs_fingerprint",
    "PairedTrainDataset",
    "PREDICTION_SPANS",
    "VIEW_MAKERS",
    "VIEW_SPANS",
]

# Bump when the draw or the columns change: it is part of every epoch's fingerprint, so old cache files are not reused.
_PAIRS_VERSION = "btsr-epoch-pairs-v1"
_GROUP_COLUMNS = ["partner_group_start", "partner_group_size", "partner_rank"]


def draw_partners(
    seed: int,
    epoch: int,
    rows: np.ndarray,
    group_start: np.ndarray,
    group_size: np.ndarray,
    rank: np.ndarray,
    partner_rows: np.ndarray,
) -> np.ndarray:
    """Draw one same-target partner for each row in ``rows``.

    Args:
        seed, epoch: the draw's key together with the row (``epoch`` is cast to int).
        rows: int ``(n,)``, the anchor rows, in any order and with repeats allowed.
        group_start, group_size, rank: int ``(N,)``, per-row partner index (see
            :func:`data_processing.sequences.partner_index`).
        partner_rows: int ``(N,)``, all rows sorted by ``(target, row)``.

    Returns:
        int64 ``(n,)``: ``partner[k]`` is uniform over the other rows of ``rows[k]``'s group, or ``rows[k]`` itself
        when the group has one member. Element ``k`` depends only on ``(seed, epoch, rows[k])``.
    """
    rows = np.asarray(rows, dtype=np.int64).reshape(-1)
    return _draw_aligned(
        seed,
        epoch,
        rows,
        np.asarray(group_start, dtype=np.int64)[rows],
        np.asarray(group_size, dtype=np.int64)[rows],
        np.asarray(rank, dtype=np.int64)[rows],
        partner_rows,
    )


def _draw_aligned(seed, epoch, rows, start, size, own, partner_rows) -> np.ndarray:
    """:func:`draw_partners` with the group columns already those of `rows` (as a batch of the examples holds)."""
    u = row_keys(seed, epoch, rows)
    others = np.maximum(size - 1, 1).astype(np.uint64)  # max(.,1): groups of one are overwritten below
    j = (u % others).astype(np.int64)
    j += j >= own
    return np.asarray(partner_rows, dtype=np.int64)[start + np.where(size > 1, j, own)]


def epoch_pairs_fingerprint(examples: TrainExamples, *, epoch: int, seed: int) -> str:
    """The fingerprint of :func:`epoch_pairs`: a hash of the examples' fingerprint, the seed and the epoch."""
    if not examples.fingerprint:
        raise ValueError("epoch_pairs needs examples built by build_train_dataset (they carry a fingerprint)")
    key = f"{_PAIRS_VERSION}|{examples.fingerprint}|{int(seed)}|{int(epoch)}"
    return hashlib.blake2b(key.encode(), digest_size=16).hexdigest()


def _pairs_cache_file(examples: TrainExamples, seed: int, epoch: int | str) -> str | None:
    """Where an epoch's pairs are cached: beside the examples' cache file (None for in-memory examples)."""
    files = examples.dataset.cache_files
    if not files:
        return None
    folder = os.path.dirname(files[0]["filename"])
    return os.path.join(folder, f"btsr-pairs-{examples.fingerprint}-s{int(seed)}-e{epoch}.arrow")


def epoch_pairs(examples: TrainExamples, *, epoch: int, seed: int) -> datasets.Dataset:
    """Every training row's same-target partner in `epoch`: a batched ``Dataset.map`` over the examples.

    Args:
        examples: the :class:`TrainExamples` of :func:`~data_processing.build_train_dataset`.
        epoch: the epoch (an int; the draw differs from epoch to epoch).
        seed: the draw's seed.

    Returns:
        A :class:`datasets.Dataset` with int64 columns ``row`` (``0..N-1``) and ``partner_row`` (:func:`draw_partners`
        of the row), whose fingerprint is :func:`epoch_pairs_fingerprint`. For examples cached on disk it is cached
        beside them (``btsr-pairs-<examples>-s<seed>-e<epoch>.arrow``, loaded again by a later call, by any process)
        and the files of earlier epochs of the same examples and seed are removed.
    """
    fingerprint = epoch_pairs_fingerprint(examples, epoch=epoch, seed=seed)
    partner_rows = np.asarray(examples.partner_rows, dtype=np.int64)
    columns = examples.dataset.with_format("numpy")
    start, size, own = (np.asarray(columns[name], dtype=np.int64) for name in _GROUP_COLUMNS)

    def draw(rows: list) -> dict:
        rows = np.asarray(rows, dtype=np.int64)
        return {"partner_row": _draw_aligned(seed, int(epoch), rows, start[rows], size[rows], own[rows], partner_rows)}

    cache_file = _pairs_cache_file(examples, seed, int(epoch))
    kwargs = {"cache_file_name": cache_file, "load_from_cache_file": True} if cache_file else {}
    pairs = examples.dataset.select_columns(["row"]).map(
        draw,
        input_columns=["row"],
        batched=True,
        batch_size=100_000,
        features=datasets.Features({"row": datasets.Value("int64"), "partner_row": datasets.Value("int64")}),
        new_fingerprint=fingerprint,  # explicit: `datasets` would otherwise hash the closure and its arrays
        desc=None,
        **kwargs,
    )
    if cache_file:
        for stale in glob.glob(_pairs_cache_file(examples, seed, "*")):
            stale_epoch = stale.rsplit("-e", 1)[-1].removesuffix(".arrow")
            if stale_epoch.isdigit() and int(stale_epoch) < int(epoch):
                try:
                    os.remove(stale)
                except FileNotFoundError:  # another process removed it first
                    pass
    return pairs


VIEW_MAKERS = ("same_target", "dropout", "same_target+dropout", "cl4srec", "ec4srec")
"""How the two views of the self-supervised loss are made (the model config's ``view_maker``)."""

_DRAWS_PARTNERS = ("same_target", "same_target+dropout")

VIEW_SPANS = ("sequence", "random_prefix", "random_prefix_in_place")
"""What the views of the self-supervised loss encode (the model config's ``ssl_view_span``)."""

PREDICTION_SPANS = ("sequence", "random_prefix")
"""What each training example of the prediction loss is (the model config's ``prediction_span``)."""

_PREFIX_CUT_VIEW = 2  # augment.view_keys stream of the prefix cut (views 0 and 1 are CL4SRec's augmentations)
_MASKED_ITEM_VIEW = 4  # the stream of BERT4Rec's masked items (3 is augment.OPERATOR_VIEW, 5 augment.NEGATIVE_VIEW)


def masked_item_draws(seed: int, epoch: int, rows: np.ndarray, positions: np.ndarray, probability: float) -> np.ndarray:
    """Whether position ``positions[k]`` of row ``rows[k]`` is masked in ``epoch`` (BERT4Rec's masked items): bool
    ``(n,)``, each ``True`` with probability ``probability``, independently, a pure function of ``(seed, epoch, row,
    position)``::

        u = splitmix64(view_key(seed, epoch, row, 4) ^ position);  masked = u < probability * 2**64

    >>> rows, positions = np.zeros(100_000, dtype=np.int64), np.arange(100_000)
    >>> drawn = masked_item_draws(0, 1, rows, positions, 0.2)
    >>> round(float(drawn.mean()), 2), bool((drawn == masked_item_draws(0, 1, rows, positions, 0.2)).all())
    (0.2, True)
    """
    keys = view_keys(seed, epoch, np.asarray(rows, dtype=np.int64), _MASKED_ITEM_VIEW)
    u = splitmix64(keys ^ np.asarray(positions, dtype=np.int64).astype(np.uint64))
    return u < np.uint64(min(int(float(probability) * 2.0**64), 2**64 - 1))


class PairedTrainDataset(torch.utils.data.Dataset):
    """Map-style dataset over :class:`~data_processing.sequences.TrainExamples` for the Trainer.

    ``dataset[i]`` is ``{"input_ids": [...], "labels": [...]}`` (always the unaugmented sequence: the prediction
    loss reads it) and, with pairs, the views of the self-supervised loss. The model compares view A =
    ``view_input_ids`` when present, else ``input_ids`` itself (the prediction pass), with view B =
    ``pair_input_ids``:

    - ``same_target`` (BT-SR): ``pair_input_ids`` = row ``i``'s same-target partner this epoch; view A is the
      prediction pass.
    - ``dropout`` (DuoRec, unsupervised): ``pair_input_ids`` = ``input_ids`` again (the views differ by dropout);
      no random number is drawn here.
    - ``same_target+dropout`` (DuoRec): ``view_input_ids`` = ``input_ids`` again (a second dropout pass) and
      ``pair_input_ids`` = the same-target partner.
    - ``cl4srec``: ``view_input_ids`` and ``pair_input_ids`` = two independent crop / mask / reorder views of
      ``input_ids`` (views 0 and 1).
    - ``ec4srec``: once importance scores are set (:meth:`set_importance`), ``view_input_ids`` and
      ``pair_input_ids`` = two positive explanation-guided views of ``input_ids`` with two different operators, and
      ``negative_input_ids`` = its negative view (:func:`~data_processing.augment.explained_view`); until then
      no view is served (EC4SRec trains on next-item prediction alone before its first explanation).

    With ``view_span="random_prefix"`` the views encode a prefix of the row instead of the whole sequence: the
    input up to a position ``j`` drawn uniformly among the row's labelled positions each epoch, whose next item is
    ``labels[j]``. Both views are then passes of their own (``view_input_ids`` is always set): ``cl4srec`` augments
    the prefix; ``dropout`` serves the prefix twice; ``same_target`` and ``same_target+dropout`` (then alike) pair
    the prefix with another row's prefix that has the same next item, drawn uniformly among all the labelled
    positions of the training set with that next item (the prefix itself when it is alone). This is how the
    RecBole code of CL4SRec and DuoRec weighs its InfoNCE term: each prefix there is a training sample with one CE
    term and one InfoNCE term; here CE covers every position of the row and InfoNCE one random prefix of it.
    A prefix re-encoded on its own ends at the newest position embedding, where the ranked state sits;
    ``view_span="random_prefix_in_place"`` also serves ``view_position_offsets`` and ``pair_position_offsets``
    (the number of items after each view's prefix in its own row) so that the model encodes every prefix at the
    positions it has in its sequence, as RecBole's right-padded samples are.

    With ``prediction_span="random_prefix"`` the prediction loss reads that prefix too: ``input_ids`` is the row's
    input up to ``j`` and ``labels`` is ``-100`` but at ``j`` (``labels[j]``), so each row is one sample with one
    prediction target an epoch, drawn uniformly among its labelled positions, and the views (``view_span`` must
    then be ``"random_prefix"``) encode the same prefix: RecBole's samples for CL4SRec and DuoRec, one CE term and
    one InfoNCE term each (RecBole makes every prefix a sample each epoch; here a row gives one per epoch). Without
    pairs (SASRec) only the prefix and its target are served.

    Partners and augmentations are stateless functions of ``(seed, epoch, row)`` (and the view): see
    :func:`draw_partners` and :mod:`data_processing.augment`. ``BTSRTrainer`` calls :meth:`set_epoch` at each
    epoch's start (a callback); the epoch is held in shared memory, so data-loader workers, persistent ones included,
    serve the new epoch's draws; the same-target partners of a whole-sequence view are the epoch's
    :func:`epoch_pairs`. The sequences stay in the examples' Arrow buffers (:class:`SequenceTable`, ``table``):
    a training batch (:meth:`__getitems__`) is row indices, gathered by ``SequenceCollator(table=dataset.table)``.

    Args:
        examples: the training examples.
        seed: the partner draw's (and the augmentations') seed.
        with_pairs: ``False`` for ``alpha = 0`` (plain SASRec): no partner columns are read, no view is made and no
            random number is drawn.
        view_maker: one of :data:`VIEW_MAKERS` (default ``"same_target"``, BT-SR). Only the ``same_target`` view
            makers read the partner columns and draw partners; ``"dropout"`` draws nothing.
        crop_ratio, mask_ratio, reorder_ratio: CL4SRec's ``eta``, ``gamma``, ``beta`` (``view_maker="cl4srec"``).
        mask_token: the mask item index (the model's ``num_items + 1``); needed when ``mask_ratio > 0`` and
            with ``view_maker="ec4srec"``.
        positive_ratio, negative_ratio: EC4SRec's ``pos_r`` and ``neg_r`` (``view_maker="ec4srec"``).
        view_span: one of :data:`VIEW_SPANS`: ``"sequence"`` (default; the views end where the row ends, at the
            state that is ranked), ``"random_prefix"`` or ``"random_prefix_in_place"`` (see above).
        prediction_span: one of :data:`PREDICTION_SPANS`: ``"sequence"`` (default; every labelled position of the
            row is a target) or ``"random_prefix"`` (one random prefix and its next item per row and epoch).
        mlm_probability: BERT4Rec's masked-item training (the model's ``backbone="bert4rec"``): each row serves its
            whole sequence ``s_1..s_n`` (its last ``max_len`` items) as ``input_ids``, each position replaced by
            ``mask_token`` with this probability (:func:`masked_item_draws`, redrawn each epoch), and ``labels`` the
            item at each masked position, -100 elsewhere. With pairs (``view_maker="same_target"`` only), view A
            is the row's history ``input_ids`` unmasked (``view_input_ids``) and view B the same-target partner's
            (``pair_input_ids``): the model encodes both with the mask token appended. ``None`` (default): no
            masking.
        max_len: the model's ``max_position_embeddings``; needed with ``mlm_probability`` (a row's whole sequence
            is one item longer than its ``input_ids``).
    """

    def __init__(
        self,
        examples: TrainExamples,
        seed: int,
        with_pairs: bool = True,
        view_maker: str = "same_target",
        crop_ratio: float = 0.6,
        mask_ratio: float = 0.3,
        reorder_ratio: float = 0.6,
        mask_token: int | None = None,
        view_span: str = "sequence",
        prediction_span: str = "sequence",
        mlm_probability: float | None = None,
        max_len: int | None = None,
        positive_ratio: float = 0.3,
        negative_ratio: float = 0.7,
    ):
        if view_span not in VIEW_SPANS:
            raise ValueError(f"view_span must be one of {', '.join(VIEW_SPANS)}, got {view_span!r}")
        if prediction_span not in PREDICTION_SPANS:
            raise ValueError(f"prediction_span must be one of {', '.join(PREDICTION_SPANS)}, got {prediction_span!r}")
        if with_pairs and prediction_span == "random_prefix" and view_span != "random_prefix":
            raise ValueError(
                f"prediction_span='random_prefix' needs view_span='random_prefix' (the views encode the sample's "
                f"prefix), got view_span={view_span!r}"
            )
        if view_maker not in VIEW_MAKERS:
            raise ValueError(f"view_maker must be one of {', '.join(VIEW_MAKERS)}, got {view_maker!r}")
        if mlm_probability is not None:
            if not 0 < mlm_probability < 1:
                raise ValueError(f"mlm_probability must be in (0, 1), got {mlm_probability}")
            if mask_token is None or max_len is None:
                raise ValueError("mlm_probability needs mask_token (the model's num_items + 1) and max_len")
            if prediction_span != "sequence" or view_span != "sequence":
                raise ValueError("mlm_probability (BERT4Rec) needs prediction_span and view_span 'sequence'")
            if with_pairs and view_maker != "same_target":
                raise ValueError(
                    f"mlm_probability (BERT4Rec) pairs same-target rows only, got view_maker={view_maker!r}"
                )
        if with_pairs and view_maker == "cl4srec" and mask_ratio > 0 and mask_token is None:
            raise ValueError("view_maker='cl4srec' with mask_ratio > 0 needs mask_token (the model's num_items + 1)")
        whole_sequences = prediction_span == view_span == "sequence"
        if with_pairs and view_maker == "ec4srec" and (mask_token is None or not whole_sequences):
            raise ValueError("view_maker='ec4srec' needs mask_token and prediction_span and view_span 'sequence'")
        self.seed = int(seed)
        self.with_pairs = bool(with_pairs)
        self.view_maker = view_maker
        self.crop_ratio = float(crop_ratio)
        self.mask_ratio = float(mask_ratio)
        self.reorder_ratio = float(reorder_ratio)
        self.mask_token = None if mask_token is None else int(mask_token)
        self.view_span = view_span
        self.prediction_span = prediction_span
        self.mlm_probability = None if mlm_probability is None else float(mlm_probability)
        self.positive_ratio, self.negative_ratio = float(positive_ratio), float(negative_ratio)
        self.max_len = None if max_len is None else int(max_len)
        # The epoch lives in shared memory: data-loader workers (persistent ones too) hold copies of this dataset,
        # and `set_epoch` in the main process must reach them. Each copy drops its per-epoch caches when it changes.
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        self._cache_epoch = 0
        self._draws_partners = self.with_pairs and view_maker in _DRAWS_PARTNERS
        self._prefixes = self.with_pairs and view_span in ("random_prefix", "random_prefix_in_place")
        self._in_place = self._prefixes and view_span == "random_prefix_in_place"
        self._prefix_samples = prediction_span == "random_prefix"
        self.examples = examples
        # The sequences as flat numpy arrays read out of Arrow once (no Python lists: workers share them unchanged).
        self.table = SequenceTable(examples.dataset, ["input_ids", "labels"])
        self._partners: np.ndarray | None = None
        self._view_keys: tuple[np.ndarray, np.ndarray] | None = None
        self._cuts: np.ndarray | None = None
        self._explains = self.with_pairs and view_maker == "ec4srec"
        if self._explains:  # in shared memory, like the epoch: workers serve the scores set in the main process
            self._input_offsets = self.table.offsets("input_ids")
            self._importance = torch.zeros(int(self._input_offsets[-1]), dtype=torch.float32).share_memory_()
            self._importance_set = torch.zeros((), dtype=torch.bool).share_memory_()
        if self._prefixes or self._prefix_samples:
            # Every labelled position of every row, flattened: position j of row r is flat index offsets[r] + j.
            self._label_lengths = self.table.lengths("labels")
            self._offsets = self.table.offsets("labels")
            if self._draws_partners:
                flat_labels = self.table.flat("labels")
                self._partner_rows, self._group_start, self._group_size, self._rank = partner_index(flat_labels)

    @property
    def epoch(self) -> int:
        """The epoch whose partners (and augmentations) ``__getitem__`` serves; the same in every worker."""
        current = int(self._epoch)
        if current != self._cache_epoch:  # set in another process (or here): this copy's caches are stale
            self._partners = self._view_keys = self._cuts = None
            self._cache_epoch = current
        return current

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose partners (and augmentations) ``__getitem__`` serves, in this process and in every
        data-loader worker (called by ``BTSRTrainer`` at each epoch's start, through a callback)."""
        self._epoch.fill_(int(epoch))

    def partners(self, epoch: int | None = None) -> np.ndarray:
        """All rows' partners for ``epoch`` (default: the current one), int64 ``(N,)``: rows, or with a prefix
        ``view_span`` flat positions (decoded by :meth:`row_and_position`)."""
        if not self.with_pairs:
            raise ValueError("this dataset was built with with_pairs=False: it has no partners")
        if not self._draws_partners:
            raise ValueError(f"view_maker={self.view_maker!r} draws no same-target partners")
        # One vectorised draw per epoch; identical to drawing row by row, since each draw is stateless.
        return self._for_epoch("_partners", self._draw, epoch)

    def _for_epoch(self, cache: str, compute, epoch: int | None) -> np.ndarray:
        """``compute(epoch)``, kept in attribute ``cache`` for the current epoch (cleared by :meth:`set_epoch`)."""
        current = self.epoch  # read first: it drops caches another process made stale
        if epoch is not None and int(epoch) != current:
            return compute(int(epoch))
        if getattr(self, cache) is None:
            setattr(self, cache, compute(current))
        return getattr(self, cache)

    def _draw(self, epoch: int) -> np.ndarray:
        if not self._prefixes:  # the epoch's pairs dataset, cached beside the examples and shared by every process
            return np.asarray(epoch_pairs(self.examples, epoch=epoch, seed=self.seed)["partner_row"], dtype=np.int64)
        rows = self._offsets[:-1] + self.prefix_cuts(epoch)  # keyed by the flat index of the row's cut position
        return draw_partners(
            self.seed, epoch, rows, self._group_start, self._group_size, self._rank, self._partner_rows
        )

    def prefix_cuts(self, epoch: int | None = None) -> np.ndarray:
        """Prefix ``view_span``s and ``prediction_span``: each row's last position ``j`` in ``epoch`` (default: the
        current one), int64 ``(N,)``, uniform over ``0..len(labels) - 1``; the prefix is ``input_ids[: j + 1]``, its
        next item ``labels[j]``."""
        if not (self._prefixes or self._prefix_samples):
            raise ValueError(
                "prefix_cuts needs prediction_span='random_prefix', or view_span='random_prefix' (or '_in_place') "
                "with with_pairs=True"
            )
        return self._for_epoch("_cuts", self._cut, epoch)

    def _cut(self, epoch: int) -> np.ndarray:
        rows = np.arange(len(self.table), dtype=np.int64)
        keys = view_keys(self.seed, epoch, rows, _PREFIX_CUT_VIEW)
        # Bias below 2**-55 for rows of <= 200 positions.
        return (keys % self._label_lengths.astype(np.uint64)).astype(np.int64)

    def row_and_position(self, flat: int) -> tuple[int, int]:
        """``(row, j)`` of a flat labelled position (prefix ``view_span``s)."""
        row = int(np.searchsorted(self._offsets, int(flat), side="right")) - 1
        return row, int(flat) - int(self._offsets[row])

    def set_importance(self, scores: np.ndarray) -> None:
        """EC4SRec: the importance score of every item of every row's ``input_ids``, back to back (row 0's first,
        as ``table.flat("input_ids")``), for the views of this and later epochs, in every data-loader worker."""
        if not self._explains:
            raise ValueError("set_importance needs view_maker='ec4srec' with with_pairs=True")
        scores = np.asarray(scores, dtype=np.float32)
        if scores.shape != tuple(self._importance.shape):
            raise ValueError(f"set_importance: {scores.shape} scores for {tuple(self._importance.shape)} items")
        self._importance.copy_(torch.from_numpy(scores))
        self._importance_set.fill_(True)

    def importance(self) -> np.ndarray | None:
        """The scores :meth:`set_importance` set (a copy), or ``None`` before the first."""
        return self._importance.numpy().copy() if self._explains and bool(self._importance_set) else None

    def explained_views(self, i: int, epoch: int | None = None) -> tuple[list[int], list[int], list[int]]:
        """EC4SRec's views of row ``i`` in ``epoch`` (default: the current one): two positive views (views 0 and 1,
        the row's two distinct operators) and the negative view (:data:`~data_processing.augment.NEGATIVE_VIEW`,
        whose stream also draws its operator), from the scores :meth:`set_importance` set."""
        epoch = self.epoch if epoch is None else int(epoch)
        sequence = self.table.row("input_ids", i).tolist()
        scores = self._importance[int(self._input_offsets[i]) : int(self._input_offsets[i + 1])].numpy()
        operators = operator_pairs(self.seed, epoch, np.array([i]))[0].tolist()
        views = []
        for view, operator in enumerate(operators):
            rng = view_rng(self.seed, epoch, i, view)
            views.append(explained_view(sequence, scores, operator, self.positive_ratio, True, rng, self.mask_token))
        rng = view_rng(self.seed, epoch, i, NEGATIVE_VIEW)
        operator = int(rng.integers(0, 3))
        views.append(explained_view(sequence, scores, operator, self.negative_ratio, False, rng, self.mask_token))
        return views[0], views[1], views[2]

    def augmented_view(self, i: int, view: int, epoch: int | None = None, with_trailing: bool = False):
        """CL4SRec view ``view`` (0 or 1) of row ``i`` (of its prefix with ``random_prefix``) in ``epoch``
        (default: the current one); with ``with_trailing``, also how many items of what was augmented follow the
        view's last one (:func:`~data_processing.augment.cl4srec_view`)."""
        current = self.epoch  # read first: it drops caches another process made stale
        if epoch is not None and int(epoch) != current:
            key = int(view_keys(self.seed, int(epoch), np.array([i]), view)[0])
            operator = int(operator_pairs(self.seed, int(epoch), np.array([i]))[0, view])
        else:
            if self._view_keys is None:  # both views' keys and operators for every row, once per epoch
                rows = np.arange(len(self.table), dtype=np.int64)
                keys = np.stack([view_keys(self.seed, current, rows, v) for v in (0, 1)], axis=1)
                self._view_keys = (keys, operator_pairs(self.seed, current, rows))
            key, operator = int(self._view_keys[0][i, view]), int(self._view_keys[1][i, view])
        rng = np.random.Generator(np.random.PCG64(key))
        sequence = self.table.row("input_ids", i).tolist()
        if self._prefixes:
            sequence = sequence[: int(self.prefix_cuts(epoch)[i]) + 1]
        return cl4srec_view(
            sequence,
            rng,
            self.crop_ratio,
            self.mask_ratio,
            self.reorder_ratio,
            self.mask_token,
            operator=operator,
            with_trailing=with_trailing,
        )

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, i: int) -> dict[str, Any]:
        """Row `i` as lists: ``input_ids``, ``labels`` and the views (for a look at one example; training batches
        go through :meth:`__getitems__`)."""
        item = self.__getitems__([i])[0]
        if "row" in item:  # prefix and masked-item samples carry their own input_ids and labels
            row = item.pop("row")
            item = {
                "input_ids": self.table.row("input_ids", row).tolist(),
                "labels": self.table.row("labels", row).tolist(),
                **item,
            }
        for key in ("pair_row", "view_row"):
            if key in item:
                item[key.replace("_row", "_input_ids")] = self.table.row("input_ids", item.pop(key)).tolist()
        return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in item.items()}

    def __getitems__(self, indices) -> list[dict[str, Any]]:
        """A batch as the collator gathers it: per row its ``row`` index and, for views that are other rows (a
        partner, the row again), ``pair_row`` / ``view_row``; views made per row (CL4SRec's augmentations, prefixes)
        come as arrays (``view_input_ids``, ``pair_input_ids``, and the prefixes' position offsets). Prefix samples
        (``prediction_span="random_prefix"``) come as arrays too: ``input_ids`` and ``labels`` instead of ``row``."""
        rows = [int(i) for i in indices]
        if self.mlm_probability is not None:
            return self._masked_items(rows)
        if self._prefix_samples:
            return [self._prefix_sample(item) for item in self._row_items(rows)]
        return self._row_items(rows)

    def whole_sequence(self, i: int) -> np.ndarray:
        """Row ``i``'s sequence ``s_1..s_n`` (its last ``max_len`` items): ``input_ids`` and the last label."""
        inputs, labels = self.table.row("input_ids", i), self.table.row("labels", i)
        return np.concatenate([inputs[:1], labels])[-self.max_len :]

    def _masked_items(self, rows: list[int]) -> list[dict[str, Any]]:
        """BERT4Rec samples of `rows` this epoch (see ``mlm_probability``), masks drawn for the batch at once."""
        sequences = [self.whole_sequence(i) for i in rows]
        lengths = np.fromiter((len(seq) for seq in sequences), dtype=np.int64, count=len(rows))
        positions = np.arange(int(lengths.sum()), dtype=np.int64) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        masked = masked_item_draws(
            self.seed, self.epoch, np.repeat(np.asarray(rows, dtype=np.int64), lengths), positions, self.mlm_probability
        )
        partners = self.partners() if self.with_pairs else None
        items, start = [], 0
        for i, sequence in zip(rows, sequences):
            row_masked = masked[start : start + len(sequence)]
            start += len(sequence)
            item = {
                "input_ids": np.where(row_masked, self.mask_token, sequence),
                "labels": np.where(row_masked, sequence, IGNORE_INDEX),
            }
            if partners is not None:
                item["view_input_ids"] = self.table.row("input_ids", i)
                item["pair_input_ids"] = self.table.row("input_ids", int(partners[i]))
            items.append(item)
        return items

    def _row_items(self, rows: list[int]) -> list[dict[str, Any]]:
        if not self.with_pairs:
            return [{"row": i} for i in rows]
        if self._prefixes:
            return [self._prefix_item(i) for i in rows]
        if self.view_maker == "cl4srec":
            return [
                {"row": i, "view_input_ids": self.augmented_view(i, 0), "pair_input_ids": self.augmented_view(i, 1)}
                for i in rows
            ]
        if self._explains:
            if not bool(self._importance_set):  # before EC4SRec's first explanation: prediction alone
                return [{"row": i} for i in rows]
            items = []
            for i in rows:
                first, second, negative = self.explained_views(i)
                items.append(
                    {"row": i, "view_input_ids": first, "pair_input_ids": second, "negative_input_ids": negative}
                )
            return items
        if self.view_maker == "dropout":
            return [{"row": i, "pair_row": i} for i in rows]
        partners = self.partners()
        if self.view_maker == "same_target":
            return [{"row": i, "pair_row": int(partners[i])} for i in rows]
        return [{"row": i, "view_row": i, "pair_row": int(partners[i])} for i in rows]  # same_target+dropout

    def _prefix_sample(self, item: dict[str, Any]) -> dict[str, Any]:
        """`item` with its ``row`` replaced by the row's prefix this epoch and that prefix's one target, and the
        row's labels as ``history_input_ids``: with the prefix they are every item of the row, which sampled
        negatives avoid as they do under whole sequences (the items after the target are not in the sample)."""
        i = item.pop("row")
        cut = int(self.prefix_cuts()[i])
        row_labels = self.table.row("labels", i)
        labels = np.full(cut + 1, IGNORE_INDEX, dtype=np.int64)
        labels[cut] = row_labels[cut]
        prefix = self.table.row("input_ids", i)[: cut + 1]
        return {"input_ids": prefix, "labels": labels, "history_input_ids": row_labels, **item}

    def _prefix_item(self, i: int) -> dict[str, Any]:
        labels = self._label_lengths
        after = int(labels[i]) - 1 - int(self.prefix_cuts()[i])  # items of the row after its prefix
        pair_after = after
        item: dict[str, Any] = {"row": i}
        if self.view_maker == "cl4srec":  # a crop ends before the prefix does: its own items after it count too
            item["view_input_ids"], view_trailing = self.augmented_view(i, 0, with_trailing=True)
            item["pair_input_ids"], pair_trailing = self.augmented_view(i, 1, with_trailing=True)
            after, pair_after = after + view_trailing, after + pair_trailing
        else:
            sequence = self.table.row("input_ids", i)
            prefix = sequence[: len(sequence) - after]
            item["view_input_ids"] = prefix
            if self._draws_partners:
                row, position = self.row_and_position(int(self.partners()[i]))
                item["pair_input_ids"] = self.table.row("input_ids", row)[: position + 1]
                pair_after = int(labels[row]) - 1 - position
            else:  # dropout: the prefix twice
                item["pair_input_ids"] = prefix
        if self._in_place:
            item["view_position_offsets"], item["pair_position_offsets"] = after, pair_after
        return item
