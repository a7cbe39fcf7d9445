"""``python -m vaebm_hub`` = the ``vaebm-hub`` command."""

from .cli import main

main()
