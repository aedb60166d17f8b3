"""The contrast transfer function: parameters and evaluation.

Formula, signs, units and the RELION/Warp mapping: docs/conventions.md §6 and docs/ctf.md.
Every parameter is a tensor broadcastable to a common *batch shape*; evaluating on a grid of
shape ``G`` returns ``(*batch_shape, *G)``.  Gradients flow to every tensor parameter.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields

import torch

from cryowarp.core.aberrations import (
    apply_magnification,
    beam_tilt_phase_rad,
    even_zernike_phase_rad,
    magnification_matrix_from_warp,
    odd_zernike_phase_rad,
)
from cryowarp.core.electron import electron_wavelength_a
from cryowarp.core.fourier_grids import frequency_grid
from cryowarp.errors import InvalidValuesError

__all__ = [
    "CTFParams",
    "ctf_1d",
    "ctf_2d",
    "ctf_at_frequencies",
    "ctf_frequency_grid",
    "ctf_zero_frequencies_a",
    "odd_phase_factor",
    "odd_phase_factor_2d",
    "polar_frequency_coordinates",
]

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
        u, v, angle = _tensors(defocus_u_a, defocus_v_a, defocus_angle_deg)
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
        mean, delta, angle = _tensors(defocus_um, defocus_delta_um, defocus_angle_deg)
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
        """Angle ``θ`` of ``U`` from +x towards +y, in degrees, in ``(−90, 90]``."""
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
        phi = torch.deg2rad(torch.as_tensor(angle_deg, device=self.device))
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


# -- frequency coordinates -------------------------------------------------------------


def ctf_frequency_grid(
    shape: tuple[int, int],
    *,
    rfft: bool = True,
    fftshifted: bool = False,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Frequency vectors (cycles/pixel) at which :func:`ctf_2d` evaluates the CTF.

    The layout is that of :func:`~cryowarp.core.fourier_grids.frequency_grid`, except that
    the Nyquist sample of an even-sized axis is taken at **+½** rather than −½ — the choice of
    RELION and Warp (pinned by the Warp golden test).  It matters only with astigmatism.

    Returns
    -------
    torch.Tensor
        ``(*fourier_shape, 2)`` with components (x, y).
    """
    grid = frequency_grid(shape, rfft=rfft, fftshifted=fftshifted, device=device, dtype=dtype)
    return torch.where(grid == -0.5, torch.full_like(grid, 0.5), grid)


def polar_frequency_coordinates(k_xy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Squared magnitude and angle of frequency vectors.

    Parameters
    ----------
    k_xy:
        ``(..., 2)`` frequencies (any unit).

    Returns
    -------
    (torch.Tensor, torch.Tensor)
        ``|k|²`` (unit²) and the angle from +x towards +y in radians, each ``(...)``.
    """
    return k_xy.square().sum(-1), torch.atan2(k_xy[..., 1], k_xy[..., 0])


# -- evaluation ------------------------------------------------------------------------


def ctf_at_frequencies(
    params: CTFParams,
    k_xy_per_a: torch.Tensor,
    *,
    frequencies_batched: bool = False,
    ignore_first_peak: bool = False,
) -> torch.Tensor:
    """The real CTF at arbitrary spatial frequencies.

    Includes defocus, astigmatism, Cs, amplitude contrast, phase shift, even Zernike terms,
    the B-factor envelope and the scale (docs/conventions.md §6).  Odd aberrations are in
    :func:`odd_phase_factor`.

    Parameters
    ----------
    params:
        Parameters of batch shape ``B``.
    k_xy_per_a:
        ``(*G, 2)`` or ``(*G, 3)`` frequencies in Å⁻¹, in the nominal (detector) frame; a 3-D
        vector is evaluated at its projection ``(kx, ky)`` onto the image plane.  With
        ``frequencies_batched=True`` the shape is ``(*B, *G, 2|3)``: one set per batch entry.
    ignore_first_peak:
        Set the oscillating factor to 1 where ``|χ| < π/2`` (up to the first peak), as
        RELION's "ignore CTFs until first peak" and Warp's ``ignorefirstpeak``.

    Returns
    -------
    torch.Tensor
        ``(*B, *G)``.
    """
    k, expand = _broadcast_frequencies(params, k_xy_per_a, frequencies_batched)
    k_true = _true_frequencies(params, k, expand)
    chi = _even_phase(params, k_true, expand)
    oscillation = torch.sin(chi)
    if ignore_first_peak:
        oscillation = torch.where(chi.abs() < math.pi / 2, torch.ones_like(chi), oscillation)
    k2 = k_true.square().sum(-1)
    envelope = torch.exp(expand(params.bfactor_a2) * k2 / 4.0)
    return expand(params.scale) * envelope * oscillation


def odd_phase_factor(
    params: CTFParams, k_xy_per_a: torch.Tensor, *, frequencies_batched: bool = False
) -> torch.Tensor:
    """``exp(i χ_odd(k))`` from beam tilt and odd Zernike terms.

    The model of an image is ``CTF · exp(i χ_odd) · F[projection]`` (RELION's phase
    correction).  Shapes as in :func:`ctf_at_frequencies`; returns a complex ``(*B, *G)``
    tensor (all ones when the parameters carry no odd aberrations).
    """
    k, expand = _broadcast_frequencies(params, k_xy_per_a, frequencies_batched)
    k_true = _true_frequencies(params, k, expand)
    phase = torch.zeros_like(k_true[..., 0])
    if params.beam_tilt_mrad is not None:
        tilt = expand(params.beam_tilt_mrad, trailing=1)
        phase = phase + beam_tilt_phase_rad(
            k_true, tilt, expand(params.cs_mm), expand(params.wavelength_a)
        )
    if params.odd_zernike is not None:
        phase = phase + odd_zernike_phase_rad(expand(params.odd_zernike, trailing=1), k_true)
    return torch.polar(torch.ones_like(phase), phase)


def ctf_2d(
    params: CTFParams,
    shape: tuple[int, int],
    *,
    rfft: bool = True,
    fftshifted: bool = False,
    ignore_first_peak: bool = False,
) -> torch.Tensor:
    """The CTF of images of real-space ``shape = (h, w)``.

    Parameters
    ----------
    rfft, fftshifted:
        Layout of the returned spectrum (docs/conventions.md §3; the Nyquist convention of
        :func:`ctf_frequency_grid`).

    Returns
    -------
    torch.Tensor
        ``(*B, h, w//2 + 1)`` (rfft) or ``(*B, h, w)``; on the device of ``params``.
    """
    return ctf_at_frequencies(
        params,
        _grid_per_a(params, shape, rfft=rfft, fftshifted=fftshifted),
        frequencies_batched=True,
        ignore_first_peak=ignore_first_peak,
    )


def odd_phase_factor_2d(
    params: CTFParams, shape: tuple[int, int], *, rfft: bool = True, fftshifted: bool = False
) -> torch.Tensor:
    """:func:`odd_phase_factor` on the Fourier grid of images of ``shape``; ``(*B, h, w')``."""
    return odd_phase_factor(
        params,
        _grid_per_a(params, shape, rfft=rfft, fftshifted=fftshifted),
        frequencies_batched=True,
    )


def ctf_1d(
    params: CTFParams,
    frequencies: torch.Tensor | int,
    *,
    angle_deg: float = 0.0,
    ignore_first_peak: bool = False,
) -> torch.Tensor:
    """The CTF along one direction.

    Parameters
    ----------
    frequencies:
        ``(n,)`` radial frequencies in Å⁻¹, or an int ``n`` for ``n`` samples from 0 to
        Nyquist (``1/(2·pixel_size_a)``, per batch entry) inclusive.
    angle_deg:
        Direction (from +x towards +y) along which astigmatic defocus is taken.

    Returns
    -------
    torch.Tensor
        ``(*B, n)``.
    """
    phi = math.radians(angle_deg)
    dtype = params.defocus_um.dtype
    if isinstance(frequencies, int):
        fraction = torch.linspace(0.0, 0.5, frequencies, device=params.device, dtype=dtype)
        radial = fraction / params.pixel_size_a.expand(params.batch_shape)[..., None]
        batched = True
    else:
        radial, batched = frequencies.to(device=params.device), False
    direction = torch.tensor([math.cos(phi), math.sin(phi)], device=params.device, dtype=dtype)
    k = radial[..., None] * direction
    return ctf_at_frequencies(
        params, k, frequencies_batched=batched, ignore_first_peak=ignore_first_peak
    )


def ctf_zero_frequencies_a(params: CTFParams, n_zeros: int) -> torch.Tensor:
    """Analytic frequencies (Å⁻¹) of the first ``n_zeros`` CTF zeros, ignoring astigmatism
    and Zernike terms (mean defocus only).

    Solves ``π λ Δz k² − (π/2) Cs λ³ k⁴ + φ = nπ`` for the smallest ``k > 0`` of each
    successive ``n``, where ``φ`` is the phase shift plus the amplitude-contrast phase.

    Returns
    -------
    torch.Tensor
        ``(*B, n_zeros)``; NaN where ``χ`` never reaches that multiple of π.
    """
    lam = params.wavelength_a
    a = math.pi * lam * params.defocus_um * 1e4
    b = 0.5 * math.pi * params.cs_mm * 1e7 * lam**3
    phi = params.phase_shift_rad + _amplitude_phase(params.amplitude_contrast)
    a, b, phi = (t.expand(params.batch_shape)[..., None] for t in (a, b, phi))
    first = torch.floor(phi / math.pi) + 1  # smallest n with nπ > φ(0)
    n = first + torch.arange(n_zeros, device=params.device, dtype=a.dtype)
    c = phi - n * math.pi  # −b u² + a u + c = 0 with u = k²
    disc = a * a + 4 * b * c
    safe_b = torch.where(b > 0, b, torch.ones_like(b))
    u = torch.where(b > 0, (a - torch.sqrt(disc)) / (2 * safe_b), -c / a)
    return torch.sqrt(u)


# -- private helpers -------------------------------------------------------------------


class _Expand:
    """Reshape a parameter of batch shape ``B`` (plus ``trailing`` dims) for a grid of
    ``n_grid`` dims: ``(*B, *[1]*n_grid, *trailing)``."""

    def __init__(self, batch_shape: torch.Size, n_grid: int) -> None:
        self.batch_shape = batch_shape
        self.n_grid = n_grid

    def __call__(self, value: torch.Tensor, *, trailing: int = 0) -> torch.Tensor:
        tail = value.shape[value.ndim - trailing :] if trailing else torch.Size()
        value = value.expand((*self.batch_shape, *tail))
        return value.reshape((*self.batch_shape, *([1] * self.n_grid), *tail))


def _broadcast_frequencies(
    params: CTFParams, k: torch.Tensor, batched: bool
) -> tuple[torch.Tensor, _Expand]:
    if k.shape[-1] not in (2, 3):
        raise InvalidValuesError(
            None, f"frequency vectors must have 2 or 3 components, got shape {tuple(k.shape)}"
        )
    k = k[..., :2].to(device=params.device)
    batch = params.batch_shape
    if batched:
        if tuple(k.shape[: len(batch)]) != tuple(batch):
            raise InvalidValuesError(
                None,
                f"batched frequencies {tuple(k.shape)} do not start with the parameters' "
                f"batch shape {tuple(batch)}",
            )
        n_grid = k.ndim - 1 - len(batch)
    else:
        n_grid = k.ndim - 1
        k = k.reshape(*([1] * len(batch)), *k.shape)
    return k, _Expand(batch, n_grid)


def _true_frequencies(params: CTFParams, k: torch.Tensor, expand: _Expand) -> torch.Tensor:
    if params.mag_matrix is None:
        return k
    return apply_magnification(k, expand(params.mag_matrix, trailing=2))


def _amplitude_phase(amplitude_contrast: torch.Tensor) -> torch.Tensor:
    return torch.atan(amplitude_contrast / torch.sqrt(1 - amplitude_contrast.square()))


def _even_phase(params: CTFParams, k_true: torch.Tensor, expand: _Expand) -> torch.Tensor:
    """χ(k) without odd terms, in radians, ``(*B, *G)``, at true frequencies (Å⁻¹)."""
    kx, ky = k_true[..., 0], k_true[..., 1]
    k2 = kx * kx + ky * ky
    lam = expand(params.wavelength_a)
    # Δz(φ)·k² = Δz̄ k² + δcos2θ (kx² − ky²) + δsin2θ (2 kx ky): smooth at k = 0 and δ = 0.
    defocus_k2_a = (
        expand(params.defocus_um) * k2
        + expand(params.astig_x_um) * (kx * kx - ky * ky)
        + expand(params.astig_y_um) * (2 * kx * ky)
    ) * 1e4
    chi = (
        math.pi * lam * defocus_k2_a
        - 0.5 * math.pi * expand(params.cs_mm) * 1e7 * lam**3 * k2 * k2
        + expand(params.phase_shift_rad)
        + expand(_amplitude_phase(params.amplitude_contrast))
    )
    if params.even_zernike is not None:
        # RELION adds the even Zernike phase to γ = −χ.
        chi = chi - even_zernike_phase_rad(expand(params.even_zernike, trailing=1), k_true)
    return chi


def _grid_per_a(
    params: CTFParams, shape: tuple[int, int], *, rfft: bool, fftshifted: bool
) -> torch.Tensor:
    """``(*B, *fourier_shape, 2)`` frequencies in Å⁻¹."""
    if len(shape) != 2:
        raise InvalidValuesError(None, f"ctf_2d needs an image shape (h, w), got {shape}")
    grid = ctf_frequency_grid(
        shape,
        rfft=rfft,
        fftshifted=fftshifted,
        device=params.device,
        dtype=params.defocus_um.dtype,
    )
    pixel = params.pixel_size_a.expand(params.batch_shape)
    return grid / pixel.reshape(*pixel.shape, 1, 1, 1)


def _as_tensor(value: Scalar, device: torch.device | str, dtype: torch.dtype) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.to(device=device, dtype=dtype)
    return torch.tensor(float(value), device=device, dtype=dtype)


def _tensors(*values: Scalar) -> tuple[torch.Tensor, ...]:
    ref = next((v for v in values if isinstance(v, torch.Tensor)), None)
    device = None if ref is None else ref.device
    dtype = None if ref is None else ref.dtype
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
