"""A transformers image-text-to-text model (LLaVA, Idefics3/SmolVLM, PaliGemma, Qwen2-VL, OpenVLA)
behind the :class:`~actdistill_ros.core.model.teacher.VLATeacher` interface.

``prepare`` runs the model's own processor on the prompt (so the image placeholder expansion and
every per-token field - attention mask, token types - are the processor's) and keeps the camera
image as uint8; ``embed`` runs the image processor and the model's forward up to decoder layer 0
(see :mod:`.decoder_stack`); ``run_layer`` replays one decoder layer; ``head`` is a pluggable
action head (:mod:`.action_heads`); decoding heads continue through the stack (:mod:`.decoding`).
Vision tokens are the positions of the image token id (or the
patches Prismatic inserts after BOS), text tokens are the other valid positions.

Prepared inputs keep the two keys the core's data code knows: ``pixels`` uint8 [B, S, S, 3] and
``input_ids`` [B, F, T] = the processor's F per-token fields (input_ids, attention_mask, ...),
right-padded to a fixed length so episodes concatenate.
"""

from __future__ import annotations

import inspect
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from ..core.model.teacher import ActionNormalizer, VLATeacher
from ..core.model.tiny_vla import images_to_uint8_batch
from ..core.typed_config import to_dict
from .decoder_stack import HFTokenBatch, RoutedKVCache, find_decoder_stack, record_layer_inputs
from .decoding import DecodingMixin
from .errors import HFTeacherError, explain_oom
from .families import FamilySpec
from .hf_action_heads import build_action_head
from .options import HFTeacherOptions
from .processors import TEXT_SIDE_EXCLUDED, image_placeholder, image_token_id, processor_image_size

CHECKPOINT_TYPE = "hf_vlm"
_PROMPT_CACHE_SIZE = 4096


class HFVLATeacher(DecodingMixin, VLATeacher):
    """A transformers VLM + action head as a layer-by-layer VLA teacher (see the module docstring)."""

    checkpoint_type = CHECKPOINT_TYPE

    def __init__(
        self,
        model: torch.nn.Module,
        processor: Any,
        family: FamilySpec,
        options: HFTeacherOptions,
        source: dict | None = None,
    ) -> None:
        super().__init__()
        options.validate()
        self.model = model
        self.processor = processor
        self.family = family
        self.source = dict(source or {})
        self._stack = find_decoder_stack(model)
        self.cfg = replace(options, image_size=options.image_size or processor_image_size(processor.image_processor))
        self._hidden_size = int(self._stack.language_model.embed_tokens.weight.shape[1])
        self.action_head = build_action_head(model, processor, self._hidden_size, self.cfg)
        self.normalizer = ActionNormalizer()
        forward_params = inspect.signature(model.forward).parameters
        self._cache_arg = "cache" if "cache" in forward_params else "past_key_values"
        self._takes_position_ids = "position_ids" in forward_params
        self._placeholder = image_placeholder(processor, model.config, family)
        self.image_token_id = image_token_id(processor) if family.vision_layout == "placeholder" else None
        tokenizer = processor.tokenizer
        self._pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self._prompts: dict[str, torch.Tensor] = {}
        self._check_and_probe()

    # ------------------------------------------------------------------ VLATeacher interface

    @property
    def layers(self) -> torch.nn.ModuleList:
        return self._stack.layers

    @property
    def final_norm(self) -> torch.nn.Module:
        return self._stack.norm

    @property
    def hidden_size(self) -> int:
        return self._hidden_size

    @property
    def chunk_size(self) -> int:
        return self.cfg.chunk_size

    @property
    def image_size(self) -> int:
        return self.cfg.image_size

    @property
    def description(self) -> str:
        return f"{type(self.model).__name__} ({self.family.name}, {self.cfg.head} head)"

    @property
    def lm_head(self) -> torch.nn.Module:
        return self.model.get_output_embeddings()

    def prepare(self, images, instructions: list[str]) -> dict[str, torch.Tensor]:
        pixels = images_to_uint8_batch(images, self.image_size)
        instructions = list(instructions)
        if len(instructions) != pixels.shape[0]:
            raise ValueError(f"{pixels.shape[0]} images but {len(instructions)} instructions")
        return {"pixels": pixels, "input_ids": torch.stack([self._encode(text) for text in instructions])}

    def embed(self, inputs: dict[str, torch.Tensor]) -> HFTokenBatch:
        with explain_oom("the embedding pass (vision tower, projector, token embeddings)"):
            model_inputs, valid = self._model_inputs(inputs)
            return self._embed(model_inputs, valid, inputs, with_cache=self._decodes)

    def run_layer(self, index: int, hidden: torch.Tensor, batch: HFTokenBatch) -> torch.Tensor:
        args, kwargs = batch.calls[index]
        with explain_oom(f"decoder layer {index}"):
            out = self.layers[index](hidden, *args, **kwargs)
        batch.mark_executed(index)
        return out[0] if isinstance(out, tuple) else out

    @property
    def _decodes(self) -> bool:
        return bool(getattr(self.action_head, "decodes", False))

    def head(self, hidden: torch.Tensor, batch: HFTokenBatch) -> torch.Tensor:
        with explain_oom("the action head"):
            if self._decodes:
                return self.action_head(self, hidden, batch)
            return super().head(hidden, batch)

    def head_loss(self, hidden: torch.Tensor, batch: HFTokenBatch, target: torch.Tensor) -> torch.Tensor:
        with explain_oom("the action head's task loss"):
            if self._decodes:
                return self.action_head.loss(self, hidden, batch, target)
            return super().head_loss(hidden, batch, target)

    def vision_parameters(self) -> list[torch.nn.Parameter]:
        """The vision tower (not the projector into the decoder width, not the language model)."""
        for name in ("vision_tower", "visual", "vision_model", "vision_backbone"):
            for module_name, module in self.model.named_modules():
                if module_name.rsplit(".", 1)[-1] == name:
                    return list(module.parameters())
        raise NotImplementedError(
            f"{type(self.model).__name__}: no vision tower found (vision_tower / visual / "
            "vision_model / vision_backbone)"
        )

    # ------------------------------------------------------------------ prompts and inputs

    def prompt(self, instruction: str) -> str:
        text = instruction.strip()
        if self.family.lowercase_instruction:
            text = text.lower()
        template = self.cfg.prompt or self.family.default_prompt
        return template.replace("{image}", self._placeholder).replace("{instruction}", text)

    def _process(self, images: list[np.ndarray], texts: list[str]) -> dict[str, torch.Tensor]:
        batch = [[image] for image in images] if self.family.image_batching == "nested" else list(images)
        return dict(self.processor(images=batch, text=texts, return_tensors="pt"))

    def _blank(self) -> np.ndarray:
        return np.zeros((self.image_size, self.image_size, 3), np.uint8)

    def _encode(self, instruction: str) -> torch.Tensor:
        """Per-token fields [F, max_length] of one instruction's prompt (cached per instruction)."""
        if not isinstance(instruction, str) or not instruction.strip():
            raise ValueError("instruction is empty")
        cached = self._prompts.get(instruction)
        if cached is not None:
            return cached
        out = self._process([self._blank()], [self.prompt(instruction)])
        fields = self._token_fields_of(out)
        if fields.shape[1] > self.max_length:
            raise ValueError(
                f"instruction {instruction!r} makes a prompt of {fields.shape[1]} tokens; this teacher takes "
                f"at most {self.max_length} (hf_teacher.max_text_tokens={self.cfg.max_text_tokens})"
            )
        padded = torch.zeros(len(self.token_fields), self.max_length, dtype=torch.long)
        padded[0] = self._pad_id
        padded[:, : fields.shape[1]] = fields
        if len(self._prompts) < _PROMPT_CACHE_SIZE:
            self._prompts[instruction] = padded
        return padded

    def _token_fields_of(self, out: dict[str, torch.Tensor]) -> torch.Tensor:
        length = out["input_ids"].shape[1]
        rows = [
            out[name][0].long() if name in out else torch.ones(length, dtype=torch.long) for name in self.token_fields
        ]
        fields = torch.stack(rows)
        end = self.family.prompt_end_token
        if end:
            tokenizer = self.processor.tokenizer
            end_id = tokenizer.convert_tokens_to_ids(end)
            known = end_id is not None and end_id != tokenizer.unk_token_id
            if known and int(fields[0, -1]) != end_id:
                extra = torch.zeros(len(self.token_fields), 1, dtype=torch.long)
                extra[0, 0], extra[1, 0] = end_id, 1
                fields = torch.cat([fields, extra], dim=1)
        return fields

    @property
    def device(self) -> torch.device:
        return self._stack.language_model.embed_tokens.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self._stack.language_model.embed_tokens.weight.dtype

    def _model_inputs(self, inputs: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Prepared inputs -> the model's keyword inputs (padding columns trimmed) and the valid mask [B, T]."""
        fields, pixels = inputs["input_ids"], inputs["pixels"]
        if fields.ndim != 3 or fields.shape[1] != len(self.token_fields):
            raise ValueError(
                f"input_ids must be the [B, {len(self.token_fields)}, T] token fields made by prepare() "
                f"({', '.join(self.token_fields)}), got shape {list(fields.shape)}"
            )
        mask = fields[:, 1] > 0
        lengths = mask.sum(1)
        length = int(lengths.max())
        if not torch.equal(mask[:, :length], torch.arange(length, device=mask.device)[None] < lengths[:, None]):
            raise ValueError("token fields must be right-padded (valid tokens first)")
        device = self.device
        model_inputs = {name: fields[:, k, :length].to(device) for k, name in enumerate(self.token_fields)}
        model_inputs.update(self._image_inputs(pixels))
        return model_inputs, mask[:, :length].to(device)

    def _image_inputs(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        array = pixels.cpu().numpy() if isinstance(pixels, torch.Tensor) else np.asarray(pixels)
        expected = (self.image_size, self.image_size, 3)
        if array.ndim != 4 or tuple(array.shape[1:]) != expected or array.dtype != np.uint8:
            raise ValueError(
                f"pixels must be uint8 [B, {expected[0]}, {expected[1]}, 3] (from prepare()), got "
                f"{array.dtype} {list(array.shape)}"
            )
        out = self._process(list(array), [self._filler_prompt] * len(array))
        return {
            k: (v.to(self.device, self.dtype) if v.is_floating_point() else v.to(self.device))
            for k, v in out.items()
            if k in self.image_fields
        }

    def _embed(self, model_inputs: dict, valid: torch.Tensor, prepared: dict | None, with_cache: bool) -> HFTokenBatch:
        cache = RoutedKVCache() if with_cache else None
        rec = record_layer_inputs(
            self.model, self._stack, {**model_inputs, self._cache_arg: cache, "use_cache": cache is not None}
        )
        hidden = rec.hidden
        batch_size, length = valid.shape
        ids = model_inputs["input_ids"]
        if hidden.shape[1] == length:
            vision = (
                (ids == self.image_token_id) & valid if self.image_token_id is not None else torch.zeros_like(valid)
            )
        elif self.family.vision_layout == "after_bos" and hidden.shape[1] > length:
            extra = hidden.shape[1] - length  # patch embeddings inserted after BOS
            ones = torch.ones(batch_size, extra, dtype=torch.bool, device=valid.device)
            vision = torch.cat([torch.zeros_like(valid[:, :1]), ones, torch.zeros_like(valid[:, 1:])], dim=1)
            valid = torch.cat([valid[:, :1], ones, valid[:, 1:]], dim=1)
        else:
            raise HFTeacherError(
                f"{type(self.model).__name__}: {hidden.shape[1]} token states for {length} input tokens; "
                f"the {self.family.name} vision layout {self.family.vision_layout!r} does not explain it"
            )
        lengths = valid.sum(1).cpu()
        positions = rec.lm_kwargs.get("position_ids")
        if positions is None:
            positions = rec.calls[0][1].get("position_ids")
        if positions is None:
            positions = torch.arange(hidden.shape[1])[None]
        if positions.ndim == 3:  # multimodal rotary (t, h, w): text continues after the largest
            positions = positions.max(0).values
        positions = positions.cpu().expand(batch_size, -1)
        last_position = positions[torch.arange(batch_size), lengths - 1]
        return HFTokenBatch(
            hidden=hidden,
            vision_mask=vision,
            text_mask=valid & ~vision,
            attention_mask=valid,
            layer_kwargs=rec.calls[0][1],
            calls=rec.calls,
            lengths=lengths,
            last_position=last_position,
            cache=cache,
            prompt=prepared,
            executed=torch.zeros(batch_size, self.num_layers, dtype=torch.bool),
        )

    # ------------------------------------------------------------------ checks

    def _check_and_probe(self) -> None:
        """Processor vs model consistency, the processor's per-token fields, and one real pass."""
        config, tokenizer = self.model.config, self.processor.tokenizer
        rows = self._stack.language_model.embed_tokens.weight.shape[0]
        if len(tokenizer) > rows:
            raise HFTeacherError(
                f"processor does not match the model: the tokenizer has {len(tokenizer)} tokens but "
                f"the model's embedding has {rows} rows"
            )
        if self.family.vision_layout == "placeholder":
            model_id = getattr(config, "image_token_id", None)
            if model_id is None:
                model_id = getattr(config, "image_token_index", None)
            if self.image_token_id is None:
                raise HFTeacherError(f"the {type(self.processor).__name__} has no image token id")
            if model_id is not None and int(model_id) != int(self.image_token_id):
                raise HFTeacherError(
                    f"processor does not match the model: the processor writes image token id {self.image_token_id} "
                    f"({getattr(self.processor, 'image_token', '?')!r}) but the model's config expects "
                    f"image_token_id {model_id}"
                )
        out = self._process([self._blank()], [self.prompt("go")])
        length = out["input_ids"].shape[1]
        extra = sorted(
            k
            for k, v in out.items()
            if k not in ("input_ids", "attention_mask")
            and k not in TEXT_SIDE_EXCLUDED
            and isinstance(v, torch.Tensor)
            and not v.is_floating_point()
            and tuple(v.shape) == (1, length)
        )
        self.token_fields = ["input_ids", "attention_mask", *extra]
        self.image_fields = sorted(k for k in out if k not in self.token_fields and k != "labels")
        self._filler_prompt = self.prompt("go")
        self.max_length = length + (1 if self.family.prompt_end_token else 0) + self.cfg.max_text_tokens
        try:
            with torch.no_grad():
                self.embed(self.prepare(self._blank()[None], ["go"]))
        except (ValueError, RuntimeError, IndexError) as exc:
            raise HFTeacherError(
                f"processor does not match the model: a test pass failed ({type(exc).__name__}: {exc})"
            ) from exc

    # ------------------------------------------------------------------ provenance

    def checkpoint_spec(self) -> dict:
        return {
            "type": CHECKPOINT_TYPE,
            "family": self.family.name,
            "model_class": type(self.model).__name__,
            "options": to_dict(self.cfg),
            "source": {k: v for k, v in self.source.items() if k != "loaded_from"},
        }
