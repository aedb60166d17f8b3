"""The CTF of a simulated movie: defocus of a (possibly tilted) sample plane plus astigmatism.

The defocus at a specimen point ``(x, y, z)`` follows docs/conventions.md §9: ``x, y`` in Å
from the centre of pixel (0, 0), ``z`` in Å towards the electron source, measured from the
eucentric point, which sits at the field centre (pixel ``(w//2, h//2)``) on the mid-plane of
the ice.  The mid-plane is the plane ``z = 0`` of the sample turned by
:func:`~cryowarp.core.tilt_geometry.tilt_rotation_matrix`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch

from cryowarp.core.ctf import CTFParams
from cryowarp.core.tilt_geometry import defocus_at_positions_um, tilt_rotation_matrix

__all__ = ["SampleCTF"]


@dataclass(frozen=True)
class SampleCTF:
    """Per-movie CTF ground truth.

    Attributes
    ----------
    pixel_size_a, voltage_kv, cs_mm, amplitude_contrast:
        Imaging constants (Å, kV, mm, fraction).
    defocus_um:
        Mean defocus ``(U + V)/2`` at the eucentric point (µm, underfocus positive).
    astigmatism_um:
        ``(U − V)/2`` in µm (the same everywhere in the field).
    astigmatism_angle_deg:
        Angle of ``U`` from +x towards +y (degrees), as ``rlnDefocusAngle``.
    phase_shift_deg:
        Phase-plate shift (degrees).
    sample_tilt_deg, sample_tilt_axis_deg:
        Tilt of the sample plane and direction of its axis from +x towards +y (degrees).
    centre_xy_a:
        The eucentric point (x, y) in Å from the centre of pixel (0, 0).
    """

    pixel_size_a: float
    voltage_kv: float
    cs_mm: float
    amplitude_contrast: float
    defocus_um: float
    astigmatism_um: float
    astigmatism_angle_deg: float
    phase_shift_deg: float
    sample_tilt_deg: float
    sample_tilt_axis_deg: float
    centre_xy_a: tuple[float, float]

    def plane_normal(self, *, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """``(3,)`` unit normal of the ice mid-plane, (x, y, z)."""
        rotation = tilt_rotation_matrix(
            self.sample_tilt_deg, tilt_axis_angle_deg=self.sample_tilt_axis_deg, dtype=dtype
        )
        return rotation[:, 2]

    def plane_height_a(self, positions_xy_a: torch.Tensor) -> torch.Tensor:
        """Height ``z`` (Å) of the ice mid-plane at image positions ``(..., 2)`` (x, y) in Å."""
        n = self.plane_normal(dtype=positions_xy_a.dtype).to(positions_xy_a.device)
        centre = torch.tensor(self.centre_xy_a, dtype=positions_xy_a.dtype)
        d = positions_xy_a - centre.to(positions_xy_a.device)
        return -(n[0] * d[..., 0] + n[1] * d[..., 1]) / n[2]

    def defocus_at(self, positions_a: torch.Tensor) -> torch.Tensor:
        """Mean defocus (µm) at positions ``(..., 2)`` on the mid-plane or ``(..., 3)`` (x, y, z)
        in Å (``z`` absolute, as in the particle table)."""
        if positions_a.shape[-1] == 2:
            z = self.plane_height_a(positions_a)
            xy = positions_a
        else:
            xy, z = positions_a[..., :2], positions_a[..., 2]
        centre = torch.tensor(self.centre_xy_a, dtype=xy.dtype, device=xy.device)
        relative = torch.cat([xy - centre, z[..., None]], dim=-1)
        return defocus_at_positions_um(relative, defocus_um=self.defocus_um)

    def relion_defocus_a(
        self, defocus_um: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(rlnDefocusU, rlnDefocusV, rlnDefocusAngle)`` (Å, Å, deg) for mean defocus values."""
        u = (defocus_um + self.astigmatism_um) * 1e4
        v = (defocus_um - self.astigmatism_um) * 1e4
        return u, v, torch.full_like(defocus_um, self.astigmatism_angle_deg)

    def ctf_params(self, defocus_um: torch.Tensor | float | None = None) -> CTFParams:
        """:class:`CTFParams` of batch shape ``defocus_um.shape`` (the eucentric defocus when
        ``None``); float32 unless ``defocus_um`` is a tensor of another dtype."""
        defocus = self.defocus_um if defocus_um is None else defocus_um
        two_theta = math.radians(2 * self.astigmatism_angle_deg)
        return CTFParams.create(
            pixel_size_a=self.pixel_size_a,
            defocus_um=defocus,
            voltage_kv=self.voltage_kv,
            cs_mm=self.cs_mm,
            amplitude_contrast=self.amplitude_contrast,
            astig_x_um=self.astigmatism_um * math.cos(two_theta),
            astig_y_um=self.astigmatism_um * math.sin(two_theta),
            phase_shift_rad=math.radians(self.phase_shift_deg),
            dtype=defocus.dtype if isinstance(defocus, torch.Tensor) else torch.float32,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dictionary (:meth:`from_dict` restores it exactly)."""
        data = asdict(self)
        data["centre_xy_a"] = list(self.centre_xy_a)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SampleCTF:
        """Inverse of :meth:`to_dict`."""
        values = dict(data)
        cx, cy = values.pop("centre_xy_a")
        return cls(centre_xy_a=(float(cx), float(cy)), **{k: float(v) for k, v in values.items()})
