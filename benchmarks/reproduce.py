"""Reproduce the paper's claims at CPU scale (``make reproduce``); the logic lives in :mod:`reproduction` beside it.

    python benchmarks/reproduce.py [--fast] [--claims 1,2,3,4,5] [--output_dir benchmarks/results]
                                   [--cache_dir outputs/reproduce] [--docs docs/results.md] [--workers 2]

Trained pipelines are cached in ``--cache_dir``, so a second run only evaluates. Training runs and evaluations run
in ``--workers`` processes, each evaluation as soon as the runs it reads are trained. Writes
``<output_dir>/reproduce_<claim>.json``, figures under ``<output_dir>/figures/`` and the report ``--docs``.
"""

from __future__ import annotations

import argparse
import shlex
import sys

import torch
from reproduction import CLAIMS, run_claims


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fast", action="store_true", help="Tiny sizes (seconds; for the test suite).")
    parser.add_argument("--claims", default=",".join(map(str, CLAIMS)), help="Comma-separated claim numbers.")
    parser.add_argument("--output_dir", default="benchmarks/results")
    parser.add_argument("--cache_dir", default="outputs/reproduce", help="Where trained pipelines are cached.")
    parser.add_argument("--docs", default="docs/results.md", help="Markdown report path ('' to skip).")
    parser.add_argument("--num_threads", type=int, default=1, help="torch threads for evaluation.")
    parser.add_argument(
        "--workers", type=int, default=2, help="Processes for training and evaluation tasks (1: in this process)."
    )
    args = parser.parse_args(argv)
    try:
        claims = [int(c) for c in args.claims.split(",") if c.strip()]
    except ValueError:
        parser.error(f"--claims takes comma-separated numbers from {sorted(CLAIMS)}, got {args.claims!r}")
    torch.set_num_threads(args.num_threads)
    command = shlex.join(["python", "benchmarks/reproduce.py", *(sys.argv[1:] if argv is None else argv)])
    results = run_claims(
        claims, fast=args.fast, output_dir=args.output_dir, cache_dir=args.cache_dir, docs_path=args.docs or None,
        command=command, max_workers=args.workers, num_threads=args.num_threads,
    )  # fmt: skip
    for claim, result in results.items():
        print(f"claim {claim} ({result['title']}): target {'met' if result['target_met'] else 'not met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
