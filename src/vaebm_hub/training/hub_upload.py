"""The run's model card and the Hub upload of the final pipeline (never checkpoints, logs or sample grids)."""

from __future__ import annotations

import os
from pathlib import Path

from huggingface_hub import HfApi

from ..pipelines.pipeline_vaebm import HUB_ALLOW_PATTERNS

PUSH_IGNORE_PATTERNS = ["checkpoint-*", ".tmp-*", ".trash-*", "logs/*", "samples/*"]

CARD_TEMPLATE = """---
library_name: vaebm_hub
pipeline_tag: unconditional-image-generation
tags:
- vaebm
- energy-based-model
- diffusers
---

# VAEBM ({dataset})

A VAEBM (Xiao et al., ICLR 2021) trained with `vaebm_hub` ({stages}): an NVAE-style VAE and an energy network,
sampled by Langevin dynamics in the VAE's noise space.

```python
from vaebm_hub import VAEBMPipeline

pipe = VAEBMPipeline.from_pretrained("{repo}")
images = pipe(batch_size=16).images
```
"""


def write_model_card(output_dir: str | os.PathLike, *, dataset: str, stages: str, repo: str | None = None) -> Path:
    """Write a minimal ``README.md`` model card into ``output_dir``."""
    path = Path(output_dir) / "README.md"
    path.write_text(CARD_TEMPLATE.format(dataset=dataset, stages=stages, repo=repo or str(output_dir)))
    return path


def push_pipeline_folder(
    output_dir: str | os.PathLike,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool = False,
    api: HfApi | None = None,
):
    """Create ``repo_id`` (if needed) and upload the saved pipeline and its card from ``output_dir``.

    Only the pipeline's files (``HUB_ALLOW_PATTERNS``) are sent; ``checkpoint-*``, logs and samples are excluded.
    ``api`` is injectable for tests.
    """
    api = api or HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True, token=token)
    return api.upload_folder(
        repo_id=repo_id,
        folder_path=str(output_dir),
        allow_patterns=HUB_ALLOW_PATTERNS,
        ignore_patterns=PUSH_IGNORE_PATTERNS,
        commit_message="Upload VAEBM pipeline trained with vaebm_hub",
        token=token,
    )
