#!/usr/bin/env python
"""Times ML-1M preprocessing: read -> leave-one-out split -> training sequences -> partner index.

    .venv/bin/python benchmarks/preprocess.py            # writes benchmarks/results/preprocess.json

Target (data pipeline issue): under 10 s on the 2-core reference machine. The import of the packages is timed
separately, since it is paid once per process whatever the data.
"""

import os
import platform
import sys
import time
from pathlib import Path

from machine_info import write_result

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    started = time.perf_counter()
    from data_processing import build_train_dataset, leave_one_out_split, read_interactions

    imported = time.perf_counter()
    from data_processing.readers import known_dataset_path

    ML1M = known_dataset_path("ml-1m")
    if not ML1M.exists():
        print(f"skipped: {ML1M} not found (not shipped (licence): set BTSR_DATA_ROOT)")
        return 0
    frame = read_interactions(ML1M, "sasrec")
    read = time.perf_counter()
    split = leave_one_out_split(frame, max_len=200, source=str(ML1M))
    split_done = time.perf_counter()
    examples = build_train_dataset(split.train_sequences, max_len=200)
    built = time.perf_counter()
    result = {
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": sys.version.split()[0]},
        "command": "python benchmarks/preprocess.py",
        "import_s": round(imported - started, 3),
        "read_s": round(read - imported, 3),
        "split_s": round(split_done - read, 3),
        "sequences_and_partner_index_s": round(built - split_done, 3),
        "preprocess_total_s": round(built - imported, 3),
        "rows": len(frame),
        "num_items": len(split.item_vocab),
        "num_train_sequences": len(examples),
        "partner_share": round(float(examples.partner_share), 4),
        "target_s": 10.0,
    }
    write_result("preprocess", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
