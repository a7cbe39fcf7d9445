"""Train VAEBM: ``accelerate launch examples/train.py --stage all --dataset_name digits --output_dir vaebm-digits``.

All logic lives in :mod:`vaebm_hub.training`; run ``--help`` for the flags.
"""

import sys

from vaebm_hub.training import main

if __name__ == "__main__":
    sys.exit(main())
