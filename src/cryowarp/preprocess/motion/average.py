"""Motion-corrected, exposure-weighted averages of a frame series (Warp's frame averaging).

Each frame is aligned to the geometry of frame 0 by moving every pixel with the motion at its
own position, ``aligned_t(x) = frame_t(x + s(x, t))`` (docs/conventions.md §4), and the aligned
frames are averaged with Warp's exposure weights (conventions §7). The motion is sampled on a
coarse grid (:mod:`cryowarp.preprocess.motion._deform`) and split into

* a **global** part, the spatial mean of ``s`` over the field, applied exactly as a Fourier
  phase ramp, and
* a **local** residual, applied in real space at the output scale by
  :func:`cryowarp.core.deform.deform_image` (deformation by ``−s``).

Consecutive frames whose local residuals lie within ``local_tolerance_px`` of their group's
mean (:func:`group_frames`) are summed in Fourier space and share one inverse transform and
one deformation, so the cost stays close to one FFT per frame. docs/motion_average.md
describes the method, its accuracy and its cost.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from cryowarp.core.deform import DeformInterpolation, bspline_prefilter_rfft, deform_image
from cryowarp.core.dose import dose_weights
from cryowarp.core.fourier import hermitian_symmetrize_rfft
from cryowarp.core.resize import fourier_crop_or_pad
from cryowarp.core.shift import shift_phase_ramp
from cryowarp.errors import DimensionMismatchError, InvalidValuesError
from cryowarp.preprocess.motion._deform import coarse_motion
from cryowarp.preprocess.motion.model import MotionField

__all__ = ["MotionAverages", "average_frames", "group_frames"]

#: Local residuals smaller than this everywhere (output pixels) are not applied at all.
NEGLIGIBLE_LOCAL_PX = 1e-3


@dataclass(frozen=True)
class MotionAverages:
    """The averages of one frame series, in the geometry of frame 0.

    Attributes
    ----------
    average:
        ``(h', w')`` float32 motion-corrected average of all frames (exposure-weighted when
        doses were given); pixel values keep the scale of one frame (the mean is preserved).
    odd, even:
        ``(h', w')`` averages of the odd frames (indices 1, 3, 5, …) and of the even frames
        (0, 2, 4, …), each weighted and normalised over its own frames; ``None`` when not
        asked for or when the series has a single frame.
    aligned_stack:
        ``(n, h', w')`` every aligned frame without exposure weighting, or ``None``.
    pixel_size_a:
        Output pixel size in Å, ``input pixel size × w / w'`` (the x axis).
    shape:
        ``(h', w')``.
    n_deformation_groups:
        How many groups of frames were deformed together (0: no local deformation).
    """

    average: torch.Tensor  # (h', w')
    odd: torch.Tensor | None  # (h', w')
    even: torch.Tensor | None  # (h', w')
    aligned_stack: torch.Tensor | None  # (n, h', w')
    pixel_size_a: float
    shape: tuple[int, int]
    n_deformation_groups: int


def average_frames(
    read_frames: Callable[[int, int], torch.Tensor],
    motion: MotionField,
    *,
    n_frames: int,
    frame_shape: tuple[int, int],
    pixel_size_a: float,
    output_shape: tuple[int, int] | None = None,
    accumulated_dose_e_per_a2: torch.Tensor | None = None,
    local_tolerance_px: float = 0.05,
    odd_even: bool = True,
    aligned_stack: bool = False,
    frames_per_chunk: int = 4,
    device: torch.device | str | None = None,
    interpolation: DeformInterpolation = "bspline",
) -> MotionAverages:
    """Motion-corrected, exposure-weighted average (and half-averages) of a frame series.

    Parameters
    ----------
    read_frames:
        ``read_frames(start, stop)`` returns the gain-corrected frames ``start … stop − 1`` as
        a ``(stop − start, h, w)`` float tensor; called once per chunk, in order.
    motion:
        Shifts in Å (conventions §4; e.g. a fitted ``FrameMotion`` or a simulator's
        ``MotionTruth``), positions in Å from the centre of pixel (0, 0) of the frames.
    n_frames, frame_shape, pixel_size_a:
        Number of frames, frame size ``(h, w)`` and pixel size (Å) of the frames.
    output_shape:
        ``(h', w')``, even sizes: every frame spectrum is Fourier-cropped (binned) or padded
        to it before averaging (default: ``frame_shape``).
    accumulated_dose_e_per_a2:
        ``(n,)`` exposure of each frame (e⁻/Å², e.g. at its middle) for Warp's weighting
        (conventions §7), normalised per frequency over the frames of each average; ``None``
        averages without weights.
    local_tolerance_px:
        Frames whose local residual fields lie within this distance (output pixels) of their
        group's mean field are deformed together; 0 deforms every frame on its own.
    odd_even:
        Also return the odd-frame and even-frame averages.
    aligned_stack:
        Also return every aligned (unweighted) frame at the output scale.
    frames_per_chunk:
        Frames read and transformed at once (bounds the memory).
    device:
        Where the work happens and the results live (default: CPU).
    interpolation:
        How the local residual is applied (:func:`cryowarp.core.deform.deform_image`):
        ``"bspline"`` (prefiltered cubic B-spline, fourth-order accurate; the prefilter is
        applied to the spectra, so it costs no FFT) or ``"cubic"`` (``grid_sample`` bicubic,
        first-order accurate, a little faster); see docs/motion_average.md.

    Returns
    -------
    MotionAverages
        The averages; pixel values keep the scale of one input frame.
    """
    dev = torch.device(device) if device is not None else torch.device("cpu")
    h, w = _check_inputs(
        motion, n_frames, frame_shape, pixel_size_a, local_tolerance_px, frames_per_chunk
    )
    if interpolation not in ("bspline", "cubic"):
        raise ValueError(f"interpolation must be 'bspline' or 'cubic', got {interpolation!r}")
    out_shape = _output_shape(output_shape, (h, w))
    px_xy = (pixel_size_a * w / out_shape[1], pixel_size_a * h / out_shape[0])
    dose = _check_dose(accumulated_dose_e_per_a2, n_frames, dev)

    coarse = coarse_motion(motion, output_shape=out_shape, output_pixel_size_xy_a=px_xy, device=dev)
    deforming = float(torch.linalg.vector_norm(coarse.local_px, dim=-1).amax()) >= (
        NEGLIGIBLE_LOCAL_PX
    )
    if deforming:
        groups = group_frames(coarse.local_px, tolerance_px=local_tolerance_px)
    else:
        groups = [list(range(n_frames))]
    group_end = {g[-1]: g for g in groups}
    prefilter = (
        bspline_prefilter_rfft(out_shape, device=dev)
        if deforming and interpolation == "bspline"
        else None
    )

    def to_real(
        spectra: torch.Tensor,  # (k, h', w'//2 + 1)
        local_px: torch.Tensor | None,  # (gy, gx, 2) shared, (k, gy, gx, 2) or None
    ) -> torch.Tensor:  # (k, h', w')
        spectra = hermitian_symmetrize_rfft(spectra, shape=out_shape)
        if local_px is None:
            images: torch.Tensor = torch.fft.irfft2(spectra, s=out_shape)
            return images
        if prefilter is not None:
            spectra = spectra * prefilter
        coefficients = torch.fft.irfft2(spectra, s=out_shape)
        # Aligning samples the frame at x + s(x): a deformation by −s (core/deform.py).
        return deform_image(coefficients, -local_px, interpolation=interpolation, prefiltered=True)

    split = odd_even and n_frames > 1
    keys = ("odd", "even") if split else ("all",)
    weights = _ExposureWeights(
        dose, out_shape, pixel_size_a=px_xy[0], n_frames=n_frames, chunk=frames_per_chunk
    )
    mean_scale = (out_shape[0] * out_shape[1]) / (h * w)  # irfft of a cropped spectrum
    to_input_px = torch.tensor([w / out_shape[1], h / out_shape[0]], device=dev)
    sums = torch.zeros(len(keys), *out_shape, device=dev)
    pending: dict[str, torch.Tensor] = {}
    stack = torch.empty(n_frames, *out_shape, device=dev) if aligned_stack else None

    for start in range(0, n_frames, frames_per_chunk):
        stop = min(n_frames, start + frames_per_chunk)
        frames = _read_chunk(read_frames, start, stop, (h, w), dev)
        # The global shift is applied before the crop, so that binning the corrected frames
        # equals Fourier-cropping them at full size (the folded Nyquist rows included).
        spectra = torch.fft.rfft2(frames)
        del frames
        spectra *= shift_phase_ramp((h, w), -coarse.global_px[start:stop] * to_input_px)
        spectra = fourier_crop_or_pad(spectra, shape=(h, w), new_shape=out_shape)
        if stack is not None:
            local = coarse.local_px[start:stop] if deforming else None
            stack[start:stop] = to_real(spectra * mean_scale, local)
        frame_weights = weights.unnormalised(start, stop)
        if frame_weights is not None:
            spectra *= frame_weights
        for i, t in enumerate(range(start, stop)):
            key = ("odd" if t % 2 else "even") if split else "all"
            pending[key] = spectra[i] if key not in pending else pending[key] + spectra[i]
            if t in group_end:
                field = coarse.local_px[group_end[t]].mean(dim=0) if deforming else None
                index = [keys.index(k) for k in pending]
                together = torch.stack(list(pending.values()))
                sums[index] += to_real(together * (weights.full_normaliser * mean_scale), field)
                pending.clear()

    # One check at the end instead of one per frame: a NaN or Inf anywhere reaches every sum.
    if not bool(torch.isfinite(sums).all()):
        raise InvalidValuesError(
            None, "the frames contain NaN or Inf values", "check the gain reference and defects"
        )
    if not split:
        average, odd, even = sums[0], None, None
    else:
        average = sums[0] + sums[1]
        odd = weights.renormalise(sums[0], weights.odd_ratio)
        even = weights.renormalise(sums[1], weights.even_ratio)
    return MotionAverages(
        average=average,
        odd=odd,
        even=even,
        aligned_stack=stack,
        pixel_size_a=px_xy[0],
        shape=out_shape,
        n_deformation_groups=len(groups) if deforming else 0,
    )


def group_frames(
    local_px: torch.Tensor,  # (n, gy, gx, 2)
    *,
    tolerance_px: float,
) -> list[list[int]]:
    """Consecutive frames whose local fields all lie within ``tolerance_px`` of their mean.

    A frame joins the current group when, with it added, every member's field differs from
    the group's mean field by less than ``tolerance_px`` (Euclidean, max over the nodes of the
    coarse grid). ``tolerance_px ≤ 0`` gives one group per frame.
    """
    n = local_px.shape[0]
    if tolerance_px <= 0:
        return [[t] for t in range(n)]
    fields = local_px.double()
    groups: list[list[int]] = [[0]] if n else []
    for t in range(1, n):
        members = [*groups[-1], t]
        stack = fields[members]
        deviation = torch.linalg.vector_norm(stack - stack.mean(dim=0), dim=-1).amax()
        if float(deviation) < tolerance_px:
            groups[-1] = members
        else:
            groups.append([t])
    return groups


class _ExposureWeights:
    """Warp's exposure weights of every frame on the output grid, computed chunk by chunk.

    Frames are weighted by ``u_t(k) = exp(B_t k²/4)`` relative to the least-exposed frame
    (``B_t = −4 (D_t − D_min)``; the common factor cancels in the normalisation and keeps the
    largest weight at 1, so nothing underflows to 0/0). The full average divides by
    ``N_all(k) = Σ_t u_t(k)``; the half-averages are built with that normaliser and then
    rescaled per frequency by ``N_all / N_odd`` and ``N_all / N_even``.
    """

    def __init__(
        self,
        dose: torch.Tensor | None,  # (n,)
        shape: tuple[int, int],
        *,
        pixel_size_a: float,
        n_frames: int,
        chunk: int,
    ):
        self.shape = shape
        self.pixel_size_a = pixel_size_a
        self.relative = None if dose is None else dose - dose.min()
        self.full_normaliser: torch.Tensor | float
        self.odd_ratio: torch.Tensor | float
        self.even_ratio: torch.Tensor | float
        n_odd, n_even = n_frames // 2, (n_frames + 1) // 2
        if self.relative is None:
            self.full_normaliser = 1.0 / n_frames
            self.odd_ratio = n_frames / max(n_odd, 1)
            self.even_ratio = n_frames / n_even
            return
        totals = torch.zeros(2, *_rfft(shape), device=self.relative.device)  # even, odd
        for start in range(0, n_frames, chunk):
            stop = min(n_frames, start + chunk)
            u = self.unnormalised(start, stop)
            assert u is not None
            parity = torch.arange(start, stop, device=u.device) % 2
            totals.index_add_(0, parity, u)
        total = totals.sum(dim=0)
        self.full_normaliser = 1.0 / total
        self.odd_ratio = total / totals[1].clamp_min(torch.finfo(total.dtype).tiny)
        self.even_ratio = total / totals[0]

    def unnormalised(self, start: int, stop: int) -> torch.Tensor | None:
        """``(k, h', w'//2 + 1)`` weights ``u_t`` of frames ``start … stop − 1`` (None: 1)."""
        if self.relative is None:
            return None
        return dose_weights(
            self.relative[start:stop], self.shape, pixel_size_a=self.pixel_size_a, normalize=False
        )

    def renormalise(
        self,
        image: torch.Tensor,  # (h', w')
        ratio: torch.Tensor | float,  # (h', w'//2 + 1) or scalar
    ) -> torch.Tensor:  # (h', w')
        """Apply a per-frequency factor to a real image (a plain product for a scalar)."""
        if isinstance(ratio, float):
            return image * ratio
        out: torch.Tensor = torch.fft.irfft2(torch.fft.rfft2(image) * ratio, s=self.shape)
        return out


def _rfft(shape: tuple[int, int]) -> tuple[int, int]:
    return shape[0], shape[1] // 2 + 1


def _check_inputs(
    motion: MotionField,
    n_frames: int,
    frame_shape: tuple[int, int],
    pixel_size_a: float,
    local_tolerance_px: float,
    frames_per_chunk: int,
) -> tuple[int, int]:
    if n_frames < 1:
        raise ValueError(f"n_frames must be at least 1, got {n_frames}")
    if motion.n_frames != n_frames:
        raise DimensionMismatchError(
            None, f"the motion model has {motion.n_frames} frames, the movie {n_frames}"
        )
    if len(frame_shape) != 2 or min(frame_shape) < 2:
        raise DimensionMismatchError(None, f"frame_shape must be (h, w) ≥ 2, got {frame_shape}")
    if not pixel_size_a > 0:
        raise ValueError(f"pixel_size_a must be positive, got {pixel_size_a}")
    if local_tolerance_px < 0:
        raise ValueError(f"local_tolerance_px must be ≥ 0, got {local_tolerance_px}")
    if frames_per_chunk < 1:
        raise ValueError(f"frames_per_chunk must be at least 1, got {frames_per_chunk}")
    return int(frame_shape[0]), int(frame_shape[1])


def _output_shape(
    output_shape: tuple[int, int] | None, frame_shape: tuple[int, int]
) -> tuple[int, int]:
    if output_shape is None:
        return frame_shape
    if len(output_shape) != 2 or any(n < 2 or n % 2 for n in output_shape):
        raise ValueError(f"output_shape must be two even sizes ≥ 2, got {output_shape}")
    return int(output_shape[0]), int(output_shape[1])


def _check_dose(
    dose: torch.Tensor | None, n_frames: int, device: torch.device
) -> torch.Tensor | None:
    if dose is None:
        return None
    if dose.shape != (n_frames,):
        raise DimensionMismatchError(
            None,
            f"accumulated_dose_e_per_a2 must have one value per frame ({n_frames},), "
            f"got shape {tuple(dose.shape)}",
        )
    if not bool(torch.isfinite(dose).all()):
        raise InvalidValuesError(None, "accumulated_dose_e_per_a2 contains NaN or Inf")
    return dose.to(device=device, dtype=torch.float32)


def _read_chunk(
    read_frames: Callable[[int, int], torch.Tensor],
    start: int,
    stop: int,
    frame_shape: tuple[int, int],
    device: torch.device,
) -> torch.Tensor:  # (stop - start, h, w)
    frames = read_frames(start, stop)
    expected = (stop - start, *frame_shape)
    if not isinstance(frames, torch.Tensor) or tuple(frames.shape) != expected:
        got = tuple(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__
        raise DimensionMismatchError(
            None, f"read_frames({start}, {stop}) returned {got}, expected a tensor {expected}"
        )
    return frames.to(device=device, dtype=torch.float32)
