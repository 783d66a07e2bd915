"""Options of a transformers VLM teacher (the distillation config's ``hf_teacher.*`` keys).

Kept free of heavy imports: the job config validates these before anything is loaded.
"""

from __future__ import annotations

from dataclasses import field
from typing import Any

from pydantic import Field

from ..core.config import ActionHeadConfig
from ..core.typed_config import ConfigError, Float, Int, config_dataclass, from_dict

CORE_HEADS = ("regression", "tokens", "flow")  # core.model.action_heads, on top of the final hidden states
HEAD_TYPES = [*CORE_HEADS, "action_tokens"]  # extended by teachers.hf_action_heads.register_action_head
DTYPE_NAMES = ("auto", "float32", "bfloat16", "float16")


@config_dataclass
class HFTeacherOptions:
    """How a transformers image-text-to-text model becomes a VLA teacher."""

    # regression | tokens | flow: core's action heads (core/model/action_heads.py) on the final hidden
    # states, new and fitted on the demos (backbone frozen) before distillation; their settings
    # (width, bins, flow_steps...) in ``head_config``. action_tokens: OpenVLA's own discrete
    # action tokens (the last 256 vocabulary ids) decoded by the model's LM head and de-normalised
    # with the checkpoint's dataset statistics (``unnorm_key``): nothing new to fit.
    head: str = "regression"
    head_config: dict[str, Any] = field(default_factory=dict)  # ActionHeadConfig fields except kind
    chunk_size: Int = Field(4, gt=0)  # future actions per pass (action_tokens: 7 tokens per action, OpenVLA uses 1)
    # prompt template: "{instruction}" is replaced by the instruction and "{image}" by the
    # family's image placeholder; '' = the family default (OpenVLA's "In: What action ..." for openvla)
    prompt: str = ""
    max_text_tokens: Int = Field(48, gt=0)  # instruction tokens beyond the template; longer instructions are an error
    image_size: Int = Field(0, ge=0)  # square input size the images are resized to; 0 = from the image processor
    trust_remote_code: bool = False  # run Python code shipped in the model directory (OpenVLA's Prismatic)
    dtype: str = "auto"  # weights dtype when loading: auto (as stored), float32, bfloat16, float16
    unnorm_key: str = ""  # action_tokens: dataset statistics to de-normalise with ('' = the only one)
    constrain_action_tokens: bool = False  # action_tokens: argmax over the 256 action ids only (OpenVLA: no)
    # regression/tokens/flow: epochs fitting the new head on the demos (backbone frozen)
    head_epochs: Int = Field(5, gt=0)
    head_lr: Float = Field(1e-3, gt=0)

    def validate(self) -> None:
        if self.head not in HEAD_TYPES:
            raise ConfigError(f"hf_teacher.head: {self.head!r}, expected one of {', '.join(HEAD_TYPES)}")
        if self.dtype not in DTYPE_NAMES:
            raise ConfigError(f"hf_teacher.dtype: {self.dtype!r}, expected one of {', '.join(DTYPE_NAMES)}")
        if self.head in CORE_HEADS:  # typed as ActionHeadConfig's fields (a --set value arrives as text)
            head = self.core_head_config()
            self.head_config = {name: getattr(head, name) for name in self.head_config}
        elif self.head_config:
            raise ConfigError(f"hf_teacher.head_config: only used with the core heads ({', '.join(CORE_HEADS)})")
        if self.prompt and "{instruction}" not in self.prompt:
            raise ConfigError("hf_teacher.prompt must contain '{instruction}' (where the instruction goes)")

    def core_head_config(self) -> ActionHeadConfig:
        if "kind" in self.head_config:
            raise ConfigError("hf_teacher.head_config.kind: set hf_teacher.head instead")
        return from_dict(ActionHeadConfig, {**self.head_config, "kind": self.head}, prefix="hf_teacher.head_config.")
