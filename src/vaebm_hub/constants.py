"""Names shared across the package: the library name saved pipelines record, which files make a pipeline, and what
a pipeline's images can be made of."""

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

# What a pipeline's image is at the chain's final state: the decoder mean of its z (VAEBM), or the decoder's sample
# T_x(z, eps_x) at its final eps_x, the x of the joint sample (x, z) ~ h (not in VAEBM; needs pixel noise).
DECODER_OUTPUTS = ("mean", "sample")

# The precision of the energy network inside stage 2's chains (vaebm_hub.training.chain_precision).
CHAIN_DTYPES = ("float32", "bfloat16", "auto")

# The license trained model cards carry unless --hub_license says otherwise: the package's own (pyproject.toml).
DEFAULT_MODEL_LICENSE = "apache-2.0"
