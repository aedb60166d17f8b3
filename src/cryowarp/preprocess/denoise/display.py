"""Display images of a micrograph: deconvolved and (optionally) denoised, at a working pixel size.

Raw micrographs are nearly unreadable to the eye; users judge samples and check picks on these
images instead.  :func:`display_images` Fourier-crops the motion-corrected average to the
working pixel size (:data:`DISPLAY_PIXEL_SIZE_A`, 4 Å: a K3 field of 4780 Å becomes ~1200 px),
deconvolves it with the item's CTF (:mod:`~cryowarp.preprocess.denoise.deconvolution`) and,
given a Noise2Noise model, denoises it at the model's own pixel size.
:func:`write_display_images` writes them as 8-bit PNGs with robust contrast and as float32 MRCs.

**These images are for looking at, never for averaging, particle extraction or refinement**:
deconvolution and denoising change amplitudes and noise in ways no later step models.

Files (relative to the output folder, :func:`display_file_names`)::

    display/<name>_deconv.png      8-bit grey, percentiles low…high mapped to 0…255
    display/<name>_deconv.mrc      float32, the working pixel size in the header
    display/<name>_denoised.png    only with a denoiser
    display/<name>_denoised.mrc

PNG row 0 is array row 0 (the top of the picture), so pixel ``(x, y)`` of the array is pixel
``(x, y)`` of the picture (conventions §1).  Protein is dark, as in the raw micrograph.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, model_validator

from cryowarp.core.ctf_params import CTFParams
from cryowarp.core.resize import rescale, rescaled_shape
from cryowarp.errors import DimensionMismatchError, InvalidValuesError
from cryowarp.io.files import atomic_output
from cryowarp.io.mrc import write_mrc
from cryowarp.preprocess.denoise.deconvolution import (
    DENOISER_INPUT_DECONVOLUTION,
    DeconvolutionSettings,
    SupportsCtfParams,
    deconvolve,
)
from cryowarp.preprocess.denoise.n2n_inference import (
    PIXEL_SIZE_TOLERANCE,
    denoise_image,
    denoise_pair,
)
from cryowarp.preprocess.denoise.n2n_model_file import (
    DEFAULT_DENOISER_PIXEL_SIZE_A,
    DenoiserModel,
)

__all__ = [
    "DISPLAY_FOLDER",
    "DISPLAY_PIXEL_SIZE_A",
    "DisplayImages",
    "DisplaySettings",
    "display_file_names",
    "display_images",
    "robust_8bit",
    "write_display_images",
]

DISPLAY_PIXEL_SIZE_A = DEFAULT_DENOISER_PIXEL_SIZE_A
"""Default working pixel size (Å) of display images: that of the shipped denoiser (4 Å)."""

DISPLAY_FOLDER = "display"
"""Sub-folder of the output folder that holds the display images."""


class DisplaySettings(BaseModel):
    """Size and contrast of display images."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pixel_size_a: float = Field(
        default=DISPLAY_PIXEL_SIZE_A,
        gt=0.0,
        description="Working pixel size of the display images in Å (never finer than the "
        "micrograph's own).",
    )
    max_size_px: int = Field(
        default=2048,
        ge=16,
        description="Longest side of a display image in pixels; a larger field is shown at a "
        "coarser pixel size.",
    )
    low_percentile: float = Field(
        default=0.5,
        ge=0.0,
        lt=100.0,
        description="Percentile (%) of the image values drawn black in the PNGs.",
    )
    high_percentile: float = Field(
        default=99.5,
        gt=0.0,
        le=100.0,
        description="Percentile (%) of the image values drawn white in the PNGs.",
    )

    @model_validator(mode="after")
    def _check(self) -> DisplaySettings:
        if self.low_percentile >= self.high_percentile:
            raise ValueError(
                f"low_percentile ({self.low_percentile}) must be below high_percentile "
                f"({self.high_percentile})"
            )
        return self


@dataclass(frozen=True, eq=False)
class DisplayImages:
    """The display images of one micrograph.

    Attributes
    ----------
    deconvolved:
        ``(h', w')`` float32 deconvolved micrograph at :attr:`pixel_size_a`.
    denoised:
        ``(h', w')`` float32 denoised micrograph on the same grid, or ``None``.
    pixel_size_a:
        Pixel size of both images in Å (x axis).
    model_name:
        Name of the denoiser that made :attr:`denoised` (``None`` without one); recorded in
        the item's metadata.
    """

    deconvolved: torch.Tensor  # (h', w')
    denoised: torch.Tensor | None  # (h', w')
    pixel_size_a: float
    model_name: str | None


def display_images(
    average: torch.Tensor,  # (h, w)
    *,
    pixel_size_a: float,
    ctf: CTFParams | SupportsCtfParams,
    deconvolution: DeconvolutionSettings | None = None,
    denoiser: DenoiserModel | None = None,
    odd: torch.Tensor | None = None,  # (h, w)
    even: torch.Tensor | None = None,  # (h, w)
    settings: DisplaySettings | None = None,
    device: torch.device | str | None = None,
) -> DisplayImages:
    """Deconvolved (and denoised) display images of a motion-corrected micrograph.

    Parameters
    ----------
    average:
        ``(h, w)`` motion-corrected average (any pixel size at least as fine as the display's).
    pixel_size_a:
        Its pixel size in Å.
    ctf:
        The item's CTF (:class:`CTFParams` or a ``CtfResult``).
    deconvolution:
        Filter of the deconvolved image (default :class:`DeconvolutionSettings`).
    denoiser:
        A loaded Noise2Noise model; its input is deconvolved with the settings stored in its
        metadata (``"deconvolution"``) or else with
        :data:`~cryowarp.preprocess.denoise.deconvolution.DENOISER_INPUT_DECONVOLUTION`, at
        the model's pixel size.
    odd, even:
        ``(h, w)`` half averages; when both are given the denoised image is the mean of the
        denoised halves (the noise level the network was trained on), else the average is
        denoised.
    settings:
        Working pixel size, size limit (:class:`DisplaySettings`).
    device:
        Where the network runs (default: the device of ``average``).

    Returns
    -------
    DisplayImages
        On the device of ``average``.

    Raises
    ------
    InvalidValuesError
        NaN/Inf in the images, or a micrograph coarser than the denoiser's pixel size (the
        message names the model and both pixel sizes).
    DimensionMismatchError
        Images that are not 2-D or whose shapes differ.
    """
    settings = settings or DisplaySettings()
    _check_images(average, odd, even)
    height, width = average.shape
    target_px = max(
        settings.pixel_size_a,
        pixel_size_a,
        pixel_size_a * max(height, width) / settings.max_size_px,
    )
    shape, achieved_px = _shape_at(average, pixel_size_a, target_px)
    deconvolved = deconvolve(
        _resampled(average, shape), pixel_size_a=achieved_px, ctf=ctf, settings=deconvolution
    )
    denoised = None
    if denoiser is not None:
        halves = [odd, even] if odd is not None and even is not None else [average]
        inputs = [image for image in halves if image is not None]
        denoised = _resampled(
            _denoised(inputs, pixel_size_a=pixel_size_a, ctf=ctf, model=denoiser, device=device),
            shape,
        )
    return DisplayImages(
        deconvolved=deconvolved.float(),
        denoised=None if denoised is None else denoised.float(),
        pixel_size_a=achieved_px,
        model_name=None if denoiser is None else denoiser.name,
    )


def robust_8bit(
    image: torch.Tensor,  # (h, w)
    *,
    low_percentile: float = 0.5,
    high_percentile: float = 99.5,
) -> npt.NDArray[np.uint8]:
    """``(h, w)`` uint8: values at the low/high percentiles map to 0/255, clipped outside
    (a constant image maps to 128)."""
    values = image.detach().to("cpu", torch.float64).numpy()
    low, high = np.percentile(values, [low_percentile, high_percentile])
    if not high > low:
        return np.full(values.shape, 128, dtype=np.uint8)
    scaled = np.clip((values - low) / (high - low), 0.0, 1.0) * 255.0
    pixels: npt.NDArray[np.uint8] = np.rint(scaled).astype(np.uint8)
    return pixels


def display_file_names(
    name: str, *, denoised: bool, folder: str = DISPLAY_FOLDER
) -> dict[str, str]:
    """Relative paths of the display files of item ``name``: keys ``deconv_png``,
    ``deconv_mrc`` and, with ``denoised``, ``denoised_png``, ``denoised_mrc``; in ``folder``
    (``""``: no sub-folder)."""
    kinds = ("deconv", "denoised") if denoised else ("deconv",)
    prefix = f"{folder}/" if folder else ""
    names: dict[str, str] = {}
    for kind in kinds:
        for suffix in ("png", "mrc"):
            names[f"{kind}_{suffix}"] = f"{prefix}{name}_{kind}.{suffix}"
    return names


def write_display_images(
    images: DisplayImages,
    *,
    name: str,
    out_dir: str | Path,
    settings: DisplaySettings | None = None,
    folder: str = DISPLAY_FOLDER,
) -> dict[str, Path]:
    """Write the display images of item ``name`` under ``out_dir/<folder>/`` (atomically;
    ``folder=""`` writes into ``out_dir`` itself). PNG contrast from ``settings``.

    Returns
    -------
    dict[str, Path]
        The written files by kind (keys of :func:`display_file_names`).
    """
    settings = settings or DisplaySettings()
    out = Path(out_dir)
    (out / folder).mkdir(parents=True, exist_ok=True)
    arrays = {"deconv": images.deconvolved, "denoised": images.denoised}
    names = display_file_names(name, denoised=images.denoised is not None, folder=folder)
    written: dict[str, Path] = {}
    for key, relative in names.items():
        kind, suffix = key.rsplit("_", 1)
        image = arrays[kind]
        assert image is not None
        path = out / relative
        if suffix == "png":
            _write_png(
                path,
                robust_8bit(
                    image,
                    low_percentile=settings.low_percentile,
                    high_percentile=settings.high_percentile,
                ),
            )
        else:
            write_mrc(path, image.detach().cpu().float().numpy(), voxel_size_a=images.pixel_size_a)
        written[key] = path
    return written


# -- private helpers -------------------------------------------------------------------


def _check_images(average: torch.Tensor, *others: torch.Tensor | None) -> None:
    if average.dim() != 2:
        raise DimensionMismatchError(
            None, f"a micrograph (h, w) is needed, got shape {tuple(average.shape)}"
        )
    for other in others:
        if other is not None and other.shape != average.shape:
            raise DimensionMismatchError(
                None,
                f"odd/even averages {tuple(other.shape)} differ from the average "
                f"{tuple(average.shape)}",
            )
    for image in (average, *others):
        if image is not None and not bool(torch.isfinite(image).all()):
            raise InvalidValuesError(None, "the micrograph contains NaN or Inf")


def _shape_at(
    image: torch.Tensor, pixel_size_a: float, new_pixel_size_a: float
) -> tuple[tuple[int, int], float]:
    """Shape of ``image`` at about ``new_pixel_size_a`` and the pixel size reached (x)."""
    height, width = image.shape[-2:]
    new_h, new_w = rescaled_shape(
        (height, width), pixel_size_a=pixel_size_a, new_pixel_size_a=new_pixel_size_a
    )
    return (new_h, new_w), pixel_size_a * width / new_w


def _resampled(image: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    image = image if image.is_floating_point() else image.float()
    return image if tuple(image.shape[-2:]) == shape else rescale(image, shape)


def _model_deconvolution(model: DenoiserModel) -> DeconvolutionSettings:
    stored = model.metadata.get("deconvolution") if isinstance(model.metadata, dict) else None
    if isinstance(stored, dict):
        return DeconvolutionSettings.model_validate(stored)
    return DENOISER_INPUT_DECONVOLUTION


def _denoised(
    images: list[torch.Tensor],  # [(h, w)] the average, or the odd and even halves
    *,
    pixel_size_a: float,
    ctf: CTFParams | SupportsCtfParams,
    model: DenoiserModel,
    device: torch.device | str | None,
) -> torch.Tensor:
    """The images at the model's pixel size, deconvolved as its training data, denoised (a
    pair: each half, averaged)."""
    model_px = float(model.pixel_size_a)
    if pixel_size_a > model_px * (1 + PIXEL_SIZE_TOLERANCE):
        raise InvalidValuesError(
            None,
            f"denoiser {model.name!r} works at {model_px:g} Å/px but the micrograph has "
            f"{pixel_size_a:g} Å/px (coarser)",
            "use a model trained at this pixel size or coarser (cryowarp denoise train "
            "--pixel-size)",
        )
    shape, achieved_px = _shape_at(images[0], pixel_size_a, model_px)
    settings = _model_deconvolution(model)
    work = [
        deconvolve(_resampled(image, shape), pixel_size_a=achieved_px, ctf=ctf, settings=settings)
        for image in images
    ]
    if len(work) == 2:
        return denoise_pair(model, work[0], work[1], pixel_size_a=achieved_px, device=device)
    return denoise_image(model, work[0], pixel_size_a=achieved_px, device=device)


def _write_png(path: Path, pixels: npt.NDArray[np.uint8]) -> None:
    with atomic_output(path) as tmp:
        Image.fromarray(pixels).save(tmp, format="PNG")
