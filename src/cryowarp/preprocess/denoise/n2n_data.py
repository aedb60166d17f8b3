"""Noise2Noise training pairs collected from the items of a processing folder.

Every item that motion correction wrote with odd/even half-averages
(``average/odd/<name>.mrc``, ``average/even/<name>.mrc``, docs/motion.md) and whose CTF was
estimated (``ctf/<name>_ctf.json``, docs/ctf.md) gives one pair, prepared exactly as the
denoiser sees micrographs when it is applied (:func:`prepare_pair`):

1. both halves are Fourier-cropped to the working pixel size
   (:func:`cryowarp.core.resize.rescale_to_pixel_size`; 4 Å/px for the default model);
2. each is deconvolved with the item's CTF
   (:func:`~cryowarp.preprocess.denoise.deconvolution.deconvolve`; by default with the
   settings of the denoiser's inputs,
   :data:`~cryowarp.preprocess.denoise.deconvolution.DENOISER_INPUT_DECONVOLUTION`);
3. both are normalised by the mean and standard deviation of their average
   (:func:`~cryowarp.preprocess.denoise.n2n_inference.normalisation`), one scale for the
   two halves so that each stays an unbiased target for the other.

Items are found with :func:`~cryowarp.preprocess.export.sources.scan_processing_folder`
(``motion/<name>.json``); the newest (movie time) come first, up to ``max_examples``. Items
without odd/even averages or without a usable CTF, and items whose files cannot be read, are
skipped with a reason (``on_skipped``) and the others go on. Docs:
docs/denoising_training.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cryowarp.core.ctf_params import CTFParams
from cryowarp.core.resize import rescale, rescaled_shape
from cryowarp.errors import (
    CryowarpInputError,
    DimensionMismatchError,
    InvalidValuesError,
    MissingFileError,
)
from cryowarp.io.mrc import read_mrc
from cryowarp.preprocess.denoise.deconvolution import (
    DENOISER_INPUT_DECONVOLUTION,
    DeconvolutionSettings,
    SupportsCtfParams,
    deconvolve,
)
from cryowarp.preprocess.denoise.n2n_inference import Normalisation, normalisation
from cryowarp.preprocess.export.sources import MicrographSource, scan_processing_folder

__all__ = [
    "DEFAULT_MAX_EXAMPLES",
    "DEFAULT_MIN_EXAMPLES",
    "SkippedItem",
    "TrainingPair",
    "collect_training_pairs",
    "prepare_pair",
]

DEFAULT_MAX_EXAMPLES = 32
"""Items used at most (a 4 Å/px K3 pair is 2 × 1200 × 830 px: 32 pairs hold ~250 MB)."""
DEFAULT_MIN_EXAMPLES = 4
"""Fewer usable items than this is an error."""


@dataclass(frozen=True, eq=False)
class TrainingPair:
    """One micrograph's prepared odd/even halves (module docstring).

    ``train_denoiser(network, [(p.odd, p.even) for p in pairs])`` trains on them.

    Attributes
    ----------
    name:
        The item's name (movie stem).
    odd, even:
        ``(h, w)`` float32, Fourier-cropped to ``pixel_size_a``, deconvolved, normalised so
        that ``(odd + even) / 2`` has mean 0 and standard deviation 1.
    pixel_size_a:
        The working pixel size achieved (Å; x axis).
    scale:
        The normalisation applied (``scale.undo`` returns to deconvolved values).
    odd_path, even_path:
        The files read (``None`` for in-memory data).
    """

    name: str
    odd: torch.Tensor  # (h, w)
    even: torch.Tensor  # (h, w)
    pixel_size_a: float
    scale: Normalisation
    odd_path: Path | None = None
    even_path: Path | None = None


@dataclass(frozen=True)
class SkippedItem:
    """An item that gave no training pair, and why."""

    name: str
    path: Path | None
    reason: str


def prepare_pair(
    odd: torch.Tensor,  # (h, w)
    even: torch.Tensor,  # (h, w)
    *,
    pixel_size_a: float,
    ctf: CTFParams | SupportsCtfParams,
    working_pixel_size_a: float = 4.0,
    deconvolution: DeconvolutionSettings | None = None,
    source: str | Path | None = None,
) -> tuple[torch.Tensor, torch.Tensor, float, Normalisation]:
    """Fourier-crop, deconvolve and normalise one odd/even pair (module docstring).

    Parameters
    ----------
    odd, even:
        ``(h, w)`` half-averages at ``pixel_size_a`` Å/px (same shape).
    pixel_size_a:
        Their pixel size (Å).
    ctf:
        The item's CTF (a ``CtfResult`` or :class:`CTFParams`; its pixel size is replaced).
    working_pixel_size_a:
        Pixel size (Å) to Fourier-crop (or pad) to; sizes are rounded to whole pixels.
    deconvolution:
        Filter settings; default the denoiser-input settings (Warp's "pre-deconvolved").
    source:
        Named in errors.

    Returns
    -------
    odd, even, achieved_pixel_size_a, scale
        ``(h', w')`` float32 images on the device of ``odd``, the pixel size achieved along x
        and the normalisation applied.

    Raises
    ------
    DimensionMismatchError
        The halves differ in shape.
    InvalidValuesError
        Non-finite or constant images, or a non-positive pixel size.
    """
    if odd.dim() != 2 or odd.shape != even.shape:
        raise DimensionMismatchError(
            source,
            f"the odd {tuple(odd.shape)} and even {tuple(even.shape)} half-averages must be "
            "(h, w) images of one shape",
        )
    if not (pixel_size_a > 0 and working_pixel_size_a > 0):
        raise InvalidValuesError(
            source, f"pixel sizes must be positive, got {pixel_size_a}, {working_pixel_size_a} Å"
        )
    shape = (int(odd.shape[0]), int(odd.shape[1]))
    new_shape = rescaled_shape(
        shape, pixel_size_a=pixel_size_a, new_pixel_size_a=working_pixel_size_a
    )
    achieved_a = pixel_size_a * shape[1] / new_shape[1]
    settings = deconvolution if deconvolution is not None else DENOISER_INPUT_DECONVOLUTION
    halves = torch.stack([odd, even]).to(torch.float32)
    if not bool(torch.isfinite(halves).all()):
        raise InvalidValuesError(source, "the half-averages contain NaN or infinite values")
    if new_shape != shape:
        halves = rescale(halves, new_shape)
    halves = deconvolve(halves, pixel_size_a=achieved_a, ctf=ctf, settings=settings)
    scale = normalisation(halves[0], halves[1], source=source)
    normalised = scale.apply(halves)
    return normalised[0], normalised[1], achieved_a, scale


def collect_training_pairs(
    folder: str | Path,
    *,
    max_examples: int = DEFAULT_MAX_EXAMPLES,
    pixel_size_a: float = 4.0,
    deconvolution: DeconvolutionSettings | None = None,
    min_examples: int = DEFAULT_MIN_EXAMPLES,
    ctf_dir: str | Path | None = None,
    on_skipped: Callable[[SkippedItem], None] | None = None,
) -> list[TrainingPair]:
    """Prepared odd/even pairs of the newest usable items of a processing folder.

    Parameters
    ----------
    folder:
        A processing folder (``motion/``, ``average/``, ``ctf/`` as cryowarp writes them).
    max_examples:
        Items used at most, newest first (movie modification time; name breaks ties).
    pixel_size_a:
        Working pixel size (Å) of the pairs: that of the model to train.
    deconvolution:
        Deconvolution of the halves; default the denoiser-input settings.
    min_examples:
        Fewer usable items is an error.
    ctf_dir:
        Where the ``<name>_ctf.json`` files are (default ``folder/ctf``).
    on_skipped:
        Called once per item that gives no pair, with the reason.

    Returns
    -------
    list[TrainingPair]
        Newest first, CPU float32.

    Raises
    ------
    MissingFileError
        ``folder`` is not a folder, holds no processed items, or none of its items has odd/even
        half-averages (the hint says to run motion correction with them).
    InvalidValuesError
        Fewer than ``min_examples`` usable items (the message gives both numbers).
    """
    if max_examples < 1 or min_examples < 1:
        raise ValueError(
            f"max_examples and min_examples must be ≥ 1: {max_examples}, {min_examples}"
        )
    root = Path(folder)
    sources, problems = scan_processing_folder(
        root, ctf_dir=Path(ctf_dir) if ctf_dir is not None else None
    )
    skipped: list[SkippedItem] = [SkippedItem(p.path.stem, p.path, p.message) for p in problems]
    if not sources:
        _report(skipped, on_skipped)
        raise MissingFileError(
            root / "motion",
            "no processed items (motion/<name>.json) to take training pairs from",
            "run cryowarp motion (with odd/even averages) and cryowarp ctf first",
        )
    with_halves = [s for s in sources if s.odd_path is not None and s.even_path is not None]
    if not with_halves:
        skipped += [_skip(s, "no odd/even half-averages") for s in sources]
        _report(skipped, on_skipped)
        raise MissingFileError(
            root / "average" / "odd",
            f"none of the {len(sources)} processed items has odd/even half-averages "
            "(average/odd/<name>.mrc, average/even/<name>.mrc)",
            "re-run cryowarp motion with odd/even averages (--odd-even, the default)",
        )
    pairs: list[TrainingPair] = []
    for source in sorted(sources, key=lambda s: (-s.acquired_at, s.name)):
        if len(pairs) >= max_examples:
            break
        reason = _unusable(source)
        if reason is not None:
            skipped.append(_skip(source, reason))
            continue
        try:
            pairs.append(_read_pair(source, pixel_size_a=pixel_size_a, deconvolution=deconvolution))
        except CryowarpInputError as error:
            skipped.append(SkippedItem(source.name, error.path, str(error)))
        except OSError as error:
            skipped.append(_skip(source, f"cannot be read ({error})"))
    _report(skipped, on_skipped)
    if len(pairs) < min_examples:
        raise InvalidValuesError(
            root,
            f"only {len(pairs)} usable training example(s) (items with odd/even averages and a "
            f"CTF estimate); at least {min_examples} are needed",
            "process more movies first, or lower the minimum number of examples",
        )
    return pairs


# -- helpers -------------------------------------------------------------------------------


def _unusable(source: MicrographSource) -> str | None:
    if source.odd_path is None or source.even_path is None:
        return "no odd/even half-averages (re-run cryowarp motion with --odd-even)"
    if source.ctf is None:
        return "no CTF estimate (run cryowarp ctf first): the halves must be deconvolved"
    if source.ctf.failed:
        return f"the CTF fit failed ({source.ctf.failure_reason}): cannot deconvolve"
    return None


def _read_pair(
    source: MicrographSource, *, pixel_size_a: float, deconvolution: DeconvolutionSettings | None
) -> TrainingPair:
    assert source.odd_path is not None
    assert source.even_path is not None
    assert source.ctf is not None
    odd = _read_image(source.odd_path)
    even = _read_image(source.even_path)
    odd_n, even_n, achieved_a, scale = prepare_pair(
        odd,
        even,
        pixel_size_a=source.output_pixel_size_a,
        ctf=source.ctf,
        working_pixel_size_a=pixel_size_a,
        deconvolution=deconvolution,
        source=source.odd_path,
    )
    return TrainingPair(
        name=source.name,
        odd=odd_n,
        even=even_n,
        pixel_size_a=achieved_a,
        scale=scale,
        odd_path=source.odd_path,
        even_path=source.even_path,
    )


def _read_image(path: Path) -> torch.Tensor:  # (h, w)
    data, _ = read_mrc(path)
    if data.ndim != 2:
        raise DimensionMismatchError(path, f"holds a {data.ndim}-D array, not one micrograph")
    return torch.from_numpy(np.asarray(data, dtype=np.float32).copy())


def _skip(source: MicrographSource, reason: str) -> SkippedItem:
    return SkippedItem(source.name, source.motion_metadata_path or source.average_path, reason)


def _report(skipped: list[SkippedItem], on_skipped: Callable[[SkippedItem], None] | None) -> None:
    if on_skipped is not None:
        for item in skipped:
            on_skipped(item)
