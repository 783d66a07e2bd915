"""The VLM families the adapter knows, and the little each one needs beyond the generic code.

Everything else is found generically: the decoder stack is the ``layers`` ModuleList of the
language model (the module holding ``embed_tokens``, ``layers`` and ``norm``), the inputs of
every decoder layer are recorded from the model's own forward, vision tokens are the positions
holding the config's image token id (or, for Prismatic/OpenVLA, the patches the model inserts
after BOS). To add a family, add a :class:`FamilySpec` to ``FAMILIES`` below.
"""

from __future__ import annotations

from dataclasses import dataclass, field

OPENVLA_PROMPT = "In: What action should the robot take to {instruction}?\nOut:"
DEFAULT_PROMPT = "{image}What action should the robot take to {instruction}?"


@dataclass(frozen=True)
class FamilySpec:
    name: str
    model_types: tuple[str, ...]  # config.json ``model_type`` values
    example: str  # a public checkpoint of this family (for messages and docs)
    default_prompt: str = DEFAULT_PROMPT
    # how the processor wants one image per prompt: "flat" ([img, img]) or "nested" ([[img], [img]])
    image_batching: str = "flat"
    # "placeholder": vision tokens are the input positions holding the config's image token id;
    # "after_bos": the model inserts the patch embeddings right after BOS (Prismatic / OpenVLA)
    vision_layout: str = "placeholder"
    # extra tokens around the image placeholder the processor expects in the text
    image_prefix_token_attr: str = ""  # config attribute holding a token id put before the placeholder
    image_suffix_token_attr: str = ""  # ... and after it
    # value of per-token processor fields for generated (suffix) tokens when a sequence is
    # re-run without a cache (PaliGemma: token_type_ids 1 = causal suffix); others get 0, mask 1
    generated_token_fields: dict[str, int] = field(default_factory=dict)
    lowercase_instruction: bool = False  # OpenVLA lower-cases the instruction in its prompt
    # a token the prompt must end with (OpenVLA appends Llama's empty "\u2581" token, id 29871, when missing)
    prompt_end_token: str = ""
    needs_remote_code: bool = False


FAMILIES: tuple[FamilySpec, ...] = (
    FamilySpec(
        "llava",
        ("llava",),
        "llava-hf/llava-1.5-7b-hf",
        default_prompt="{image}\nWhat action should the robot take to {instruction}?",
    ),
    FamilySpec("idefics3", ("idefics3", "smolvlm"), "HuggingFaceTB/SmolVLM-256M-Instruct", image_batching="nested"),
    FamilySpec("paligemma", ("paligemma",), "google/paligemma-3b-pt-224", generated_token_fields={"token_type_ids": 1}),
    FamilySpec(
        "qwen2_vl",
        ("qwen2_vl", "qwen2_5_vl"),
        "Qwen/Qwen2-VL-2B-Instruct",
        image_prefix_token_attr="vision_start_token_id",
        image_suffix_token_attr="vision_end_token_id",
    ),
    FamilySpec(
        "openvla",
        ("openvla", "prismatic"),
        "openvla/openvla-7b",
        default_prompt=OPENVLA_PROMPT,
        vision_layout="after_bos",
        lowercase_instruction=True,
        prompt_end_token="\u2581",
        needs_remote_code=True,
    ),
)


def family_for(model_type: str) -> FamilySpec | None:
    for family in FAMILIES:
        if model_type in family.model_types:
            return family
    return None


def describe_supported() -> str:
    return "; ".join(f"{f.name} (model_type {'/'.join(f.model_types)}, e.g. {f.example})" for f in FAMILIES)


HOW_TO_ADD = (
    "To add an architecture, add a FamilySpec to actdistill_ros/teachers/families.py: its model_type, the prompt "
    "with the image placeholder, how the processor batches images and where the vision tokens sit. The decoder "
    "layers are found generically (the language model's `layers` ModuleList beside `embed_tokens` and `norm`)."
)
