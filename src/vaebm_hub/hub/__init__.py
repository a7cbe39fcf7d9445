"""Hub publishing: model cards, pushing a pipeline's safetensors/configs/card, and the remote-code exporter."""

from .cards import create_model_card, validate_model_card
from .files import pipeline_files
from .push import push_pipeline
from .remote_code import add_remote_code, export_remote_code

__all__ = [
    "add_remote_code",
    "create_model_card",
    "export_remote_code",
    "pipeline_files",
    "push_pipeline",
    "validate_model_card",
]
