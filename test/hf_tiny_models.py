"""Tiny random-weight transformers VLMs (with real processors) for the HF-teacher tests.

Each builder makes a model of the real architecture class from its config (2-4 decoder layers,
width 64, a 2-layer vision tower on 32 px images) plus the family's real processor (a
word-level tokenizer trained with the ``tokenizers`` library on a few sentences + the family's
image processor), and ``save_pretrained``s both into one directory: exactly what a user's
downloaded model directory looks like, loaded back through the same code path users use.

Shared by the tests and usable by a benchmark: ``save_tiny_model("llava", path)``.
"""

from __future__ import annotations

import atexit
import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

# vision towers: 32 px images, patches of 8 -> a 4x4 grid
IMAGE_SIZE = 32
PATCH = 8
TEXT = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=512,
)
SENTENCES = [
    "move to the red cube",
    "go to the blue block",
    "pick up the green one and put it down",
    "in : what action should the robot take to move to the red cube ? out :",
    "user : describe the image assistant :",
    "reach the red cube touch the blue one",
]
INSTRUCTIONS = ["move to the red cube", "pick up the green one and put it down", "touch the blue one"]
FAMILIES = ("llava", "idefics3", "smolvlm", "paligemma", "qwen2_vl")
# the tokenizer's base vocabulary is padded with filler words to this size, so that an
# OpenVLA-style "last 256 ids are action bins" scheme has room below it for real words
BASE_VOCAB = 320


def tiny_tokenizer(special_tokens: list[str], bos: str = "<s>", eos: str = "</s>", pad: str = "<pad>"):
    """A word-level tokenizer trained on SENTENCES (+ filler words up to BASE_VOCAB), with the
    family's special tokens added as added tokens (as real checkpoints have them)."""
    from transformers import PreTrainedTokenizerFast

    base_specials = ["<unk>", bos, eos, pad]
    words = sorted({w for s in SENTENCES for w in s.split()})
    fillers = [f"w{i:03d}" for i in range(BASE_VOCAB - len(base_specials) - len(words))]
    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(vocab_size=BASE_VOCAB, special_tokens=base_specials, min_frequency=1)
    tok.train_from_iterator(SENTENCES + [" ".join(fillers)], trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos, eos_token=eos, pad_token=pad, unk_token="<unk>")
    fast.add_special_tokens({"additional_special_tokens": special_tokens})
    return fast


def _vocab(tokenizer) -> int:
    return len(tokenizer) + 8  # an embedding a little larger than the tokenizer, as real checkpoints often have


def build_llava(num_layers: int = 4):
    """LLaVA: CLIP tower -> MLP projector -> Llama (the OpenVLA/Prismatic layout, minus the fused DINO+SigLIP)."""
    from transformers import (
        CLIPImageProcessorPil,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    tokenizer = tiny_tokenizer(["<image>"])
    vision = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=IMAGE_SIZE,
        patch_size=PATCH,
        projection_dim=32,
    )
    text = LlamaConfig(
        **{**TEXT, "num_hidden_layers": num_layers},
        vocab_size=_vocab(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
    )
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=PATCH,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
    )
    return LlavaForConditionalGeneration(config), processor


def _idefics_layout(num_layers: int, vision_cls, config_cls, image_processor_cls):
    """Tokenizer, model config, image processor and image_seq_len of the Idefics3 layout (SigLIP-style
    tower -> pixel shuffle -> Llama), which Idefics3 and SmolVLM share under their own classes."""
    from transformers import LlamaConfig

    tokenizer = tiny_tokenizer(["<fake_token_around_image>", "<image>", "<end_of_utterance>", "<global-img>"])
    vision = vision_cls(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                        image_size=IMAGE_SIZE, patch_size=PATCH)
    text = LlamaConfig(
        **{**TEXT, "num_hidden_layers": num_layers}, vocab_size=_vocab(tokenizer), pad_token_id=tokenizer.pad_token_id
    )
    config = config_cls(
        vision_config=vision.to_dict(),
        text_config=text.to_dict(),
        scale_factor=2,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        pad_token_id=tokenizer.pad_token_id,
    )
    image_processor = image_processor_cls(
        do_image_splitting=False, size={"longest_edge": IMAGE_SIZE}, max_image_size={"longest_edge": IMAGE_SIZE}
    )
    seq_len = (IMAGE_SIZE // PATCH) ** 2 // 4  # 4, not SmolVLM's class default 169: a loader must read it from the file
    return tokenizer, config, image_processor, seq_len


def build_idefics3(num_layers: int = 4):
    """Idefics3 (SmolVLM's architecture)."""
    from transformers import (
        Idefics3Config,
        Idefics3ForConditionalGeneration,
        Idefics3ImageProcessorPil,
        Idefics3Processor,
        Idefics3VisionConfig,
    )

    tokenizer, config, image_processor, seq_len = _idefics_layout(
        num_layers, Idefics3VisionConfig, Idefics3Config, Idefics3ImageProcessorPil)
    processor = Idefics3Processor(image_processor=image_processor, tokenizer=tokenizer, image_seq_len=seq_len)
    return Idefics3ForConditionalGeneration(config), processor


def build_smolvlm(num_layers: int = 4):
    """SmolVLM: Idefics3's layout under its own classes; its processor also wants a video processor
    (torchvision) and num2words, so without torchvision this is the stand-in users get."""
    from transformers import (
        SmolVLMConfig,
        SmolVLMForConditionalGeneration,
        SmolVLMImageProcessorPil,
        SmolVLMProcessor,
        SmolVLMVisionConfig,
    )
    from transformers.utils import is_torchvision_available

    from actdistill_ros.teachers.processors import processor_class_without_video

    tokenizer, config, image_processor, seq_len = _idefics_layout(
        num_layers, SmolVLMVisionConfig, SmolVLMConfig, SmolVLMImageProcessorPil)
    if is_torchvision_available():
        from transformers import SmolVLMVideoProcessor

        processor = SmolVLMProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                     video_processor=SmolVLMVideoProcessor(), image_seq_len=seq_len)
    else:
        processor = processor_class_without_video(SmolVLMProcessor)(
            image_processor=image_processor, tokenizer=tokenizer, video_processor=None, image_seq_len=seq_len
        )
    return SmolVLMForConditionalGeneration(config), processor


def build_paligemma(num_layers: int = 4):
    """PaliGemma: SigLIP tower -> linear projector -> Gemma, with a bidirectional image+prompt prefix."""
    from transformers import (
        GemmaConfig,
        PaliGemmaConfig,
        PaliGemmaForConditionalGeneration,
        PaliGemmaProcessor,
        SiglipImageProcessorPil,
        SiglipVisionConfig,
    )

    tokenizer = tiny_tokenizer(["<image>"], bos="<bos>", eos="<eos>")
    image_processor = SiglipImageProcessorPil(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    image_processor.image_seq_length = (IMAGE_SIZE // PATCH) ** 2
    # the processor adds PaliGemma's 1024 <locNNNN> and 128 <segNNN> tokens: size the vocabulary after it
    processor = PaliGemmaProcessor(image_processor=image_processor, tokenizer=tokenizer)
    vision = SiglipVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=IMAGE_SIZE,
        patch_size=PATCH,
    )
    text = GemmaConfig(
        **{**TEXT, "num_hidden_layers": num_layers, "num_key_value_heads": 1},
        head_dim=16,
        vocab_size=_vocab(processor.tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    config = PaliGemmaConfig(
        vision_config=vision.to_dict(),
        text_config=text.to_dict(),
        projection_dim=64,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
    )
    return PaliGemmaForConditionalGeneration(config), processor


def build_qwen2_vl(num_layers: int = 4):
    """Qwen2-VL: native-resolution ViT with 2x2 patch merging -> Qwen2 with multimodal (3-D) rotary positions."""
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLImageProcessorPil, Qwen2VLProcessor
    from transformers.utils import is_torchvision_available

    from actdistill_ros.teachers.processors import processor_class_without_video

    tokenizer = tiny_tokenizer(
        ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"], bos="<|bos|>", eos="<|endoftext|>"
    )
    ids = {
        t: tokenizer.convert_tokens_to_ids(t)
        for t in ("<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")
    }
    text = {
        **TEXT,
        "num_hidden_layers": num_layers,
        "vocab_size": _vocab(tokenizer),
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
    }
    vision = dict(
        depth=2,
        embed_dim=32,
        hidden_size=64,
        num_heads=2,
        mlp_ratio=2,
        patch_size=PATCH,
        spatial_merge_size=2,
        temporal_patch_size=2,
    )
    config = Qwen2VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )
    image_processor = Qwen2VLImageProcessorPil(
        patch_size=PATCH,
        merge_size=2,
        temporal_patch_size=2,
        min_pixels=IMAGE_SIZE * IMAGE_SIZE,
        max_pixels=IMAGE_SIZE * IMAGE_SIZE,
    )
    if is_torchvision_available():
        processor = Qwen2VLProcessor(image_processor=image_processor, tokenizer=tokenizer)
    else:  # transformers 5.x cannot build this processor without torchvision (see teachers/processors.py)
        processor = processor_class_without_video(Qwen2VLProcessor)(
            image_processor=image_processor, tokenizer=tokenizer, video_processor=None
        )
    return Qwen2VLForConditionalGeneration(config), processor


BUILDERS: dict[str, Callable] = {
    "llava": build_llava,
    "idefics3": build_idefics3,
    "paligemma": build_paligemma,
    "qwen2_vl": build_qwen2_vl,
    "smolvlm": build_smolvlm,
}


def save_tiny_model(family: str, directory: str | Path, seed: int = 0, num_layers: int = 4) -> Path:
    """Build the tiny ``family`` model + processor with ``seed`` and save both to ``directory``."""
    torch.manual_seed(seed)
    model, processor = BUILDERS[family](num_layers)
    directory = Path(directory)
    model.save_pretrained(directory)
    if getattr(processor, "video_processor", True) is None:  # the no-torchvision stand-in cannot save itself:
        processor.tokenizer.save_pretrained(directory)  # write the files a hub checkpoint has
        processor.image_processor.save_pretrained(directory)
        path = directory / "preprocessor_config.json"
        path.write_text(
            json.dumps({**json.loads(path.read_text()), "processor_class": type(processor).__name__}, indent=2)
        )
        own = {key: getattr(processor, key) for key in ("image_seq_len",) if hasattr(processor, key)}
        (directory / "processor_config.json").write_text(  # the processor's own settings, as on the hub
            json.dumps({**own, "processor_class": type(processor).__name__}, indent=2)
        )
    else:
        processor.save_pretrained(directory)
    return directory


def add_openvla_stats(directory: str | Path, key: str = "tiny_robot") -> dict:
    """Write OpenVLA-style ``norm_stats`` (q01/q99 and a gripper mask) into the model's config.json."""
    path = Path(directory) / "config.json"
    config = json.loads(path.read_text())
    stats = {
        "action": {
            "q01": [-0.02, -0.03, -0.01, -0.1, -0.2, -0.3, 0.0],
            "q99": [0.02, 0.05, 0.03, 0.1, 0.2, 0.3, 1.0],
            "mean": [0.0] * 7,
            "std": [0.01] * 7,
            "mask": [True, True, True, True, True, True, False],
        }
    }
    config["norm_stats"] = {
        key: stats,
        "other_robot": {"action": {**stats["action"], "q01": [-1.0] * 7, "q99": [1.0] * 7}},
    }
    path.write_text(json.dumps(config, indent=2))
    return stats


def random_images(batch: int, seed: int = 0, size: int = IMAGE_SIZE) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (batch, size, size, 3), dtype=np.uint8)


_SHARED: dict[str, Path] = {}


def tiny_model_dir(family: str, openvla_stats: bool = False) -> Path:
    """A tiny saved ``family`` model shared by every test of this process (built once; treat it as
    read-only: copy it before changing files). ``openvla_stats`` adds OpenVLA-style norm_stats."""
    key = f"{family}{'_openvla' if openvla_stats else ''}"
    if key not in _SHARED:
        if "root" not in _SHARED:
            _SHARED["root"] = Path(tempfile.mkdtemp(prefix="hf_tiny_models_"))
            atexit.register(shutil.rmtree, _SHARED["root"], True)
        directory = save_tiny_model(family, _SHARED["root"] / key)
        if openvla_stats:
            add_openvla_stats(directory)
        _SHARED[key] = directory
    return _SHARED[key]


# ------------------------------------------------------------------------------------------------
# A Prismatic-like model shipped as remote code (what OpenVLA checkpoints are): no image token in
# the prompt, the projected patches are inserted right after BOS by the model's own forward.
# ------------------------------------------------------------------------------------------------

_PRISMATIC_CONFIG = """
from transformers import LlavaConfig


class TinyPrismaticConfig(LlavaConfig):
    model_type = "openvla"
"""

_PRISMATIC_MODEL = """
import torch
from transformers import LlavaForConditionalGeneration
from transformers.modeling_outputs import CausalLMOutputWithPast

from .configuration_tinyprismatic import TinyPrismaticConfig


class TinyPrismaticForActionPrediction(LlavaForConditionalGeneration):
    config_class = TinyPrismaticConfig

    def forward(self, input_ids=None, attention_mask=None, pixel_values=None, cache=None, use_cache=None,
                position_ids=None, **kwargs):
        embeds = self.get_input_embeddings()(input_ids)
        if pixel_values is not None:  # patches after BOS, as Prismatic does
            patches = self.model.get_image_features(pixel_values=pixel_values, vision_feature_layer=-1,
                                                    vision_feature_select_strategy="default").pooler_output
            patches = torch.stack(list(patches)).to(embeds.dtype)
            embeds = torch.cat([embeds[:, :1], patches, embeds[:, 1:]], dim=1)
            ones = attention_mask.new_ones(attention_mask.shape[0], patches.shape[1])
            attention_mask = torch.cat([attention_mask[:, :1], ones, attention_mask[:, 1:]], dim=1)
        out = self.model.language_model(inputs_embeds=embeds, attention_mask=attention_mask, cache=cache,
                                        use_cache=use_cache, position_ids=position_ids)
        return CausalLMOutputWithPast(logits=self.lm_head(out.last_hidden_state))
"""

_PRISMATIC_PROCESSOR = """
from transformers import ProcessorMixin
from transformers.feature_extraction_utils import BatchFeature


class TinyPrismaticProcessor(ProcessorMixin):
    def __init__(self, image_processor=None, tokenizer=None, **kwargs):
        super().__init__(image_processor, tokenizer)

    def __call__(self, text=None, images=None, return_tensors=None, **kwargs):
        pixels = self.image_processor(images, return_tensors=return_tensors)["pixel_values"]
        text_inputs = self.tokenizer(text, return_tensors=return_tensors, padding=True)
        return BatchFeature(data={**text_inputs, "pixel_values": pixels})
"""


def save_tiny_prismatic(directory: str | Path, seed: int = 0) -> Path:
    """A tiny OpenVLA-style remote-code model (model_type ``openvla``, auto_map to its own .py files),
    with OpenVLA-style norm_stats."""
    torch.manual_seed(seed)
    model, processor = build_llava()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    # transformers saves LLaVA's lm_head under its legacy name and renames it by model_type when
    # loading; under the new model_type that rename is gone, so store it under the name the class uses
    weights = load_file(str(directory / "model.safetensors"))
    weights["lm_head.weight"] = weights.pop("language_model.lm_head.weight")
    save_file(weights, str(directory / "model.safetensors"), metadata={"format": "pt"})
    processor.tokenizer.save_pretrained(directory)
    processor.image_processor.save_pretrained(directory)
    (directory / "configuration_tinyprismatic.py").write_text(_PRISMATIC_CONFIG)
    (directory / "modeling_tinyprismatic.py").write_text(_PRISMATIC_MODEL)
    (directory / "processing_tinyprismatic.py").write_text(_PRISMATIC_PROCESSOR)
    config = json.loads((directory / "config.json").read_text())
    config.update(
        model_type="openvla",
        architectures=["TinyPrismaticForActionPrediction"],
        auto_map={
            "AutoConfig": "configuration_tinyprismatic.TinyPrismaticConfig",
            "AutoModelForVision2Seq": "modeling_tinyprismatic.TinyPrismaticForActionPrediction",
        },
    )
    (directory / "config.json").write_text(json.dumps(config, indent=2))
    processor_config = {
        "processor_class": "TinyPrismaticProcessor",
        "auto_map": {"AutoProcessor": "processing_tinyprismatic.TinyPrismaticProcessor"},
    }
    (directory / "processor_config.json").write_text(json.dumps(processor_config, indent=2))
    for name in ("preprocessor_config.json", "tokenizer_config.json"):
        path = directory / name
        path.write_text(json.dumps({**json.loads(path.read_text()), **processor_config}, indent=2))
    add_openvla_stats(directory)
    return directory
