"""Weights on disk: safetensors only (never pickle), strict loads, atomic saves.

Our checkpoint layout is a directory holding ``config.json`` (the resolved RunConfig) and one
``<component>.safetensors`` per network (``vae``, ``dit``, and ``image``, the first-frame model of image-first
t2v, where the config has one). ``builtin:<name>`` names a checkpoint shipped inside the package
(``magi/weights/<name>/``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from magi.config import RunConfig
from magi.errors import InputError
from magi.io.atomic import atomic_path, atomic_write_text

BUILTIN_PREFIX = "builtin:"
IMAGE_WEIGHTS = "image.safetensors"  # the first-frame model (RunConfig.image) in a checkpoint folder


def resolve_checkpoint_dir(location: str) -> Path:
    """``builtin:<name>`` -> the packaged directory; anything else is a path that must exist."""
    if location.startswith(BUILTIN_PREFIX):
        path = Path(__file__).resolve().parent.parent / "weights" / location[len(BUILTIN_PREFIX):]
    else:
        path = Path(location).expanduser()
    if not path.is_dir():
        raise InputError(f"checkpoint directory '{location}' does not exist")
    return path


def load_checkpoint_config(location: str) -> RunConfig:
    """The RunConfig a checkpoint (a folder, or ``builtin:<name>``) was saved with, its weights pointing at it."""
    path = resolve_checkpoint_dir(location) / "config.json"
    if not path.is_file():
        raise InputError(f"checkpoint '{location}' has no config.json")
    return replace(RunConfig.load(path), weights=location)


def builtin_available(location: str) -> bool:
    """Whether ``builtin:<name>`` weights ship with this installation."""
    if not location.startswith(BUILTIN_PREFIX):
        return False
    folder = Path(__file__).resolve().parent.parent / "weights" / location[len(BUILTIN_PREFIX):]
    return (folder / "dit.safetensors").is_file()


def read_safetensors(path: str | Path) -> dict[str, Tensor]:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"weights file '{path}' does not exist")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise InputError(f"cannot read weights '{path}': {error}") from None


def check_state_dict(module: nn.Module, state: dict[str, Tensor], source: str) -> None:
    """Raise one clear line if ``state`` does not match ``module`` exactly (names and shapes)."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if tuple(expected[k].shape) != tuple(state[k].shape))
    dtypes = sorted(k for k in set(expected) & set(state) if expected[k].dtype != state[k].dtype)
    if missing or unexpected or wrong or dtypes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if wrong:
            k = wrong[0]
            parts.append(f"{len(wrong)} with wrong shape (e.g. {k}: checkpoint {tuple(state[k].shape)} "
                         f"vs model {tuple(expected[k].shape)})")
        if dtypes:
            k = dtypes[0]
            parts.append(f"{len(dtypes)} of another dtype (e.g. {k}: checkpoint {state[k].dtype} vs model "
                         f"{expected[k].dtype}; convert it explicitly, e.g. magi quantize or a run's dtype)")
        raise InputError(f"checkpoint '{source}' does not match the config: " + "; ".join(parts))


def load_state(module: nn.Module, state: dict[str, Tensor], source: str) -> None:
    """Strictly load ``state`` into ``module`` after checking every name and shape."""
    check_state_dict(module, state, source)
    module.load_state_dict(state, strict=True)


def load_weights(module: nn.Module, path: str | Path) -> None:
    """Strictly load a safetensors file into ``module``."""
    load_state(module, read_safetensors(path), str(path))


def save_weights(path: str | Path, state: dict[str, Tensor], metadata: dict[str, str] | None = None) -> None:
    """Atomic safetensors write: temp file in the same directory, then rename."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def state_dict_bytes(state: dict[str, Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in state.values())



SAFETENSORS_INDEX = "model.safetensors.index.json"
SINGLE_SAFETENSORS = "model.safetensors"


def read_sharded_safetensors(folder: str | Path) -> dict[str, Tensor]:
    """Read a Hugging-Face-style checkpoint: ``model.safetensors.index.json`` (its ``weight_map`` names the
    shard of every tensor) or a single ``model.safetensors``. Strict: every indexed tensor must be in its
    shard and every tensor of a shard must be indexed (checked by ``LazyState.open``). Safetensors only."""
    state = LazyState.open(folder)
    return {name: state[name] for name in state}


class LazyState(Mapping[str, Tensor]):
    """A safetensors checkpoint (one file, or shards named by an index) read one tensor at a time: a tensor
    is read from its file when asked for, so that a loader holds one in host memory besides what it keeps.
    ``shape(name)`` reads only the header. Checked like ``read_sharded_safetensors`` when built."""

    def __init__(self, files: dict[str, Path]):
        self.files = files  # tensor name -> its file

    @classmethod
    def open(cls, location: str | Path) -> LazyState:
        """A safetensors file, or a folder with ``model.safetensors.index.json`` or ``model.safetensors``."""
        import json

        from safetensors import safe_open

        location = Path(location)
        if location.is_file():
            shards = {location.name: None}
            folder = location.parent
        else:
            folder, index_path = location, location / SAFETENSORS_INDEX
            if not index_path.is_file():
                if not (location / SINGLE_SAFETENSORS).is_file():
                    raise InputError(f"'{location}' has neither {SAFETENSORS_INDEX} nor {SINGLE_SAFETENSORS}")
                shards = {SINGLE_SAFETENSORS: None}
            else:
                try:
                    weight_map = json.loads(index_path.read_text())["weight_map"]
                except (ValueError, KeyError, TypeError) as error:
                    raise InputError(f"'{index_path}' is not a safetensors index (no weight_map): {error}") from None
                shards = {}
                for name, shard in weight_map.items():
                    shards.setdefault(shard, set()).add(name)
        files: dict[str, Path] = {}
        for shard, names in sorted(shards.items()):
            path = folder / shard
            if not path.is_file():
                hint = " (zstd-compressed shards are not supported: decompress them first)" \
                    if path.with_name(path.name + ".zst").is_file() else ""
                where = f"shard '{path}' named in {SAFETENSORS_INDEX}" if names is not None \
                    else f"weights file '{path}'"
                raise InputError(f"{where} does not exist{hint}")
            try:
                with safe_open(str(path), framework="pt") as handle:
                    present = set(handle.keys())
            except (SafetensorError, OSError) as error:
                raise InputError(f"cannot read weights '{path}': {error}") from None
            if names is not None and names - present:
                raise InputError(f"shard '{path}' lacks '{sorted(names - present)[0]}' listed in the index")
            if names is not None and present - names:
                raise InputError(f"shard '{path}' holds '{sorted(present - names)[0]}' not in the index")
            files.update(dict.fromkeys(present, path))
        return cls(files)

    def _read(self, name: str, what: Callable[[Any], Any]) -> Any:
        from safetensors import safe_open

        path = self.files[name]
        try:
            with safe_open(str(path), framework="pt") as handle:
                return what(handle)
        except (SafetensorError, OSError) as error:
            raise InputError(f"cannot read weights '{path}': {error}") from None

    def __getitem__(self, name: str) -> Tensor:
        return self._read(name, lambda handle: handle.get_tensor(name))

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._read(name, lambda handle: handle.get_slice(name).get_shape()))

    def __iter__(self) -> Iterator[str]:
        return iter(self.files)

    def __len__(self) -> int:
        return len(self.files)


def shape_of(state: Mapping[str, Tensor], name: str) -> tuple[int, ...]:
    """A tensor's shape without reading it from a ``LazyState``."""
    return state.shape(name) if isinstance(state, LazyState) else tuple(state[name].shape)


def write_sharded_safetensors(folder: str | Path, state: dict[str, Tensor], max_shard_bytes: int = 5 * 2**30,
                              metadata: dict[str, str] | None = None) -> list[str]:
    """Write ``state`` as ``model-0000i-of-0000n.safetensors`` shards plus ``model.safetensors.index.json``.

    Returns the shard file names."""
    import json

    folder = Path(folder)
    shards: list[list[str]] = [[]]
    size = 0
    for name in sorted(state):
        nbytes = state[name].numel() * state[name].element_size()
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(name)
        size += nbytes
    files = [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    weight_map = {}
    for file, names in zip(files, shards):
        save_weights(folder / file, {n: state[n] for n in names}, metadata)
        weight_map.update({n: file for n in names})
    index = {"metadata": {"total_size": state_dict_bytes(state)}, "weight_map": weight_map}
    atomic_write_text(folder / SAFETENSORS_INDEX, json.dumps(index, indent=2) + "\n")
    return files
