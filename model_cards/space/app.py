"""A Gradio demo of a BT-SR model: pick a few items (by title for the MovieLens models), see the top-k next items.

Run locally (`pip install -e ".[demo]"`):

    python model_cards/space/app.py FOLDER_OR_REPO_ID [--titles movies.csv] [--k 10] [--port 7860]

As a Hugging Face Space (Gradio SDK): this file and `requirements.txt` at the Space's root, the model named by the
`BTSR_MODEL` variable (a repo id) and, for titles, `BTSR_TITLES` (a `movieId,title` CSV uploaded with the Space).
The model loads with `AutoModel.from_pretrained(..., trust_remote_code=True)`, so the Space needs only the code files
saved with the model, not this project.

Everything but `build_demo` and `main` is plain Python (tested without Gradio): the titles lookup, the parsing of
what the user picked or typed into raw item ids, and the result table.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

# The embedded MovieLens titles, used for a model trained on ml-latest-small when no titles file is named.
EMBEDDED_TITLES = Path(__file__).resolve().parent.parent.parent / "data" / "ml-latest-small" / "movies.csv"
COLUMNS = ["rank", "item id", "title", "score"]


def load_titles(path: str | os.PathLike) -> dict[int, str]:
    """`movieId -> title` from a MovieLens `movies.csv` (columns `movieId,title,...`)."""
    with open(path, newline="", encoding="utf-8") as handle:
        return {int(row["movieId"]): row["title"] for row in csv.DictReader(handle)}


def default_titles_path(model_name: str) -> Path | None:
    """The embedded `movies.csv` when `model_name` is a local folder trained on a MovieLens dataset whose ids it
    uses (ml-latest-small), else None (the demo then shows raw ids)."""
    stats = Path(model_name) / "dataset_stats.json"
    if not stats.is_file() or not EMBEDDED_TITLES.is_file():
        return None
    dataset = json.loads(stats.read_text()).get("dataset")
    return EMBEDDED_TITLES if dataset == "ml-latest-small" else None


def item_labels(item_ids: Sequence, titles: dict | None = None) -> dict[str, object]:
    """`label -> raw id` for the picker, in vocabulary order: `"Title [id]"` where a title is known, else `str(id)`.
    Labels are unique (the id is part of each one)."""
    titles = titles or {}
    return {(f"{titles[item]} [{item}]" if item in titles else str(item)): item for item in item_ids}


def parse_history(picked: Iterable[str] | None, typed: str | None, labels: dict[str, object]) -> tuple[list, list]:
    """`(history, unknown)`: the raw ids of the picked labels, then of the typed entries (comma- or
    newline-separated: a label, a raw id, or a title matched exactly and case-insensitively), in order;
    entries that match nothing go to `unknown`. Duplicates are kept once, at their first place."""
    by_text = {}
    for label, item in labels.items():
        by_text.setdefault(str(item), item)
        title = label.rsplit(" [", 1)[0] if label.endswith("]") else label
        by_text.setdefault(title.casefold(), item)
    entries = list(picked or []) + [e.strip() for e in (typed or "").replace("\n", ",").split(",") if e.strip()]
    history, unknown = [], []
    for entry in entries:
        item = labels.get(entry, by_text.get(entry, by_text.get(entry.casefold(), None)))
        if item is None:
            unknown.append(entry)
        elif item not in history:
            history.append(item)
    return history, unknown


def recommendation_rows(model, history: Sequence, k: int = 10, titles: dict | None = None) -> list[list]:
    """`[rank, item id, title, score]` rows of `model.recommend([history], k, return_scores=True)` (the title is ""
    where none is known); the history's own items are never listed."""
    titles = titles or {}
    (ids,), (scores,) = model.recommend([list(history)], k=int(k), return_scores=True)
    return [
        [rank, item, titles.get(item, ""), round(float(score), 4)]
        for rank, (item, score) in enumerate(zip(ids, scores), start=1)
    ]


def recommend_for_ui(model, labels: dict, titles: dict | None, picked, typed, k) -> tuple[list[list], str]:
    """The button's work without Gradio: `(rows, status line)`. No known item gives no rows and says so."""
    history, unknown = parse_history(picked, typed, labels)
    note = f" Not in the model's vocabulary, ignored: {', '.join(unknown)}." if unknown else ""
    if not history:
        return [], "Pick or type at least one item." + note
    rows = recommendation_rows(model, history, k, titles)
    return rows, f"Top {len(rows)} for a history of {len(history)} item(s), oldest first.{note}"


def load_model(name: str):
    """The model of a folder or repo id through its remote code (what a Space without this project does)."""
    from transformers import AutoModel

    return AutoModel.from_pretrained(name, trust_remote_code=True).eval()


def build_demo(model, titles: dict | None = None, k: int = 10, title: str = "BT-SR recommendations"):
    """The Gradio Blocks: a searchable multi-select of items, a free-text box, k, a button and the result table."""
    import gradio as gr

    labels = item_labels(model.item_vocab["item_ids"], titles)
    with gr.Blocks(title=title) as demo:
        gr.Markdown(
            f"# {title}\nPick the items a user interacted with, oldest first (type in the box to search), "
            "or type ids or exact titles separated by commas; then **Recommend**."
        )
        picked = gr.Dropdown(choices=list(labels), multiselect=True, label="History", filterable=True)
        typed = gr.Textbox(label="Or type ids / titles (comma-separated)", lines=1)
        top_k = gr.Slider(1, 50, value=k, step=1, label="k")
        button = gr.Button("Recommend", variant="primary")
        status = gr.Markdown()
        table = gr.Dataframe(headers=COLUMNS, label="Recommendations", interactive=False)

        def run(picked_labels, typed_text, k_value):
            rows, line = recommend_for_ui(model, labels, titles, picked_labels, typed_text, k_value)
            return rows, line

        button.click(run, inputs=[picked, typed, top_k], outputs=[table, status])
    return demo


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default=os.environ.get("BTSR_MODEL"), help="folder or repo id")
    parser.add_argument("--titles", default=os.environ.get("BTSR_TITLES"), help="movieId,title CSV")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    args = parser.parse_args(argv)
    if not args.model:
        print("error: name a model folder or repo id (argument or BTSR_MODEL)", file=sys.stderr)
        return 2
    titles_path = args.titles or default_titles_path(args.model)
    titles = load_titles(titles_path) if titles_path else None
    build_demo(load_model(args.model), titles, k=args.k).launch(server_name=args.host, server_port=args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
