"""TinyVLA's options: the convolutional stem, normalised vision tokens, the word tokenizer and
padding that changes no output."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from actdistill_ros.core.config import TinyVLAConfig
from actdistill_ros.core.model.checkpoint import load_teacher, save_teacher
from actdistill_ros.core.model.tiny_vla import MIN_TEXT_TOKENS, ByteTokenizer, HashWordTokenizer, TinyVLA
from actdistill_ros.core.typed_config import ConfigError, from_dict

from core_helpers import TINY

IMAGES = np.random.default_rng(0).integers(0, 255, (2, 32, 32, 3), dtype=np.uint8)
WORDS = replace(TINY, vision_stem="conv", vision_norm=True, tokenizer="words", max_text_tokens=12)


def _model(cfg: TinyVLAConfig, seed: int = 0) -> TinyVLA:
    torch.manual_seed(seed)
    return TinyVLA(cfg).eval()


def test_conv_stem_gives_the_patch_grid_and_normalised_tokens():
    model = _model(WORDS)
    batch = model.embed(model.prepare(IMAGES, ["reach the red cube", "go to the blue block"]))
    vision = batch.hidden[batch.vision_mask].view(2, -1, TINY.hidden_size)
    assert vision.shape[1] == (TINY.image_size // TINY.patch_size) ** 2 == model.num_vision_tokens
    # LayerNorm: every vision token has zero mean and unit variance over its channels
    torch.testing.assert_close(vision.mean(-1), torch.zeros(2, vision.shape[1]), atol=1e-5, rtol=0)
    torch.testing.assert_close(vision.var(-1, unbiased=False), torch.ones(2, vision.shape[1]), atol=1e-3, rtol=0)
    assert torch.isfinite(model(model.prepare(IMAGES, ["a", "b"]))).all()


def test_stem_options_are_checked():
    with pytest.raises(ConfigError, match="power of 2"):
        from_dict(TinyVLAConfig, {"image_size": 48, "patch_size": 12, "vision_stem": "conv"})
    with pytest.raises(ConfigError, match="unknown stem"):
        from_dict(TinyVLAConfig, {"vision_stem": "vit"})
    with pytest.raises(ConfigError, match="unknown tokenizer"):
        from_dict(TinyVLAConfig, {"tokenizer": "sentencepiece"})


def test_word_tokenizer_one_token_per_word_case_insensitive():
    tokenizer = HashWordTokenizer(12)
    a, b = tokenizer.encode("Reach the RED cube!"), tokenizer.encode("reach the red cube !")
    assert a == b and len(a) == 2 + 5  # BOS, 4 words and "!", EOS
    assert len({*tokenizer.encode("red green blue")[1:-1]}) == 3
    assert all(ByteTokenizer.OFFSET <= t < tokenizer.vocab_size for t in a[1:-1])
    assert len(tokenizer.encode(" ".join(["word"] * 256))) == 258  # at least 256 words, whatever max_tokens
    long_sentence = "please move the gripper slowly over to the small red cube on the left side of the table"
    assert len(long_sentence.encode()) > 80 and len(HashWordTokenizer(24).encode(long_sentence)) == 2 + 18


def test_text_beyond_the_limit_is_truncated_with_one_warning(caplog):
    tokenizer = ByteTokenizer(32)
    assert tokenizer.max_tokens == MIN_TEXT_TOKENS == 258  # a short config still reads 256 bytes
    text = "go to the blue block, please \N{ROBOT FACE} " * 12  # 400 bytes, with emojis
    with caplog.at_level("WARNING"):
        ids = tokenizer.encode(text)
        assert tokenizer.encode(text) == ids  # the same truncation, no second warning
    assert len(ids) == 258 and ids[1:-1] == tokenizer.pieces(text.strip())[:256]
    warnings = [r.getMessage() for r in caplog.records if "this model reads the first 256" in r.getMessage()]
    assert len(warnings) == 1 and f"{len(text.strip().encode())} bytes long" in warnings[0], warnings


def test_padding_width_changes_no_output():
    """Texts are padded to the longest in the call; padding is masked out of attention."""
    model = _model(WORDS)
    short = model.prepare(IMAGES[:1], ["go to the red cube"])
    padded = model.prepare(np.concatenate([IMAGES[:1], IMAGES[1:]]),
                           ["go to the red cube", "go to the red cube on the left side please"])
    assert short["input_ids"].shape[1] < padded["input_ids"].shape[1]
    with torch.no_grad():
        torch.testing.assert_close(model(short)[0], model(padded)[0], atol=1e-5, rtol=1e-5)


def test_new_options_round_trip_and_old_configs_keep_their_meaning(tmp_path):
    model = _model(WORDS)
    save_teacher(model, tmp_path / "t")
    loaded = load_teacher(tmp_path / "t")
    inputs = model.prepare(IMAGES, ["reach the red cube", "go"])
    with torch.no_grad():
        assert torch.equal(model(inputs), loaded(inputs))
    # a config written before these options existed: patch stem, no norm, bytes
    old = from_dict(TinyVLAConfig, {k: v for k, v in TINY.__dict__.items()
                                    if k not in ("vision_stem", "conv_channels", "vision_norm", "tokenizer")})
    assert (old.vision_stem, old.vision_norm, old.tokenizer) == ("patch", False, "bytes")
