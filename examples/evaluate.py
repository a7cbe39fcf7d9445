"""Evaluate a pipeline: ``python examples/evaluate.py PIPELINE_DIR_OR_HUB_ID --dataset digits --output_dir eval``.

All logic lives in :func:`vaebm_hub.evaluation.evaluate_pipeline` (this is ``vaebm-hub evaluate``); run ``--help``
for the flags. It writes ``metrics.json``, ``samples.png`` and ``energy_histogram.png`` and prints a short table.
"""

import sys

from vaebm_hub.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
