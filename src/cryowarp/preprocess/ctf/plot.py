"""Diagnostic PNGs of a CTF fit: the 2-D spectrum beside the fitted model, and the 1-D fit.

The 2-D panel is centred (DC at index ``s//2``, conventions §2–3) with +x to the right and +y
up; its **left half (kx < 0) is the background-subtracted spectrum and its right half
(kx ≥ 0) the fitted ``|CTF|·envelope``**, so rings that continue across the vertical midline
mean a good fit. The 1-D panel shows the rescaled rotational average, the fitted model and
the sliding-window correlation that sets the resolution estimate. Figures use matplotlib's
object API (no pyplot state) and files are written atomically.
"""

from __future__ import annotations

import math
import os

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cryowarp.core.fourier import rfft_to_full
from cryowarp.core.fourier_grids import frequency_magnitude
from cryowarp.errors import DimensionMismatchError, InvalidValuesError
from cryowarp.io.files import atomic_output
from cryowarp.preprocess.ctf.result import CtfDiagnostics, CtfResult

__all__ = ["ctf_figure", "split_spectrum_image", "write_ctf_png"]

_CLIP_SIGMA = 2.5


def _standardise(values: torch.Tensor, ring: torch.Tensor) -> torch.Tensor:
    """Zero mean and unit deviation over the fit ring, clipped to ±2.5."""
    inside = values[ring]
    if inside.numel() < 2:
        return torch.zeros_like(values)
    spread = inside.std().clamp_min(torch.finfo(values.dtype).tiny)
    return ((values - inside.mean()) / spread).clamp(-_CLIP_SIGMA, _CLIP_SIGMA)


def split_spectrum_image(
    spectrum_rfft: torch.Tensor,  # (s, s//2 + 1)
    simulated_rfft: torch.Tensor,  # (s, s//2 + 1)
    *,
    pixel_size_a: float,
    fit_range_per_a: tuple[float, float],
) -> torch.Tensor:
    """A centred ``(s, s)`` image: spectrum in the left half, model in the right half.

    Parameters
    ----------
    spectrum_rfft, simulated_rfft:
        Background-subtracted spectrum and fitted ``|CTF|·envelope`` in the rfft layout
        (docs/conventions.md §3) of ``(s, s)`` patches.
    pixel_size_a:
        Pixel size in Å.
    fit_range_per_a:
        ``(low, high)`` fit range in Å⁻¹; each half is standardised over it (zero mean, unit
        deviation, clipped to ±2.5) so both halves share one grey scale.

    Returns
    -------
    torch.Tensor
        ``(s, s)`` float, DC at ``(s//2, s//2)``; columns ``≥ s//2`` hold the model.
    """
    s = spectrum_rfft.shape[-2]
    expected = (s, s // 2 + 1)
    if tuple(spectrum_rfft.shape) != expected or tuple(simulated_rfft.shape) != expected:
        raise DimensionMismatchError(
            None,
            f"spectrum {tuple(spectrum_rfft.shape)} and model {tuple(simulated_rfft.shape)} "
            f"must both be the rfft layout {expected} of square patches",
        )
    k_per_a = (
        frequency_magnitude(
            (s, s), rfft=False, fftshifted=True, device=spectrum_rfft.device, dtype=torch.float64
        )
        / pixel_size_a
    )
    low, high = fit_range_per_a
    ring = (k_per_a >= low) & (k_per_a <= high)
    data = rfft_to_full(spectrum_rfft.double(), shape=(s, s), fftshifted=True)
    model = rfft_to_full(simulated_rfft.double(), shape=(s, s), fftshifted=True)
    image = _standardise(data, ring)
    image[:, s // 2 :] = _standardise(model, ring)[:, s // 2 :]
    return image


def _require_diagnostics(result: CtfResult) -> CtfDiagnostics:
    if result.failed:
        raise InvalidValuesError(None, f"no plot of a failed CTF fit ({result.failure_reason})")
    if result.diagnostics is None:
        raise InvalidValuesError(None, "the CTF result carries no diagnostics to plot")
    return result.diagnostics


def _draw_2d(figure: Figure, position: int, result: CtfResult, diag: CtfDiagnostics) -> None:
    axes = figure.add_subplot(1, 2, position)
    image = split_spectrum_image(
        diag.spectrum_2d.detach().cpu(),
        diag.simulated_2d.detach().cpu(),
        pixel_size_a=result.pixel_size_a,
        fit_range_per_a=diag.fit_range_per_a,
    )
    s = image.shape[-1]
    step = 1.0 / (s * result.pixel_size_a)  # Å⁻¹ per sample; sample i is at (i - s//2)·step
    low, high = (-(s // 2) - 0.5) * step, (s - 1 - s // 2 + 0.5) * step
    axes.imshow(
        image.numpy(),
        cmap="gray",
        origin="lower",  # +y up
        extent=(low, high, low, high),
        interpolation="nearest",
    )
    axes.axvline(0.0, color="tab:orange", linewidth=0.6)
    axes.set_xlabel("kx (Å⁻¹)   left: spectrum · right: fit")
    axes.set_ylabel("ky (Å⁻¹)")
    axes.set_title("2-D spectrum and fitted |CTF|")


def _draw_1d(figure: Figure, position: int, result: CtfResult, diag: CtfDiagnostics) -> None:
    axes = figure.add_subplot(1, 2, position)
    k = diag.frequencies_per_a.detach().cpu().double()
    low, high = diag.fit_range_per_a
    inside = (k >= low) & (k <= high)

    def scaled(curve: torch.Tensor) -> torch.Tensor:
        values = curve.detach().cpu().double()
        peak = values[inside].abs().max() if bool(inside.any()) else values.abs().max()
        return values / peak.clamp_min(torch.finfo(torch.float64).tiny)

    axes.plot(k.numpy(), scaled(diag.spectrum_1d).numpy(), lw=0.8, label="spectrum (rescaled)")
    axes.plot(k.numpy(), scaled(diag.simulated_1d).numpy(), lw=0.8, label="fit |CTF|·envelope")
    axes.plot(k.numpy(), diag.correlation_1d.detach().cpu().numpy(), lw=1.0, label="correlation")
    axes.axvspan(low, high, color="0.92", zorder=0, label="fit range")
    if math.isfinite(result.resolution_a) and result.resolution_a > 0:
        axes.axvline(1.0 / result.resolution_a, color="tab:red", lw=0.8, ls="--",
                     label=f"fitted to {result.resolution_a:.2f} Å")  # fmt: skip
    axes.set_xlim(0.0, float(k.max()))
    axes.set_ylim(-1.05, 1.05)
    axes.set_xlabel("spatial frequency (Å⁻¹)")
    axes.set_title("1-D fit")
    axes.legend(loc="lower left", fontsize="small")


def ctf_figure(result: CtfResult, *, title: str | None = None) -> Figure:
    """A two-panel figure of a CTF fit (module docstring); needs ``result.diagnostics``.

    Raises
    ------
    InvalidValuesError
        The fit failed or carries no diagnostics.
    """
    diag = _require_diagnostics(result)
    figure = Figure(figsize=(11.0, 5.0), layout="constrained")
    FigureCanvasAgg(figure)
    _draw_2d(figure, 1, result, diag)
    _draw_1d(figure, 2, result, diag)
    summary = (
        f"defocus U {result.defocus_u_um:.4f} µm, V {result.defocus_v_um:.4f} µm, "
        f"angle {result.astigmatism_angle_deg:.1f}°, phase shift {result.phase_shift_deg:.1f}°, "
        f"resolution {result.resolution_a:.2f} Å, score {result.fit_score:.3f}"
    )
    figure.suptitle(f"{title}\n{summary}" if title else summary, fontsize="medium")
    return figure


def write_ctf_png(
    result: CtfResult,
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
    dpi: int = 100,
) -> None:
    """Write :func:`ctf_figure` of ``result`` as a PNG at ``path``, atomically.

    Parameters
    ----------
    result:
        A successful fit with diagnostics.
    path:
        Destination PNG.
    title:
        First line of the figure title (e.g. the micrograph name).
    dpi:
        Resolution; the image is ``1100 × 500`` pixels at 100 dpi.
    """
    figure = ctf_figure(result, title=title)
    with atomic_output(path) as tmp:
        figure.savefig(tmp, format="png", dpi=dpi)
