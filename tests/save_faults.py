"""Runs train.py with a fault inside one checkpoint save: after the weights are written, before optimizer.pt.

    python tests/save_faults.py kill 3 -- train.py <arguments>    # SIGKILL inside the 3rd checkpoint save
    python tests/save_faults.py enospc 3 -- train.py <arguments>  # that save's optimizer.pt fails: disk full

Test-only, so the library needs no hook for it: the Trainer's checkpoint save writes the model files, then calls
`_save_optimizer_and_scheduler` (optimizer.pt, scheduler.pt), then the RNG state and trainer_state.json; this script
patches that call. `kill` ends the process there as `kill -9` would (nothing after it runs, no cleanup); `enospc`
leaves a truncated optimizer.pt and raises the OSError a full disk raises.
"""

import errno
import os
import runpy
import signal
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as train.py sets it, before torch loads

REPO_ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    fault, at, separator, script, *train_args = sys.argv[1:]
    if fault not in ("kill", "enospc") or separator != "--":
        raise SystemExit(__doc__)
    sys.path.insert(0, str(REPO_ROOT))
    import transformers

    original = transformers.Trainer._save_optimizer_and_scheduler
    saves = 0

    def faulty(self, output_dir):
        nonlocal saves
        saves += 1
        if saves != int(at):
            return original(self, output_dir)
        if not (Path(output_dir) / "model.safetensors").is_file():
            raise AssertionError(f"{output_dir}: the weights should be written before the optimizer")
        if fault == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        (Path(output_dir) / "optimizer.pt").write_bytes(b"PK\x03\x04")  # the first bytes of a torch.save zip
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    transformers.Trainer._save_optimizer_and_scheduler = faulty
    sys.argv = [script, *train_args]
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
