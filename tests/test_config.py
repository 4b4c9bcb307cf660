import json

import pytest
import torch

from magi.config import RunConfig, SamplerConfig, apply_overrides
from magi.models.dit import DiT
from magi.presets import PRESETS, PUBLISHED_DIT_PARAMS, get_preset


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_validates_and_round_trips(name):
    cfg = get_preset(name)
    assert RunConfig.from_dict(json.loads(cfg.to_json())) == cfg


def test_overrides_are_typed():
    cfg = apply_overrides(get_preset("tiny"), ["sampler.steps=16", "dit.gated_ffn=false",
                                               "sampler.text_scales=1,2,3,4,5",
                                               "text.kind=hash"])
    assert cfg.sampler.steps == 16 and cfg.dit.gated_ffn is False and cfg.text.kind == "hash"
    assert cfg.sampler.text_scales == (1.0, 2.0, 3.0, 4.0, 5.0)


@pytest.mark.parametrize("bad", ["sampler.stepz=3", "sampler.steps=abc", "sampler=3", "text.kind=bert", "nokey"])
def test_bad_overrides_raise(bad):
    with pytest.raises(ValueError):
        apply_overrides(get_preset("tiny"), [bad])


def test_validation_names_the_numbers():
    with pytest.raises(ValueError, match="steps=10.*window_size=4"):
        SamplerConfig(steps=10, window_size=4)
    with pytest.raises(ValueError, match="unknown config key"):
        RunConfig.from_dict({"sampler": {"nope": 1}})
    with pytest.raises(ValueError, match="stochasticity=1.5 is not in"):
        SamplerConfig(stochasticity=1.5)
    with pytest.raises(ValueError, match="magi1 integrates the ODE"):
        SamplerConfig(procedure="magi1", stochasticity=0.5)


@pytest.mark.parametrize("name", sorted(PUBLISHED_DIT_PARAMS))
def test_published_sizes_on_meta_device(name):
    with torch.device("meta"):
        dit = DiT(get_preset(name).dit)
    count = sum(p.numel() for p in dit.parameters())
    assert abs(count / PUBLISHED_DIT_PARAMS[name] - 1) < 0.02, count
