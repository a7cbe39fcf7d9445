"""Names shared across the package: the library name saved pipelines record, and which files make a pipeline."""

LIBRARY_NAME = "vaebm_hub"

# Files a saved pipeline consists of; everything else in a Hub repo (checkpoints, logs, samples) is skipped when
# downloading and never uploaded.
HUB_ALLOW_PATTERNS = (
    "model_index.json",
    "*/config.json",
    "*/scheduler_config.json",
    "*/*.safetensors",
    "*/*.safetensors.index*.json",
    "README.md",
)

# The license trained model cards carry unless --hub_license says otherwise: the package's own (pyproject.toml).
DEFAULT_MODEL_LICENSE = "apache-2.0"
