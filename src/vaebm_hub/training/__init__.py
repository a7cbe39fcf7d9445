"""Two-stage VAEBM training on Accelerate: ``accelerate launch examples/train.py --stage {vae,ebm,all} ...``.

Stage 1 trains the VAE (:mod:`.vae_stage`), stage 2 the energy network on the frozen VAE (:mod:`.ebm_stage`), both
on one loop (:mod:`.loop`) with atomic checkpoints (:mod:`.checkpointing`) and a divergence guard
(:mod:`.divergence`). ``python -m vaebm_hub.training.demo`` runs the embedded digits demo.
"""

from .config import TrainingConfig, build_parser, parse_args
from .divergence import DivergenceGuard, TrainingDivergedError
from .grad_clip import clip_grad_igebm_
from .hub_upload import push_trained_pipeline, write_model_card
from .replay_buffer import ReplayBuffer, replay_probability
from .run import execute, main, plan_run, run, train

__all__ = [
    "DivergenceGuard",
    "ReplayBuffer",
    "TrainingConfig",
    "TrainingDivergedError",
    "build_parser",
    "clip_grad_igebm_",
    "execute",
    "main",
    "parse_args",
    "plan_run",
    "push_trained_pipeline",
    "replay_probability",
    "run",
    "train",
    "write_model_card",
]
