"""Do the routing tiers train to the same weights twice? Two trainings into two empty caches.

Each training runs in its own process with another thread count (``OMP_NUM_THREADS`` 1 and 2 by
default), into its own empty temporary cache, through ``leanxai.zoo.tiers.load_tiers`` -- what a
user's first ``leanxai route eval`` does. The script compares the cached weight files byte for
byte and names each tier's SHA-256 (the routing benchmark prints the same hashes beside its
tables).

    python benchmarks/tier_determinism.py                    # MNIST, about 4 min per training
    python benchmarks/tier_determinism.py --threads 1,2,2

Output: ``benchmarks/results/tier_determinism_<dataset>.json``; exit status 1 when the trainings
differ.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent

_TRAIN = (
    "import sys; from leanxai.zoo.tiers import load_tiers; "
    "load_tiers(sys.argv[1], sys.argv[2], progress=False)"
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist", choices=("mnist", "shapes"))
    parser.add_argument("--threads", default="1,2", help="one training per thread count")
    parser.add_argument("--out", type=Path, default=ROOT / "results")
    args = parser.parse_args(argv)
    counts = [int(t) for t in args.threads.split(",")]

    with tempfile.TemporaryDirectory(prefix="leanxai-determinism-") as scratch:
        folders = [Path(scratch) / f"run{i}" for i in range(len(counts))]
        processes = []
        for folder, threads in zip(folders, counts, strict=True):
            folder.mkdir()
            env = {**os.environ, "OMP_NUM_THREADS": str(threads), "LEANXAI_CACHE": str(folder)}
            command = [sys.executable, "-c", _TRAIN, args.dataset, str(folder)]
            processes.append(subprocess.Popen(command, env=env))
        if any(process.wait() != 0 for process in processes):
            print("a training failed", file=sys.stderr)
            return 2
        runs = [
            {
                path.name: hashlib.sha256(path.read_bytes()).hexdigest()
                for path in sorted(folder.glob("*.safetensors"))
            }
            for folder in folders
        ]
    identical = all(run == runs[0] for run in runs) and bool(runs[0])
    result = {
        "dataset": args.dataset,
        "threads": counts,
        "identical": identical,
        "weights_sha256": runs,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"tier_determinism_{args.dataset}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    for name, digest in runs[0].items():
        same = all(run.get(name) == digest for run in runs)
        print(f"{name}: {digest[:12]} {'identical' if same else 'DIFFERS'} in {len(runs)} runs")
    print(f"{'identical' if identical else 'different'} weights at threads {counts}; {path}")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
