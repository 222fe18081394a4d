"""xQG at scale with Ray: generate and encode the queries of a Parquet file of passages in
parallel workers, and write part files that ``xqdb import`` stores without recomputing.

    python ray_augment.py PASSAGES.parquet OUT_DIR --generator GEN_DIR [--profile JSON]
        [--model MODEL_DIR] [--workers 2] [--batch-size 16]
    xqdb init INDEX --xqg ... --generator GEN_DIR     # the same profile, generator, model
    xqdb import INDEX OUT_DIR

The passages need columns ``id`` and ``text`` (``title``, ``lang`` and ``meta`` optional).
Each worker holds one ``xqdb.Augmenter`` (a generator and an encoder) and maps batches of
passages to rows of the import schema (``xqdb.arrow.augment_table``). Queries are seeded by
the profile's seed and the passage id, so any split over workers gives the same queries.

On a cluster the code stays the same: start it with ``RAY_ADDRESS`` set to the cluster (or
through ``ray job submit``), give paths every node reads and writes (``s3://...``, a shared
file system), install the xqdb wheel, numpy, pyarrow and onnxruntime on the workers (a
``runtime_env`` with ``pip``) and put the generator and model folders where they all see
them (``--generator``/``--model``; ``python -m xqdb setup`` on each node makes the default
model). Raise ``--workers`` to the number of worker processes and ``--cpus-per-worker`` to
the CPUs each should reserve; leave CPUs for Ray's read and write tasks (with every CPU
reserved by a worker, the job waits forever for a reader).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Optional

import ray


class Augment:
    """One worker: its Augmenter is made once and maps every batch it is given."""

    def __init__(
        self, generator: str, profile: Optional[dict[str, Any]], model: Optional[str], threads: int
    ):
        import xqdb

        self.augmenter = xqdb.Augmenter(generator, profile, model, threads)

    def __call__(self, batch):
        import xqdb.arrow

        return xqdb.arrow.augment_table(self.augmenter, batch)


def run(
    passages: str,
    out: str,
    generator: str,
    profile: Optional[dict[str, Any]] = None,
    model: Optional[str] = None,
    workers: int = 2,
    batch_size: int = 16,
    cpus_per_worker: float = 1,
) -> None:
    """Reads ``passages``, augments them in ``workers`` processes, writes Parquet part files
    into the folder ``out``."""
    env = {k: os.environ[k] for k in ("XQDB_HOME", "ORT_DYLIB_PATH") if k in os.environ}
    if __name__ != "__main__":
        # Imported by another script: ship this module's code to the workers with the task.
        ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    # RAY_ADDRESS (when set) names a cluster; otherwise a local one starts on this machine.
    ray.init(ignore_reinit_error=True, runtime_env={"env_vars": env})
    # At least a few blocks per worker, so that every worker gets a share of a small file.
    ds = ray.data.read_parquet(passages).repartition(max(workers * 4, 1))
    ds = ds.map_batches(
        Augment,
        fn_constructor_kwargs={
            "generator": generator,
            "profile": profile,
            "model": model,
            # ONNX Runtime threads: the CPUs the worker reserved (at least one).
            "threads": max(1, int(cpus_per_worker)),
        },
        batch_format="pyarrow",
        batch_size=batch_size,
        concurrency=workers,
        num_cpus=cpus_per_worker,
    )
    ds.write_parquet(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("passages", help="a Parquet file or folder of passages")
    ap.add_argument("out", help="the folder the part files are written to")
    ap.add_argument("--generator", required=True, help="a generator folder")
    ap.add_argument("--profile", help="xQG profile settings as JSON (default: the paper's)")
    ap.add_argument("--model", help="an encoder bundle folder (default: the default model)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--cpus-per-worker", type=float, default=1)
    a = ap.parse_args()
    run(
        a.passages,
        a.out,
        a.generator,
        json.loads(a.profile) if a.profile else None,
        a.model,
        a.workers,
        a.batch_size,
        a.cpus_per_worker,
    )


if __name__ == "__main__":
    main()
