"""The result of CTF estimation: :class:`CtfResult` (metadata) and :class:`CtfDiagnostics`
(spectra for plots).

Defocus, astigmatism and phase-shift conventions: docs/conventions.md §6; the defocus grid is a
Warp ``CubicGrid`` of dims (X, Y, 1) (§12).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

import torch

from cryowarp.core.ctf_params import CTFParams
from cryowarp.core.spline_grid import evaluate_cubic_grid
from cryowarp.errors import DimensionMismatchError, InvalidValuesError

__all__ = ["CtfDiagnostics", "CtfResult"]

_NAN = float("nan")


@dataclass(frozen=True, eq=False)
class CtfDiagnostics:
    """Spectra behind a fit, for plots and quality control (not written to metadata).

    Attributes
    ----------
    frequencies_per_a:
        ``(n,)`` radial frequencies of the 1-D curves in Å⁻¹.
    spectrum_1d:
        ``(n,)`` background-subtracted rotational average of all patches, each patch rescaled
        to the mean defocus (so rings of a tilted sample line up).
    simulated_1d:
        ``(n,)`` fitted ``|CTF|·envelope`` on the same scale.
    background_1d, envelope_1d:
        ``(n,)`` fitted background and envelope of the raw rotational average.
    correlation_1d:
        ``(n,)`` sliding-window correlation of ``spectrum_1d`` and ``simulated_1d``.
    spectrum_2d:
        ``(s, s//2 + 1)`` background-subtracted mean patch spectrum, rfft layout
        (docs/conventions.md §3).
    simulated_2d:
        ``(s, s//2 + 1)`` fitted ``|CTF|·envelope`` on the same grid.
    fit_range_per_a:
        ``(low, high)`` frequencies of the fit range in Å⁻¹.
    """

    frequencies_per_a: torch.Tensor  # (n,)
    spectrum_1d: torch.Tensor  # (n,)
    simulated_1d: torch.Tensor  # (n,)
    background_1d: torch.Tensor  # (n,)
    envelope_1d: torch.Tensor  # (n,)
    correlation_1d: torch.Tensor  # (n,)
    spectrum_2d: torch.Tensor  # (s, s//2+1)
    simulated_2d: torch.Tensor  # (s, s//2+1)
    fit_range_per_a: tuple[float, float]


@dataclass(frozen=True, eq=False)
class CtfResult:
    """Estimated CTF of one micrograph or power spectrum.

    Every number is NaN (``None`` in :meth:`to_dict`) when ``failed`` is true.

    Attributes
    ----------
    defocus_u_um, defocus_v_um, astigmatism_angle_deg:
        RELION's ``DefocusU/V`` (µm, ``U ≥ V``, underfocus positive) and ``DefocusAngle``
        (degrees, angle of U from +x towards +y; docs/conventions.md §6) at the field centre
        — the mean of the grid surface over the field.
    phase_shift_deg:
        Phase-plate shift in degrees (0 when not fitted).
    defocus_grid_um:
        **Absolute** mean defocus ``(U + V)/2`` (µm) at the nodes of a Warp grid of dims
        ``(X, Y, 1)``, as nested tuples in array order ``(y, x)``; ``((mean,),)`` when no
        spatial model was fitted (a precomputed spectrum).
    image_size_xy_a:
        Field of view ``(width, height)`` in Å that the grid's normalised coordinates span.
    resolution_a:
        Resolution (Å) to which the Thon rings are fitted.
    fit_score:
        Normalised correlation of the fitted ``|CTF|·envelope`` and the background-subtracted
        spectrum over the fit range (−1 … 1).
    failed, failure_reason:
        Whether the estimate is unusable, and why in words.
    pixel_size_a, voltage_kv, cs_mm, amplitude_contrast:
        Optics the fit used (Å, kV, mm, fraction).
    diagnostics:
        Spectra for plots (:class:`CtfDiagnostics`), ``None`` when failed early; not part of
        :meth:`to_dict`.
    """

    defocus_u_um: float
    defocus_v_um: float
    astigmatism_angle_deg: float
    phase_shift_deg: float
    defocus_grid_um: tuple[tuple[float, ...], ...]
    image_size_xy_a: tuple[float, float]
    resolution_a: float
    fit_score: float
    pixel_size_a: float
    voltage_kv: float
    cs_mm: float
    amplitude_contrast: float
    failed: bool = False
    failure_reason: str | None = None
    diagnostics: CtfDiagnostics | None = field(default=None, repr=False, compare=False)

    # -- construction --------------------------------------------------------------------

    @classmethod
    def failure(
        cls,
        reason: str,
        *,
        pixel_size_a: float,
        voltage_kv: float,
        cs_mm: float,
        amplitude_contrast: float,
        image_size_xy_a: tuple[float, float] = (_NAN, _NAN),
    ) -> CtfResult:
        """A result flagged as failed, every estimate NaN."""
        return cls(
            defocus_u_um=_NAN,
            defocus_v_um=_NAN,
            astigmatism_angle_deg=_NAN,
            phase_shift_deg=_NAN,
            defocus_grid_um=((_NAN,),),
            image_size_xy_a=image_size_xy_a,
            resolution_a=_NAN,
            fit_score=_NAN,
            pixel_size_a=pixel_size_a,
            voltage_kv=voltage_kv,
            cs_mm=cs_mm,
            amplitude_contrast=amplitude_contrast,
            failed=True,
            failure_reason=reason,
        )

    # -- derived values ------------------------------------------------------------------

    @property
    def defocus_um(self) -> float:
        """Mean defocus ``(U + V)/2`` in µm."""
        return 0.5 * (self.defocus_u_um + self.defocus_v_um)

    @property
    def astigmatism_um(self) -> float:
        """``δ = (U − V)/2`` in µm (Warp's ``DefocusDelta`` is ``2δ``)."""
        return 0.5 * (self.defocus_u_um - self.defocus_v_um)

    @property
    def grid_dims(self) -> tuple[int, int, int]:
        """Warp dims (X, Y, 1) of the defocus grid."""
        return (len(self.defocus_grid_um[0]), len(self.defocus_grid_um), 1)

    def defocus_at(self, positions_xy_a: torch.Tensor) -> torch.Tensor:
        """Mean defocus (µm) at image positions from the spatial grid.

        Parameters
        ----------
        positions_xy_a:
            ``(..., 2)`` positions (x, y) in Å from the centre of pixel (0, 0)
            (docs/conventions.md §1, §4); normalised by :attr:`image_size_xy_a`.

        Returns
        -------
        torch.Tensor
            ``(...)`` defocus in µm, on the device and in the dtype of the positions.
        """
        if positions_xy_a.shape[-1:] != (2,):
            raise DimensionMismatchError(
                None, f"positions must be (..., 2) (x, y) in Å, got {tuple(positions_xy_a.shape)}"
            )
        dtype = positions_xy_a.dtype if positions_xy_a.is_floating_point() else torch.float64
        positions = positions_xy_a.to(dtype)
        values = torch.tensor(self.defocus_grid_um, dtype=dtype, device=positions.device)
        size = torch.tensor(self.image_size_xy_a, dtype=dtype, device=positions.device)
        coords = (positions / size).reshape(-1, 2)
        return evaluate_cubic_grid(values, coords).reshape(positions.shape[:-1])

    def ctf_params(self) -> CTFParams:
        """:class:`CTFParams` (float64, batch shape ``()``) of the field-centre estimate."""
        if self.failed:
            raise InvalidValuesError(None, f"the CTF fit failed: {self.failure_reason}")
        delta = self.astigmatism_um
        two_theta = math.radians(2 * self.astigmatism_angle_deg)
        return CTFParams.create(
            pixel_size_a=self.pixel_size_a,
            defocus_um=self.defocus_um,
            voltage_kv=self.voltage_kv,
            cs_mm=self.cs_mm,
            amplitude_contrast=self.amplitude_contrast,
            astig_x_um=delta * math.cos(two_theta),
            astig_y_um=delta * math.sin(two_theta),
            phase_shift_rad=math.radians(self.phase_shift_deg),
            dtype=torch.float64,
        )

    # -- serialisation -------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary (NaN → ``None``; diagnostics left out)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name == "diagnostics":
                continue
            out[f.name] = _jsonable(getattr(self, f.name))
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CtfResult:
        """Inverse of :meth:`to_dict` (unknown keys are an error)."""
        known = {f.name for f in fields(cls)} - {"diagnostics"}
        unknown = set(data) - known
        if unknown:
            raise InvalidValuesError(None, f"unknown CTF result keys {sorted(unknown)}")
        missing = known - set(data) - {"failed", "failure_reason"}
        if missing:
            raise InvalidValuesError(None, f"CTF result lacks keys {sorted(missing)}")
        values: dict[str, Any] = {}
        for name in known & set(data):
            value = data[name]
            if name == "defocus_grid_um":
                values[name] = tuple(tuple(_float(v) for v in row) for row in value)
            elif name == "image_size_xy_a":
                values[name] = tuple(_float(v) for v in value)
            elif name == "failed":
                values[name] = bool(value)
            elif name == "failure_reason":
                values[name] = None if value is None else str(value)
            else:
                values[name] = _float(value)
        return cls(**values)


def _float(value: Any) -> float:
    return _NAN if value is None else float(value)


def _jsonable(value: Any) -> Any:
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value
