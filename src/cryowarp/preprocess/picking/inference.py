"""Pick particles and mask artefacts with BoxNet, as Warp does (docs/picking_inference.md).

Three steps, each a public function:

1. :func:`predict_probabilities` runs the network over a prepared micrograph (8 Å/px,
   :func:`~cryowarp.preprocess.picking.prepare.prepare_micrograph`) in overlapping tiles and
   returns per-pixel softmax probabilities of background, particle and artefact.
2. :func:`picks_from_probabilities` turns the probabilities into picks and an artefact mask.
   It is pure, fast post-processing (milliseconds), so re-thresholding never re-runs the
   network.
3. :func:`pick_micrograph` chains preparation, prediction and post-processing and returns a
   :class:`PickResult` with positions in Å in the original micrograph's frame (docs/
   conventions.md §1–2: from the centre of pixel (0, 0), (x, y) order), which keeps the
   probabilities so that :meth:`PickResult.rethreshold` is instant.

Tiling: :mod:`cryowarp.preprocess.picking.prediction`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from scipy import ndimage
from scipy.spatial import cKDTree

from cryowarp.errors import DimensionMismatchError, InvalidValuesError
from cryowarp.preprocess.picking.model_file import BoxNetModel
from cryowarp.preprocess.picking.network import ARTEFACT, CLASS_NAMES, PARTICLE
from cryowarp.preprocess.picking.prediction import predict_probabilities
from cryowarp.preprocess.picking.prepare import (
    PICKING_PIXEL_SIZE_A,
    PreparedMicrograph,
    prepare_micrograph,
)
from cryowarp.preprocess.picking.settings import PickingSettings

__all__ = [
    "PickResult",
    "Picks",
    "artefact_mask_from_probability",
    "pick_micrograph",
    "picks_from_probabilities",
    "predict_probabilities",
]

_MIN_DIAMETER_PX = 2.0
_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


# ------------------------------------------------------------------------- post-processing


@dataclass(frozen=True)
class Picks:
    """Picks and artefact mask at the picking pixel size (8 Å/px).

    Attributes
    ----------
    positions_px:
        ``(n, 2)`` float64 (x, y) centroids in pixels of the prepared image, by decreasing
        score.
    scores:
        ``(n,)`` float32: the highest particle probability in each pick's component.
    areas_px:
        ``(n,)`` int64: pixels in each pick's component.
    artefact_mask:
        ``(h', w')`` bool.
    masked_fraction:
        Fraction of the micrograph inside the artefact mask.
    """

    positions_px: torch.Tensor  # (n, 2)
    scores: torch.Tensor  # (n,)
    areas_px: torch.Tensor  # (n,)
    artefact_mask: torch.Tensor  # (h', w')
    masked_fraction: float

    @property
    def n_picks(self) -> int:
        return int(self.scores.shape[0])


def _pixel_xy(pixel_size_a: float | tuple[float, float]) -> tuple[float, float]:
    if isinstance(pixel_size_a, tuple):
        return float(pixel_size_a[0]), float(pixel_size_a[1])
    return float(pixel_size_a), float(pixel_size_a)


def _check_diameter(
    diameter_a: float, shape: tuple[int, int], pixel_xy_a: tuple[float, float], *, what: str
) -> None:
    """Diameter at least 2 px at the picking pixel size and at most the shorter side."""
    h, w = shape
    shorter_a = min(h * pixel_xy_a[1], w * pixel_xy_a[0])
    if diameter_a > shorter_a:
        raise InvalidValuesError(
            None,
            f"particle diameter {diameter_a:g} Å is larger than the shorter side of the "
            f"{what} ({w} × {h} px at {pixel_xy_a[0]:.4g} Å/px = {shorter_a:.0f} Å)",
        )
    if diameter_a / max(*pixel_xy_a, PICKING_PIXEL_SIZE_A) < _MIN_DIAMETER_PX:
        raise InvalidValuesError(
            None,
            f"particle diameter {diameter_a:g} Å is below {_MIN_DIAMETER_PX:g} px at the "
            f"picking pixel size {PICKING_PIXEL_SIZE_A:g} Å/px; BoxNet cannot pick it",
        )


def artefact_mask_from_probability(
    artefact: npt.NDArray[np.floating], *, threshold: float, min_component_px: int
) -> npt.NDArray[np.bool_]:  # (h', w')
    """Pixels with artefact probability above ``threshold`` that belong to 8-connected
    regions of at least ``min_component_px`` pixels."""
    above = artefact > threshold
    labels, n = ndimage.label(above, structure=_EIGHT_CONNECTED)
    if n == 0:
        return above
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    big = sizes >= min_component_px
    big[0] = False
    mask: npt.NDArray[np.bool_] = big[labels]
    return mask


def _components(
    particle: npt.NDArray[np.float32], threshold: float
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """(x, y) centroids ``(n, 2)``, maximum probabilities and areas of the 8-connected
    components of ``particle ≥ threshold``. Centroids weigh pixels by ``(p − threshold)²``
    (plus 1e-12), which falls smoothly to zero at a component's edge."""
    labels, n = ndimage.label(particle >= threshold, structure=_EIGHT_CONNECTED)
    if n == 0:
        return np.zeros((0, 2)), np.zeros(0, np.float32), np.zeros(0, np.int64)
    rows, cols = np.nonzero(labels)  # only the pixels of components: fast on sparse maps
    ids = labels[rows, cols]
    values = particle[rows, cols]
    weights = (values.astype(np.float64) - threshold) ** 2 + 1e-12
    total = np.bincount(ids, weights=weights, minlength=n + 1)[1:]
    x = np.bincount(ids, weights=weights * cols, minlength=n + 1)[1:] / total
    y = np.bincount(ids, weights=weights * rows, minlength=n + 1)[1:] / total
    scores = np.zeros(n + 1, np.float32)
    np.maximum.at(scores, ids, values.astype(np.float32))
    areas = np.bincount(ids, minlength=n + 1)[1:].astype(np.int64)
    return np.stack([x, y], axis=-1), scores[1:], areas


def _outside_mask(
    positions_px: npt.NDArray[np.float64],  # (n, 2)
    mask: npt.NDArray[np.bool_],
    *,
    min_distance_a: float,
    pixel_xy_a: tuple[float, float],
) -> npt.NDArray[np.bool_]:  # (n,)
    """Picks whose nearest pixel is unmasked and whose centre is at least ``min_distance_a``
    from the centre of every masked pixel."""
    if len(positions_px) == 0 or not mask.any():
        return np.ones(len(positions_px), dtype=bool)
    h, w = mask.shape
    col = np.clip(np.rint(positions_px[:, 0]).astype(np.int64), 0, w - 1)
    row = np.clip(np.rint(positions_px[:, 1]).astype(np.int64), 0, h - 1)
    keep: npt.NDArray[np.bool_] = ~mask[row, col]
    if min_distance_a > 0:
        # the masked pixel nearest to an unmasked point has an unmasked 8-neighbour
        edge = mask & ~ndimage.binary_erosion(mask, structure=_EIGHT_CONNECTED, border_value=1)
        masked_yx = np.argwhere(edge).astype(np.float64)
        scale = np.array(pixel_xy_a)
        tree = cKDTree(masked_yx[:, ::-1] * scale)
        distance_a, _ = tree.query(positions_px * scale)
        keep &= distance_a >= min_distance_a
    return keep


def _suppress_neighbours(
    positions_px: npt.NDArray[np.float64],  # (n, 2)
    scores: npt.NDArray[np.float32],
    areas: npt.NDArray[np.int64],
    *,
    diameter_a: float,
    pixel_xy_a: tuple[float, float],
) -> npt.NDArray[np.int64]:
    """Indices kept when, greedily by decreasing area (then score), a pick closer than the
    diameter to an already kept one is dropped."""
    order = np.lexsort((-scores.astype(np.float64), -areas))
    kept: list[int] = []
    at_a = positions_px * np.array(pixel_xy_a)
    for index in order:
        if kept:
            nearest = np.sqrt(((at_a[kept] - at_a[index]) ** 2).sum(-1)).min()
            if nearest < diameter_a:
                continue
        kept.append(int(index))
    return np.array(kept, dtype=np.int64)


def picks_from_probabilities(
    probabilities: torch.Tensor,  # (3, h', w')
    *,
    settings: PickingSettings,
    pixel_size_a: float | tuple[float, float],
) -> Picks:
    """Picks and artefact mask from BoxNet's probabilities (docs/picking_inference.md).

    1. Artefact mask: artefact probability ``> artefact_threshold``, 8-connected regions of at
       least ``min_artefact_component_px`` pixels.
    2. Candidates: 8-connected components of particle probability ``≥`` the trace threshold
       (``candidate_threshold``, or ``threshold``); centroid weighted by the squared excess
       over it, score = the component's highest particle probability, area in pixels.
    3. Keep candidates with score ``≥ threshold``; drop those whose nearest pixel is masked or
       whose centre lies closer than ``min_distance_to_mask_a`` (Å) to a masked pixel centre.
    4. Of two picks closer than ``diameter_a``, keep the one of larger area (then higher
       score), greedily. Picks come out by decreasing score.

    ``pixel_size_a`` is the probability map's pixel size in Å, or its (x, y) pair
    (:attr:`PreparedMicrograph.pixel_size_xy_a`).

    Raises
    ------
    InvalidValuesError
        The diameter is below 2 px at 8 Å/px or above the map's shorter side.
    DimensionMismatchError
        ``probabilities`` is not ``(3, h', w')``.
    """
    if probabilities.dim() != 3 or probabilities.shape[0] != len(CLASS_NAMES):
        raise DimensionMismatchError(
            None, f"probabilities must be (3, h, w), got {tuple(probabilities.shape)}"
        )
    pixel_xy = _pixel_xy(pixel_size_a)
    shape = (int(probabilities.shape[1]), int(probabilities.shape[2]))
    _check_diameter(settings.diameter_a, shape, pixel_xy, what="probability map")
    values = probabilities.detach().to("cpu", torch.float32).numpy()
    mask = artefact_mask_from_probability(
        values[ARTEFACT],
        threshold=settings.artefact_threshold,
        min_component_px=settings.min_artefact_component_px,
    )
    positions, scores, areas = _components(values[PARTICLE], settings.trace_threshold)
    keep = scores >= settings.threshold
    keep &= _outside_mask(
        positions, mask, min_distance_a=settings.min_distance_to_mask_a, pixel_xy_a=pixel_xy
    )
    positions, scores, areas = positions[keep], scores[keep], areas[keep]
    kept = _suppress_neighbours(
        positions, scores, areas, diameter_a=settings.diameter_a, pixel_xy_a=pixel_xy
    )
    positions, scores, areas = positions[kept], scores[kept], areas[kept]
    order = np.lexsort((positions[:, 0], positions[:, 1], -scores.astype(np.float64)))
    return Picks(
        positions_px=torch.from_numpy(np.ascontiguousarray(positions[order])),
        scores=torch.from_numpy(np.ascontiguousarray(scores[order])),
        areas_px=torch.from_numpy(np.ascontiguousarray(areas[order])),
        artefact_mask=torch.from_numpy(mask),
        masked_fraction=float(mask.mean()),
    )


# --------------------------------------------------------------------------------- result


@dataclass(frozen=True)
class PickResult:
    """Picks of one micrograph, with what is needed to re-threshold them without the network.

    Attributes
    ----------
    picks:
        Picks and artefact mask at 8 Å/px.
    positions_a:
        ``(n, 2)`` float64 (x, y) in Å from the centre of pixel (0, 0) of the original
        micrograph, in the order of ``picks``.
    probabilities:
        ``(3, h', w')`` float16 softmax probabilities (CPU) the picks were made from.
    prepared:
        The micrograph at 8 Å/px and its relation to the original.
    settings:
        The settings the picks were made with.
    model_name:
        The BoxNet model's name.
    """

    picks: Picks
    positions_a: torch.Tensor  # (n, 2)
    probabilities: torch.Tensor  # (3, h', w')
    prepared: PreparedMicrograph
    settings: PickingSettings
    model_name: str

    @classmethod
    def from_probabilities(
        cls,
        probabilities: torch.Tensor,  # (3, h', w')
        *,
        prepared: PreparedMicrograph,
        settings: PickingSettings,
        model_name: str,
    ) -> PickResult:
        """Post-process ``probabilities`` (stored as float16; picks are made from the stored
        values, so that a result re-read from disk re-thresholds identically)."""
        stored = probabilities.detach().to("cpu", torch.float16)
        if tuple(stored.shape[-2:]) != tuple(prepared.image.shape):
            raise DimensionMismatchError(
                None,
                f"probabilities {tuple(stored.shape)} do not match the prepared micrograph "
                f"{tuple(prepared.image.shape)}",
            )
        picks = picks_from_probabilities(
            stored, settings=settings, pixel_size_a=prepared.pixel_size_xy_a
        )
        original_px = prepared.to_original_px(picks.positions_px)
        return cls(
            picks=picks,
            positions_a=original_px * prepared.original_pixel_size_a,
            probabilities=stored,
            prepared=prepared,
            settings=settings,
            model_name=model_name,
        )

    @property
    def scores(self) -> torch.Tensor:  # (n,)
        return self.picks.scores

    @property
    def positions_px(self) -> torch.Tensor:  # (n, 2)
        """(x, y) in pixels of the original micrograph (RELION's ``rlnCoordinateX/Y``)."""
        return self.positions_a / self.prepared.original_pixel_size_a

    @property
    def artefact_mask(self) -> torch.Tensor:  # (h', w')
        return self.picks.artefact_mask

    @property
    def n_picks(self) -> int:
        return self.picks.n_picks

    def with_settings(self, settings: PickingSettings) -> PickResult:
        """The picks that ``settings`` give from the same probabilities (no network; the
        model and tiling fields of ``settings`` are ignored)."""
        return PickResult.from_probabilities(
            self.probabilities,
            prepared=self.prepared,
            settings=settings,
            model_name=self.model_name,
        )

    def rethreshold(
        self, threshold: float, *, min_distance_to_mask_a: float | None = None
    ) -> PickResult:
        """The picks at another score threshold (0–1) and, optionally, another minimum
        distance to the mask (Å). ``candidate_threshold`` is kept when it is at most
        ``threshold`` and dropped (components traced at ``threshold``) otherwise."""
        candidate = self.settings.candidate_threshold
        if candidate is not None and candidate > threshold:
            candidate = None
        changes: dict[str, float | None] = {
            "threshold": threshold,
            "candidate_threshold": candidate,
        }
        if min_distance_to_mask_a is not None:
            changes["min_distance_to_mask_a"] = min_distance_to_mask_a
        return self.with_settings(
            PickingSettings.model_validate({**self.settings.model_dump(), **changes})
        )


def pick_micrograph(
    image: torch.Tensor,  # (H, W)
    *,
    pixel_size_a: float,
    model: BoxNetModel,
    settings: PickingSettings,
    device: torch.device | str | None = None,
) -> PickResult:
    """Pick particles and mask artefacts on a micrograph (raw contrast: protein dark).

    Raises
    ------
    InvalidValuesError
        A wrong pixel size, a blank or non-finite image
        (:func:`~cryowarp.preprocess.picking.prepare.prepare_micrograph`); a diameter below
        2 px at 8 Å/px or larger than the micrograph's shorter side; a model trained at
        another pixel size than 8 Å/px.
    """
    if not math.isclose(model.pixel_size_a, PICKING_PIXEL_SIZE_A, rel_tol=1e-3):
        raise InvalidValuesError(
            None,
            f"model {model.name} was trained at {model.pixel_size_a:g} Å/px; cryowarp picks at "
            f"{PICKING_PIXEL_SIZE_A:g} Å/px",
            "use a model trained on micrographs prepared at 8 Å/px",
        )
    if image.dim() == 2:
        if image.numel() and bool(image.amax() == image.amin()):
            # caught here: Fourier cropping turns a constant into float32 rounding noise
            raise InvalidValuesError(
                None, "the micrograph is blank (constant values); there is nothing to pick"
            )
        shape = (int(image.shape[0]), int(image.shape[1]))
        if math.isfinite(pixel_size_a) and pixel_size_a > 0:
            _check_diameter(
                settings.diameter_a, shape, (pixel_size_a, pixel_size_a), what="micrograph"
            )
    prepared = prepare_micrograph(image, pixel_size_a=pixel_size_a)
    probabilities = predict_probabilities(model, prepared, settings=settings, device=device)
    return PickResult.from_probabilities(
        probabilities, prepared=prepared, settings=settings, model_name=model.name
    )
