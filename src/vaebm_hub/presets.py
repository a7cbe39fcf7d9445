"""The paper's per-dataset VAEBM settings (stage 2 and sampling), one table for the converter, trainer and docs.

Values come from the official README commands (vaebm_reference.md §2-§3). ``digits`` is our CPU-sized default for the
embedded demo, not a paper setting.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class VAEBMPreset:
    """Stage-2 (EBM) training and test-time sampling settings for one dataset."""

    ebm_layout: str
    ebm_n_channel: int
    learning_rate: float
    batch_size: int
    spectral_reg_coeff: float  # alpha_s
    weight_decay: float
    use_mu_cd: bool
    use_buffer: bool
    buffer_size: int
    max_replay_prob: float
    replay_anneal_steps: int
    train_langevin_steps: int
    train_step_size: float
    sample_langevin_steps: int
    sample_step_size: float
    max_train_steps: int
    nvae_preset: str

    def to_dict(self) -> dict:
        return asdict(self)


PRESETS: dict[str, VAEBMPreset] = {
    "cifar10": VAEBMPreset(
        ebm_layout="cifar32", ebm_n_channel=128, learning_rate=4e-5, batch_size=32, spectral_reg_coeff=0.2,
        weight_decay=3e-5, use_mu_cd=False, use_buffer=False, buffer_size=10000, max_replay_prob=0.6,
        replay_anneal_steps=5000, train_langevin_steps=10, train_step_size=8e-5, sample_langevin_steps=16,
        sample_step_size=8e-5, max_train_steps=30000, nvae_preset="cifar10",
    ),
    "celeba64": VAEBMPreset(
        ebm_layout="celeba64", ebm_n_channel=64, learning_rate=5e-5, batch_size=32, spectral_reg_coeff=0.2,
        weight_decay=3e-5, use_mu_cd=True, use_buffer=False, buffer_size=10000, max_replay_prob=0.6,
        replay_anneal_steps=5000, train_langevin_steps=10, train_step_size=5e-6, sample_langevin_steps=20,
        sample_step_size=5e-6, max_train_steps=30000, nvae_preset="celeba64",
    ),
    "lsun_church64": VAEBMPreset(
        ebm_layout="lsun64", ebm_n_channel=64, learning_rate=4e-5, batch_size=32, spectral_reg_coeff=0.2,
        weight_decay=3e-5, use_mu_cd=True, use_buffer=True, buffer_size=10000, max_replay_prob=0.6,
        replay_anneal_steps=5000, train_langevin_steps=10, train_step_size=4e-6, sample_langevin_steps=20,
        sample_step_size=4e-6, max_train_steps=30000, nvae_preset="lsun_church64",
    ),
    "celebahq256": VAEBMPreset(
        ebm_layout="celeba256", ebm_n_channel=64, learning_rate=4e-5, batch_size=16, spectral_reg_coeff=0.3,
        weight_decay=3e-5, use_mu_cd=True, use_buffer=True, buffer_size=2000, max_replay_prob=0.6,
        replay_anneal_steps=3000, train_langevin_steps=6, train_step_size=3e-6, sample_langevin_steps=24,
        sample_step_size=3e-6, max_train_steps=9000, nvae_preset="celebahq256",
    ),
    # Ours: CPU scale, 8x8 digits. Larger steps because the model and the noise space are tiny.
    "digits": VAEBMPreset(
        ebm_layout="digits8", ebm_n_channel=32, learning_rate=1e-4, batch_size=64, spectral_reg_coeff=0.2,
        weight_decay=3e-5, use_mu_cd=False, use_buffer=True, buffer_size=10000, max_replay_prob=0.6,
        replay_anneal_steps=500, train_langevin_steps=10, train_step_size=5e-3, sample_langevin_steps=30,
        sample_step_size=5e-3, max_train_steps=1000, nvae_preset="digits",
    ),
}  # fmt: skip

# NVAE ``args.dataset`` names -> our preset names.
NVAE_DATASET_TO_PRESET = {
    "cifar10": "cifar10",
    "celeba_64": "celeba64",
    "lsun_church_64": "lsun_church64",
    "celeba_256": "celebahq256",
}


def get_preset(name: str) -> VAEBMPreset:
    """Look up a preset by our name or by the NVAE dataset name; unknown names raise a ``ValueError``."""
    key = NVAE_DATASET_TO_PRESET.get(name, name)
    if key not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[key]
