"""The cost of the motion fit (see :mod:`.fit` for the whole method).

For a trial model the shift of every patch in every frame is the model's mean over the patch;
each patch spectrum is moved back by its shift (a phase ramp) and compared with the sum of
the other frames of the same patch:

    cost = − mean over patches p and frames t of  Re⟨A_pt, S_p − A_pt⟩ / (‖A_pt‖ ‖S_p − A_pt‖)

with ``A_pt`` the aligned, band-limited, B-factor weighted spectrum and ``S_p = Σ_t A_pt``,
plus a weak penalty on the spatial mean of the local field. Frame 0 is held at zero.
"""

from __future__ import annotations

import torch

from cryowarp.core.spline_grid import evaluate_cubic_grid
from cryowarp.preprocess.motion.model import surface_mean_weights
from cryowarp.preprocess.motion.patches import PatchSpectra, edge_taper

__all__ = ["PatchCost"]

_LOCAL_MEAN_PENALTY = 1e-2  # per Å² of spatial mean of the local field (the cost is ~O(1));
# it only lifts the degeneracy between the local mean and the global track, so it can be weak.
_SUBSAMPLES = 5  # local field samples per patch and axis (patch-mean shift)


class PatchCost:
    """The fit's cost as a function of the free grid values (frame 0 held at zero)."""

    def __init__(
        self,
        data: PatchSpectra,
        *,
        n_frames: int,
        field_size_a: tuple[float, float],
        local_dims: tuple[int, int, int],
    ) -> None:
        self.data = data
        self.n_frames = n_frames
        spectra = data.spectra
        self.real = spectra.real.contiguous()
        self.imag = spectra.imag.contiguous()
        self.norms2 = (self.real.square() + self.imag.square()).sum((-2, -1))  # (p, n)
        device, dtype = spectra.device, spectra.real.dtype
        size = data.size_px
        self.ky = torch.fft.fftfreq(size, device=device, dtype=dtype)  # cycles/px
        self.kx = torch.fft.rfftfreq(size, device=device, dtype=dtype)
        self.times = torch.arange(n_frames, device=device, dtype=dtype) / max(1, n_frames - 1)
        field = torch.tensor(field_size_a, device=device, dtype=dtype)
        # A patch measures the mean shift over its area (weighted like the correlation, by
        # the squared taper), not the shift at its centre: sample the local field at
        # _SUBSAMPLES² points per patch and average with those weights, else a field that
        # varies across a patch comes out attenuated.
        offsets = (torch.arange(_SUBSAMPLES, device=device, dtype=dtype) + 0.5) / _SUBSAMPLES
        taper = edge_taper((_SUBSAMPLES * 8, 1), device=device, dtype=dtype)[:, 0]
        weights_1d = taper.reshape(_SUBSAMPLES, 8).square().mean(dim=1)
        weights = weights_1d[:, None] * weights_1d[None, :]
        self.sub_weights = (weights / weights.sum()).reshape(-1)  # (k,)
        oy, ox = torch.meshgrid(offsets - 0.5, offsets - 0.5, indexing="ij")
        sub_a = torch.stack([ox, oy], dim=-1).reshape(-1, 2) * data.size_px * data.pixel_size_a
        xy = (data.centres_a.to(dtype)[:, None, :] + sub_a[None]) / field  # (p, k, 2)
        p, k = xy.shape[:2]
        self.local_coords = torch.cat(
            [
                xy[:, :, None, :].expand(p, k, n_frames, 2),
                self.times[None, None, :, None].expand(p, k, n_frames, 1),
            ],
            dim=-1,
        )  # (p, k, n, 3)

        self.local_dims = local_dims
        self.local = max(local_dims) > 1
        self._global_bases: dict[int, torch.Tensor] = {}
        self._local_basis_cache: torch.Tensor | None = None
        self.mean_weights = surface_mean_weights(local_dims[1], local_dims[0], device=device)

    def _global_basis(self, nodes: int) -> torch.Tensor:  # (T, n)
        """Track of each unit node: the spline is linear in its values, so the track is
        ``values @ basis``; cached per node count."""
        if nodes not in self._global_bases:
            unit = torch.eye(nodes, device=self.times.device, dtype=self.times.dtype)
            self._global_bases[nodes] = evaluate_cubic_grid(unit, self.times[None, :, None])
        return self._global_bases[nodes]

    def _local_basis(self) -> torch.Tensor:  # (t·gy·gx, p, n)
        """Patch-mean local shift of each unit node (fixed coordinates: computed once)."""
        if self._local_basis_cache is None:
            gx, gy, gt = self.local_dims
            count = gt * gy * gx
            unit = torch.eye(count, device=self.times.device, dtype=self.times.dtype)
            values = evaluate_cubic_grid(unit.reshape(count, gt, gy, gx), self.local_coords[None])
            self._local_basis_cache = torch.einsum("npkf,k->npf", values, self.sub_weights)
        return self._local_basis_cache

    def shifts_a(self, global_free: torch.Tensor, local_free: torch.Tensor) -> torch.Tensor:
        """``(p, n, 2)`` shifts (Å) of every patch in every frame."""
        zeros = torch.zeros_like(global_free[:, :1])
        g = torch.cat([zeros, global_free], dim=1)  # (2, T)
        track = g @ self._global_basis(g.shape[1])  # (2, n)
        shifts = track.T[None]  # (1, n, 2)
        if self.local:
            loc = torch.cat([torch.zeros_like(local_free[:, :1]), local_free], dim=1)
            values = torch.einsum("cm,mpn->pnc", loc.reshape(2, -1), self._local_basis())
            shifts = shifts + values
        return shifts

    def __call__(self, global_free: torch.Tensor, local_free: torch.Tensor) -> torch.Tensor:
        shifts_px = self.shifts_a(global_free, local_free) / self.data.pixel_size_a
        shifts_px = shifts_px - self.data.offsets_px  # the patches were cut following these
        # Align: move every patch back by its shift, A = F·exp(+2πi k·s), in real arithmetic
        # (complex autograd is several times slower on the CPU). The ramp is separable.
        phase_x = (2 * torch.pi) * shifts_px[..., 0, None] * self.kx  # (p, n, s//2+1)
        phase_y = (2 * torch.pi) * shifts_px[..., 1, None] * self.ky  # (p, n, s)
        cx, sx = torch.cos(phase_x)[..., None, :], torch.sin(phase_x)[..., None, :]
        cy, sy = torch.cos(phase_y)[..., :, None], torch.sin(phase_y)[..., :, None]
        cos = cy * cx - sy * sx  # (p, n, s, s//2+1)
        sin = sy * cx + cy * sx
        fr, fi = self.real, self.imag
        ar = fr * cos - fi * sin
        ai = fr * sin + fi * cos
        tr, ti = ar.sum(dim=1, keepdim=True), ai.sum(dim=1, keepdim=True)  # S_p
        cross = (ar * tr + ai * ti).sum((-2, -1))  # (p, n) = Re⟨A, S⟩
        total2 = (tr.square() + ti.square()).sum((-2, -1))  # (p, 1)
        own = self.norms2
        with_others = cross - own
        others2 = (total2 - 2 * cross + own).clamp(min=1e-30)
        score = with_others / (own.clamp(min=1e-30) * others2).sqrt()
        cost = -score.mean()
        if self.local:
            loc = torch.cat([torch.zeros_like(local_free[:, :1]), local_free], dim=1)
            mean = (loc * self.mean_weights).sum(dim=(-2, -1))  # (2, t) spatial means
            penalty = mean.square().sum() / max(1, mean.shape[1])
            cost = cost + _LOCAL_MEAN_PENALTY * penalty
        return cost
