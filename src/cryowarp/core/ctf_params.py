"""CTF parameters: the :class:`CTFParams` dataclass, its RELION/Warp constructors and
conversions.

Units, signs and the RELION/Warp mapping: docs/conventions.md §6 and docs/ctf.md.  Every
parameter is a tensor broadcastable to a common *batch shape*; evaluation is in
:mod:`cryowarp.core.ctf`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields

import torch

from cryowarp.core.aberrations import magnification_matrix_from_warp
from cryowarp.core.electron import electron_wavelength_a
from cryowarp.errors import InvalidValuesError

__all__ = ["CTFParams"]

Scalar = float | torch.Tensor

_SCALARS = (
    "pixel_size_a",
    "voltage_kv",
    "cs_mm",
    "amplitude_contrast",
    "defocus_um",
    "astig_x_um",
    "astig_y_um",
    "phase_shift_rad",
    "bfactor_a2",
    "scale",
)


@dataclass(frozen=True, eq=False)
class CTFParams:
    """CTF parameters; every field is a tensor broadcastable to :attr:`batch_shape`.

    Build with :meth:`create`, :meth:`from_relion` or :meth:`from_warp`.

    Attributes
    ----------
    pixel_size_a, voltage_kv, cs_mm, amplitude_contrast:
        Pixel size (Å), acceleration voltage (kV), spherical aberration (mm), amplitude
        contrast (fraction, ``0 ≤ A < 1``).
    defocus_um:
        Mean defocus ``(U + V)/2`` in µm, positive for underfocus.
    astig_x_um, astig_y_um:
        Astigmatism ``(δ cos 2θ, δ sin 2θ)`` with ``δ = (U − V)/2`` in µm and ``θ`` the
        defocus angle.
    phase_shift_rad:
        Phase-plate shift in radians.
    bfactor_a2:
        Envelope ``exp(B k²/4)`` in Å²; negative values attenuate (Warp's sign).
    scale:
        Overall multiplier.
    mag_matrix:
        ``(*batch, 2, 2)`` anisotropic magnification (``k_true = M k``) or ``None``.
    beam_tilt_mrad:
        ``(*batch, 2)`` beam tilt (x, y) in mrad or ``None``.
    odd_zernike, even_zernike:
        ``(*batch, n)`` RELION ``rlnOddZernike`` / ``rlnEvenZernike`` coefficients (radians,
        polynomials at ``k`` in Å⁻¹) or ``None``.
    """

    pixel_size_a: torch.Tensor
    voltage_kv: torch.Tensor
    cs_mm: torch.Tensor
    amplitude_contrast: torch.Tensor
    defocus_um: torch.Tensor
    astig_x_um: torch.Tensor
    astig_y_um: torch.Tensor
    phase_shift_rad: torch.Tensor
    bfactor_a2: torch.Tensor
    scale: torch.Tensor
    mag_matrix: torch.Tensor | None = None
    beam_tilt_mrad: torch.Tensor | None = None
    odd_zernike: torch.Tensor | None = None
    even_zernike: torch.Tensor | None = None

    # -- construction --------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        *,
        pixel_size_a: Scalar,
        defocus_um: Scalar,
        voltage_kv: Scalar = 300.0,
        cs_mm: Scalar = 2.7,
        amplitude_contrast: Scalar = 0.07,
        astig_x_um: Scalar = 0.0,
        astig_y_um: Scalar = 0.0,
        phase_shift_rad: Scalar = 0.0,
        bfactor_a2: Scalar = 0.0,
        scale: Scalar = 1.0,
        mag_matrix: torch.Tensor | None = None,
        beam_tilt_mrad: torch.Tensor | None = None,
        odd_zernike: torch.Tensor | None = None,
        even_zernike: torch.Tensor | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> CTFParams:
        """Parameters from floats or tensors (tensors are kept, so gradients flow).

        The device and floating dtype are taken from the first tensor argument unless given.
        Raises :class:`~cryowarp.errors.InvalidValuesError` for non-positive pixel size or
        voltage, or amplitude contrast outside ``[0, 1)``.
        """
        scalars: dict[str, Scalar] = {
            "pixel_size_a": pixel_size_a,
            "voltage_kv": voltage_kv,
            "cs_mm": cs_mm,
            "amplitude_contrast": amplitude_contrast,
            "defocus_um": defocus_um,
            "astig_x_um": astig_x_um,
            "astig_y_um": astig_y_um,
            "phase_shift_rad": phase_shift_rad,
            "bfactor_a2": bfactor_a2,
            "scale": scale,
        }
        optional = {
            "mag_matrix": mag_matrix,
            "beam_tilt_mrad": beam_tilt_mrad,
            "odd_zernike": odd_zernike,
            "even_zernike": even_zernike,
        }
        given = [v for v in (*scalars.values(), *optional.values()) if isinstance(v, torch.Tensor)]
        if device is None:
            device = given[0].device if given else torch.device("cpu")
        if dtype is None:
            floats = [t.dtype for t in given if t.is_floating_point()]
            dtype = floats[0] if floats else torch.get_default_dtype()
        values = {k: _as_tensor(v, device, dtype) for k, v in scalars.items()}
        extra = {
            k: None if v is None else _as_tensor(v, device, dtype) for k, v in optional.items()
        }
        params = _params_from(values, extra)
        params.validate()
        return params

    @classmethod
    def from_relion(
        cls,
        *,
        defocus_u_a: Scalar,
        defocus_v_a: Scalar,
        defocus_angle_deg: Scalar,
        pixel_size_a: Scalar,
        voltage_kv: Scalar = 300.0,
        cs_mm: Scalar = 2.7,
        amplitude_contrast: Scalar = 0.1,
        phase_shift_deg: Scalar = 0.0,
        relion_bfactor_a2: Scalar = 0.0,
        scale: Scalar = 1.0,
        mag_matrix: torch.Tensor | None = None,
        beam_tilt_mrad: torch.Tensor | None = None,
        odd_zernike: torch.Tensor | None = None,
        even_zernike: torch.Tensor | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> CTFParams:
        """Parameters from RELION's ``rlnDefocusU/V`` (Å), ``rlnDefocusAngle`` (deg),
        ``rlnPhaseShift`` (deg) and ``rlnCtfBfactor`` (Å², RELION's envelope is
        ``exp(−B k²/4)``: positive attenuates, so the sign is flipped here).

        ``mag_matrix`` (``rlnMagMat``), ``beam_tilt_mrad`` (``rlnBeamTiltX/Y``),
        ``odd_zernike``, ``even_zernike``, ``device`` and ``dtype`` are as in :meth:`create`.
        """
        u, v, angle = _tensors(defocus_u_a, defocus_v_a, defocus_angle_deg, dtype=dtype)
        mean_um, ax, ay = _astig_from_uv(u * 1e-4, v * 1e-4, angle)
        phase = phase_shift_deg * (math.pi / 180.0)
        return cls.create(
            pixel_size_a=pixel_size_a,
            defocus_um=mean_um,
            astig_x_um=ax,
            astig_y_um=ay,
            voltage_kv=voltage_kv,
            cs_mm=cs_mm,
            amplitude_contrast=amplitude_contrast,
            phase_shift_rad=phase,
            bfactor_a2=-relion_bfactor_a2,
            scale=scale,
            mag_matrix=mag_matrix,
            beam_tilt_mrad=beam_tilt_mrad,
            odd_zernike=odd_zernike,
            even_zernike=even_zernike,
            device=device,
            dtype=dtype,
        )

    @classmethod
    def from_warp(
        cls,
        *,
        defocus_um: Scalar,
        defocus_delta_um: Scalar,
        defocus_angle_deg: Scalar,
        pixel_size_a: Scalar,
        voltage_kv: Scalar = 300.0,
        cs_mm: Scalar = 2.7,
        amplitude: Scalar = 0.07,
        phase_shift_pi: Scalar = 0.0,
        bfactor_a2: Scalar = 0.0,
        scale: Scalar = 1.0,
        pixel_size_delta_a: Scalar = 0.0,
        pixel_size_angle_deg: Scalar = 0.0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> CTFParams:
        """Parameters from Warp's CTF fields: ``Defocus`` (µm, mean), ``DefocusDelta``
        (µm, ``U − V``), ``DefocusAngle`` (deg), ``PhaseShift`` (units of π), ``Amplitude``,
        ``Bfactor`` (Å², same sign as cryowarp), ``Scale``, ``PixelSize`` and
        ``PixelSizeDelta``/``PixelSizeAngle`` (Å, deg; see
        :func:`~cryowarp.core.aberrations.magnification_matrix_from_warp`).
        """
        mean, delta, angle = _tensors(defocus_um, defocus_delta_um, defocus_angle_deg, dtype=dtype)
        _, ax, ay = _astig_from_uv(mean + delta / 2, mean - delta / 2, angle)
        mag = None
        if isinstance(pixel_size_delta_a, torch.Tensor) or pixel_size_delta_a != 0.0:
            mag = magnification_matrix_from_warp(
                pixel_size_a, pixel_size_delta_a, pixel_size_angle_deg
            )
        return cls.create(
            pixel_size_a=pixel_size_a,
            defocus_um=defocus_um,
            astig_x_um=ax,
            astig_y_um=ay,
            voltage_kv=voltage_kv,
            cs_mm=cs_mm,
            amplitude_contrast=amplitude,
            phase_shift_rad=phase_shift_pi * math.pi,
            bfactor_a2=bfactor_a2,
            scale=scale,
            mag_matrix=mag,
            device=device,
            dtype=dtype,
        )

    def validate(self) -> None:
        """Raise :class:`~cryowarp.errors.InvalidValuesError` for impossible values."""
        checks = (
            (self.pixel_size_a <= 0, "pixel_size_a must be positive"),
            (self.voltage_kv <= 0, "voltage_kv must be positive"),
            (
                (self.amplitude_contrast < 0) | (self.amplitude_contrast >= 1),
                "amplitude_contrast must lie in [0, 1)",
            ),
        )
        for bad, problem in checks:
            if bool(bad.any()):
                raise InvalidValuesError(None, f"CTF parameters: {problem}")
        for name in _SCALARS:
            if not bool(torch.isfinite(getattr(self, name)).all()):
                raise InvalidValuesError(None, f"CTF parameters: {name} is not finite")
        self.batch_shape  # noqa: B018 - raises InvalidValuesError when shapes do not broadcast

    # -- accessors -----------------------------------------------------------------------

    @property
    def batch_shape(self) -> torch.Size:
        """Broadcast shape of all parameters (vector fields without their last dims)."""
        shapes = [getattr(self, name).shape for name in _SCALARS]
        if self.mag_matrix is not None:
            shapes.append(self.mag_matrix.shape[:-2])
        for vector in (self.beam_tilt_mrad, self.odd_zernike, self.even_zernike):
            if vector is not None:
                shapes.append(vector.shape[:-1])
        return _broadcast_shapes(shapes)

    @property
    def device(self) -> torch.device:
        return self.defocus_um.device

    @property
    def wavelength_a(self) -> torch.Tensor:
        """Electron wavelength in Å (docs/conventions.md §5)."""
        return electron_wavelength_a(self.voltage_kv)

    @property
    def astigmatism_um(self) -> torch.Tensor:
        """``δ = (U − V)/2`` in µm (non-negative)."""
        return torch.hypot(self.astig_x_um, self.astig_y_um)

    @property
    def defocus_angle_deg(self) -> torch.Tensor:
        """Angle ``θ`` of ``U`` from +x towards +y, in degrees, in ``[−90, 90]``."""
        return torch.rad2deg(0.5 * torch.atan2(self.astig_y_um, self.astig_x_um))

    def to_relion_defocus(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(rlnDefocusU, rlnDefocusV, rlnDefocusAngle)`` in Å, Å, degrees (``U ≥ V``)."""
        delta = self.astigmatism_um
        return (
            (self.defocus_um + delta) * 1e4,
            (self.defocus_um - delta) * 1e4,
            self.defocus_angle_deg,
        )

    def to_warp_defocus(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(Defocus, DefocusDelta, DefocusAngle)`` in µm, µm, degrees."""
        return self.defocus_um, 2 * self.astigmatism_um, self.defocus_angle_deg

    def defocus_along_um(self, angle_deg: Scalar) -> torch.Tensor:
        """Defocus (µm) for frequencies along direction ``angle_deg`` (from +x towards +y)."""
        phi = torch.deg2rad(
            torch.as_tensor(angle_deg, device=self.device, dtype=self.defocus_um.dtype)
        )
        return (
            self.defocus_um
            + self.astig_x_um * torch.cos(2 * phi)
            + self.astig_y_um * torch.sin(2 * phi)
        )

    def to(self, device: torch.device | str) -> CTFParams:
        """A copy with every tensor on ``device``."""
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        return _params_from(
            {k: v.to(device) for k, v in moved.items() if k in _SCALARS},
            {k: None if v is None else v.to(device) for k, v in moved.items() if k not in _SCALARS},
        )


# -- private helpers -------------------------------------------------------------------


def _as_tensor(value: Scalar, device: torch.device | str, dtype: torch.dtype) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.to(device=device, dtype=dtype)
    return torch.tensor(float(value), device=device, dtype=dtype)


def _tensors(*values: Scalar, dtype: torch.dtype | None) -> tuple[torch.Tensor, ...]:
    ref = next((v for v in values if isinstance(v, torch.Tensor)), None)
    device = None if ref is None else ref.device
    dtype = dtype if dtype is not None else None if ref is None else ref.dtype
    return tuple(
        v if isinstance(v, torch.Tensor) else torch.tensor(float(v), device=device, dtype=dtype)
        for v in values
    )


def _broadcast_shapes(shapes: Sequence[torch.Size]) -> torch.Size:
    ndim = max((len(s) for s in shapes), default=0)
    out = [1] * ndim
    for shape in shapes:
        for i, n in enumerate(shape, start=ndim - len(shape)):
            if n != 1 and out[i] not in (1, n):
                raise InvalidValuesError(
                    None, f"CTF parameter shapes {[tuple(s) for s in shapes]} do not broadcast"
                )
            out[i] = n if n != 1 else out[i]
    return torch.Size(out)


def _params_from(
    values: Mapping[str, torch.Tensor], optional: Mapping[str, torch.Tensor | None]
) -> CTFParams:
    return CTFParams(
        pixel_size_a=values["pixel_size_a"],
        voltage_kv=values["voltage_kv"],
        cs_mm=values["cs_mm"],
        amplitude_contrast=values["amplitude_contrast"],
        defocus_um=values["defocus_um"],
        astig_x_um=values["astig_x_um"],
        astig_y_um=values["astig_y_um"],
        phase_shift_rad=values["phase_shift_rad"],
        bfactor_a2=values["bfactor_a2"],
        scale=values["scale"],
        mag_matrix=optional["mag_matrix"],
        beam_tilt_mrad=optional["beam_tilt_mrad"],
        odd_zernike=optional["odd_zernike"],
        even_zernike=optional["even_zernike"],
    )


def _astig_from_uv(
    u: torch.Tensor, v: torch.Tensor, angle_deg: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean, δcos2θ, δsin2θ from U, V (same unit) and θ in degrees."""
    delta = (u - v) / 2
    two_theta = 2 * torch.deg2rad(angle_deg)
    return (u + v) / 2, delta * torch.cos(two_theta), delta * torch.sin(two_theta)
