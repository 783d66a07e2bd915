"""Memory-aware training options (``MemoryConfig``) applied to any VLATeacher (or a student's backbone).

* ``freeze_vision``: the image encoder's parameters take no gradients and no optimizer state.
* ``lora_rank``: peft LoRA adapters on the decoder layers' linear projections (``lora_targets``
  leaf names, e.g. q/k/v/o and the MLP projections); the decoder layers then train only through
  the adapters (base weights, other projections and norms frozen); everything outside the
  layers (action head, embeddings, projector, router) keeps its trainability. :func:`merge_lora`
  folds trained adapters back into plain ``Linear`` weights, so exported checkpoints have exactly
  the keys of a model trained without LoRA.
* ``gradient_checkpointing``: decoder layers recompute their activations during backward
  (``VLATeacher.call_layer``).
* ``autocast_bf16``: forward passes under CUDA bf16 autocast; refused on CPU (CPU bf16 autocast
  is slow and not what this option promises).
* out of memory: :func:`out_of_memory_advice` turns an OOM into advice naming the options
  that are still off.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from ..config import MemoryConfig
from ..model.teacher import VLATeacher
from ..typed_config import ConfigError


def check_memory_options(cfg: MemoryConfig, device: torch.device) -> None:
    """Errors for options this device cannot honour, before any training step runs."""
    if cfg.autocast_bf16 and device.type != "cuda":
        raise ConfigError(
            f"memory.autocast_bf16 needs a CUDA device, but training runs on {device.type}; "
            "set memory.autocast_bf16: false (CPU training stays float32)"
        )
    if cfg.autocast_bf16 and not torch.cuda.is_bf16_supported():
        raise ConfigError("memory.autocast_bf16: this GPU does not support bfloat16")


def autocast(cfg: MemoryConfig, device: torch.device):
    """The forward-pass context: bf16 autocast on CUDA when asked, else nothing."""
    if not cfg.autocast_bf16:
        return contextlib.nullcontext()
    check_memory_options(cfg, device)
    return torch.autocast(device_type="cuda", dtype=torch.bfloat16)


def apply_memory_options(model: VLATeacher, cfg: MemoryConfig) -> None:
    """Freeze the vision encoder, add LoRA adapters, switch on gradient checkpointing (in place).

    Call after setting the model's general trainability (``requires_grad_``): this only
    narrows it."""
    model.gradient_checkpointing = cfg.gradient_checkpointing
    if cfg.freeze_vision:
        try:
            params = model.vision_parameters()
        except NotImplementedError as exc:
            raise ConfigError(f"memory.freeze_vision: {exc}") from exc
        for p in params:
            p.requires_grad_(False)
    if cfg.lora_rank:
        add_lora(model, cfg)


def lora_target_names(model: VLATeacher, targets: list[str]) -> list[str]:
    """Full names of the decoder layers' ``nn.Linear`` modules whose last name part is in
    ``targets`` (every Linear in the layers when ``targets`` is empty)."""
    names, leaves = [], set()
    # the modules' real paths: a teacher whose `layers` live deeper (a transformers VLM's language
    # model) must not match same-named projections elsewhere (its vision tower's encoder.layers.N)
    paths = {id(module): name for name, module in model.named_modules()}
    for index, layer in enumerate(model.layers):
        for name, module in layer.named_modules():
            if isinstance(module, nn.Linear):
                leaf = name.rsplit(".", 1)[-1]
                leaves.add(leaf)
                if not targets or leaf in targets:
                    names.append(paths.get(id(module), f"layers.{index}.{name}"))
    if not names:
        raise ConfigError(
            f"memory.lora_targets {targets} match no linear projection in the decoder layers; "
            f"their names are: {', '.join(sorted(leaves)) or 'none'}"
        )
    return names


def add_lora(model: VLATeacher, cfg: MemoryConfig) -> list[str]:
    """Inject LoRA adapters (peft) into the decoder layers; returns the adapted module names."""
    try:
        from peft import LoraConfig, inject_adapter_in_model
    except ImportError as exc:  # pragma: no cover - peft is a dependency
        raise ConfigError("memory.lora_rank needs the `peft` package (pip install peft)") from exc
    if has_lora(model):
        raise ValueError("the model already has LoRA adapters")
    names = lora_target_names(model, list(cfg.lora_targets))
    trainable = {name: p.requires_grad for name, p in model.named_parameters()}
    lora_cfg = LoraConfig(
        r=cfg.lora_rank,
        lora_alpha=cfg.lora_alpha or 2 * cfg.lora_rank,
        lora_dropout=cfg.lora_dropout,
        target_modules=names,
        bias="none",
    )
    inject_adapter_in_model(lora_cfg, model)
    # peft marks only adapters trainable: inside the decoder layers keep it so (base weights,
    # other projections and norms frozen); outside them restore trainability as it was (the
    # action head, embeddings, projector and a student's router go on training)
    for name, p in model.named_parameters():
        if "lora_" in name:
            p.requires_grad_(True)
        elif name.startswith("layers."):
            p.requires_grad_(False)
        else:
            p.requires_grad_(trainable.get(name, p.requires_grad))
    return names


def _lora_layers(model: nn.Module):
    from peft.tuners.lora import LoraLayer

    return [(name, module) for name, module in model.named_modules() if isinstance(module, LoraLayer)]


def has_lora(model: nn.Module) -> bool:
    try:
        return bool(_lora_layers(model))
    except ImportError:  # pragma: no cover
        return False


@torch.no_grad()
def merge_lora(model: nn.Module) -> int:
    """Fold every LoRA adapter into its base ``Linear`` and put the plain layer back (in place);
    returns how many layers were merged. The result has the state-dict keys of the original model."""
    layers = _lora_layers(model)
    for name, module in layers:
        module.merge()
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, module.get_base_layer())
    return len(layers)


def trainable_parameters(module: nn.Module) -> list[nn.Parameter]:
    return [p for p in module.parameters() if p.requires_grad]


OOM_ERRORS: tuple[type[BaseException], ...] = (torch.OutOfMemoryError,)


def is_out_of_memory(exc: BaseException) -> bool:
    """A device OOM (``torch.OutOfMemoryError``) or the CPU allocator failing."""
    return isinstance(exc, torch.OutOfMemoryError) or (
        isinstance(exc, RuntimeError) and "DefaultCPUAllocator: can't allocate memory" in str(exc)
    )


def out_of_memory_advice(cfg: MemoryConfig | None, batch_size: int | None = None, distributed: bool = False) -> str:
    """What to change after an out-of-memory error; options already on are not suggested."""
    cfg = cfg or MemoryConfig()
    tips = []
    if not cfg.lora_rank:
        tips.append("LoRA adapters instead of full fine-tuning (memory.lora_rank: 16)")
    if batch_size is None or batch_size > 1:
        tips.append("a smaller batch (batch_size" + (f", now {batch_size}" if batch_size else "") + ")")
    if not cfg.autocast_bf16:
        tips.append("bf16 autocast on CUDA (memory.autocast_bf16: true)")
    if not cfg.gradient_checkpointing:
        tips.append("activation checkpointing of the decoder layers (memory.gradient_checkpointing: true)")
    if not cfg.freeze_vision:
        tips.append("a frozen vision encoder (memory.freeze_vision: true)")
    if not cfg.release_teacher:
        tips.append("stage 2 without a second teacher copy (memory.release_teacher: true)")
    if not distributed:
        tips.append("several GPUs (torchrun, distributed.strategy: ddp or fsdp; docs/distributed.md)")
    return "try " + "; ".join(tips) if tips else "every memory option is already on: use a larger device"


class TrainingOutOfMemoryError(torch.OutOfMemoryError):
    """Out of memory during training, with advice on what to change."""
