"""The demo job (``cryowarp demo``, ``make demo``): the whole chain that exists, on simulated
movies with exact ground truth.

1. **simulate** frame-series movies with :mod:`cryowarp.simulate` (the ``tiny`` preset scaled
   to :class:`DemoSettings`: gain, detector defects, motion, astigmatic CTF, particles);
2. **project**: :func:`~cryowarp.pipeline.project.init_project` on them and
   :func:`~cryowarp.pipeline.runner.run_project` (motion correction, CTF estimation);
3. **export** from the project (:mod:`cryowarp.pipeline.export`): the micrograph STAR files and
   the particles, extracted from the frames with the fitted motion and local CTF. Picking does
   not exist yet: the **true** particle centres and orientations of the simulation are the
   picks;
4. **reconstruct** the exported particles (:func:`~cryowarp.refine.reconstruction.reconstruct.
   reconstruct_from_star`) and compare with the noise-free map of the simulated species.

Layout of ``OUT`` (a second run with the same settings reuses the data and every finished
step; other settings start afresh)::

    demo.json          DemoSettings and the measured summary
    data/              movies, gain.mrc, ground_truth/ (docs/simulator.md)
    project/           the project (docs/pipeline.md): cryowarp.json, items/, average/, ctf/, …
    export/            micrographs_ctf.star, corrected_micrographs.star, particles.star, …
    reconstruction/    half1.mrc, half2.mrc, map.mrc, fsc.star, truth.mrc (the species map)

Conventions: docs/conventions.md.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field

from cryowarp.core.resize import crop_or_pad
from cryowarp.errors import CryowarpInputError
from cryowarp.io.files import write_text_atomically
from cryowarp.io.mrc import write_mrc
from cryowarp.io.relion_validate import RelionStarKind, check_relion_star
from cryowarp.pipeline.executors import make_executor
from cryowarp.pipeline.export import project_picks, project_sources
from cryowarp.pipeline.project import Project, init_project
from cryowarp.pipeline.runner import ItemOutcome, run_project
from cryowarp.pipeline.settings import (
    DataSettings,
    OpticsSettings,
    ProjectSettings,
    WorkerSettings,
)
from cryowarp.preprocess.ctf.settings import CtfSettings
from cryowarp.preprocess.export.export_micrographs import export_micrographs
from cryowarp.preprocess.export.export_particles import export_particles
from cryowarp.preprocess.export.particle_set import ParticleSet
from cryowarp.preprocess.export.settings import ExtractionSettings
from cryowarp.preprocess.export.sources import MicrographSource
from cryowarp.preprocess.motion.settings import MotionSettings, MovieInputSettings
from cryowarp.preprocess.picking.metrics import match_picks, pooled_summary
from cryowarp.preprocess.picking.settings import PickingSettings
from cryowarp.refine.reconstruction.reconstruct import reconstruct_from_star
from cryowarp.simulate.ground_truth import FrameSeriesTruth, load_ground_truth
from cryowarp.simulate.presets import FrameSeriesSettings, frame_series_preset
from cryowarp.simulate.write import write_frame_series_dataset

__all__ = ["DemoResult", "DemoSettings", "run_demo"]

_MARKER = "demo.json"
_FOLDERS = ("data", "project", "export", "reconstruction")


class DemoSettings(BaseModel):
    """Settings of the demo job; the CLI reads its defaults and help texts from here."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_movies: int = Field(default=4, ge=1, description="Number of simulated movies.")
    field_size_px: int = Field(
        default=512, ge=128, description="Edge of the square field of each movie in pixels."
    )
    pixel_size_a: float = Field(default=2.0, gt=0, description="Pixel size of the movies in Å.")
    n_frames: int = Field(default=8, ge=2, description="Frames per movie.")
    dose_per_frame_e_per_a2: float = Field(
        default=5.0, gt=0, description="Exposure per frame in e⁻/Å²."
    )
    n_particles: int = Field(
        default=40, ge=1, description="Particles per movie (at most; fewer fit a small field)."
    )
    box_size_px: int = Field(
        default=48, ge=16, multiple_of=2, description="Edge of the extracted particle box in px."
    )
    particle_diameter_a: float = Field(
        default=70.0, gt=0, description="Particle diameter in Å (background for normalisation)."
    )
    seed: int = Field(
        default=3, ge=0, description="Seed of the simulation (same seed → the same movies)."
    )
    n_workers: int = Field(
        default=1,
        ge=0,
        description="Worker processes of the project run (0: in this process).",
    )


@dataclass(frozen=True)
class DemoResult:
    """What the demo measured and where it wrote it (``OUT`` layout: module docstring).

    Attributes
    ----------
    n_items, n_done:
        Items (movies) in the project and those whose every step is done.
    not_done:
        Item → state and reason, for the items that are not done.
    defocus_error_um:
        Item → |fitted − true| mean defocus at the field centre (µm), done items.
    n_particles:
        Particles exported (``export/particles.star``).
    picking:
        BoxNet's picks of the done items against the true particle centres (a match within 20 %
        of the diameter): ``precision``, ``recall``, ``f1``, ``n_picked``, ``n_true``,
        ``n_matched`` (:func:`~cryowarp.preprocess.picking.metrics.pooled_summary`); empty when
        no item was picked.
    resolution_half_maps_a:
        FSC(half 1, half 2) = 0.143, unmasked (Å).
    resolution_truth_0143_a, resolution_truth_05_a:
        FSC(map, noise-free species map) = 0.143 and 0.5 (Å).
    nyquist_a:
        Nyquist resolution of the particles (Å).
    paths:
        Name → path of each output (``project``, ``particles_star``, ``map`` …).
    """

    out_dir: Path
    n_items: int
    n_done: int
    not_done: dict[str, str]
    defocus_error_um: dict[str, float]
    n_particles: int
    picking: dict[str, float]
    resolution_half_maps_a: float
    resolution_truth_0143_a: float | None
    resolution_truth_05_a: float | None
    nyquist_a: float
    paths: dict[str, Path] = field(default_factory=dict)

    @property
    def mean_defocus_error_um(self) -> float:
        errors = list(self.defocus_error_um.values())
        return sum(errors) / len(errors) if errors else math.nan

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (paths as text, NaN/inf as ``None``)."""
        document = asdict(self)
        document["out_dir"] = str(self.out_dir)
        document["paths"] = {k: str(v) for k, v in self.paths.items()}
        document["mean_defocus_error_um"] = _finite(self.mean_defocus_error_um)
        for key in ("resolution_half_maps_a", "resolution_truth_0143_a", "resolution_truth_05_a"):
            document[key] = _finite(document[key])
        return document


def run_demo(
    out_dir: str | Path,
    settings: DemoSettings | None = None,
    *,
    log: Callable[[str], None] = print,
) -> DemoResult:
    """Run the demo (module docstring) into ``out_dir``; ``log`` receives one line per step.

    Raises
    ------
    CryowarpInputError
        ``out_dir`` is a non-empty folder that a demo did not write (nothing is deleted), or
        no item could be processed (the reasons are in the message).
    """
    settings = settings or DemoSettings()
    out = Path(out_dir).absolute()
    simulation = _simulation_settings(settings)
    _prepare(out, settings, simulation, log)
    data, project_dir = out / "data", out / "project"
    export_dir, rec_dir = out / "export", out / "reconstruction"

    truths = _simulate(data, simulation, settings, log)
    project = init_project(project_dir, _project_settings(settings, data), overwrite=True)
    log(f"project: {project.folder} (motion correction and CTF estimation of each movie)")
    executor = make_executor(workers=settings.n_workers)

    def progress(outcome: ItemOutcome, done: int, known: int) -> None:
        steps = ", ".join(outcome.steps_run) or "nothing to redo"
        reason = f" ({outcome.reason})" if outcome.reason else ""
        log(f"  {outcome.name}: {outcome.state}{reason} [{steps}; {outcome.seconds:.1f} s]")

    try:
        summary = run_project(project, executor=executor, progress=progress)
    finally:
        executor.shutdown(cancel=True)
    if not summary.outcomes:
        log("  every item is up to date (nothing redone)")

    found = project_sources(project)
    if not found.sources:
        reasons = "; ".join(f"{k}: {v}" for k, v in found.not_done.items())
        raise CryowarpInputError(project.folder, f"no item was processed ({reasons})")
    by_name = {t.movie_path.stem: t for t in truths}
    errors = {
        s.name: abs(s.ctf.defocus_um - by_name[s.name].ctf.defocus_um)
        for s in found.sources
        if s.ctf is not None and s.name in by_name
    }
    picking = _score_picks(project, found.sources, truths, settings.particle_diameter_a)
    if picking:
        log(
            f"picking: BoxNet found {picking['n_picked']:.0f} particles of {picking['n_true']:.0f}"
            f" (precision {picking['precision']:.2f}, recall {picking['recall']:.2f}, "
            f"F1 {picking['f1']:.2f} against the true centres)"
        )
    log(
        "export: "
        f"{export_dir} (the simulation's true centres and orientations are the picks: no "
        "orientation search exists yet to reconstruct from BoxNet's picks)"
    )
    micrographs = export_micrographs(
        found.sources, out_dir=export_dir, filters=project.settings.filters
    )
    particles = export_particles(
        found.sources,
        _truth_picks(truths),
        project.settings.export,
        out_dir=export_dir,
        filters=project.settings.filters,
        device=_device(),
    )
    if particles.star is None or micrographs.ctf_star is None:
        raise CryowarpInputError(export_dir, f"nothing exported ({particles.failures})")
    stars: tuple[tuple[Path | None, RelionStarKind], ...] = (
        (particles.star, "particles"),
        (micrographs.ctf_star, "micrographs"),
        (micrographs.corrected_star, "corrected_micrographs"),
    )
    for path, kind in stars:
        if path is not None:
            check_relion_star(path, kind=kind, root=path.parent)
    log("  RELION 5 check of the STAR files: passed")

    log(f"reconstruct: {rec_dir} ({particles.n_particles} particles, true poses)")
    rec_dir.mkdir(parents=True, exist_ok=True)
    truth_map = rec_dir / "truth.mrc"
    species = truths[0].species[0]
    volume = crop_or_pad(truths[0].read_species_map(species.name), (settings.box_size_px,) * 3)
    write_mrc(truth_map, volume.numpy(), voxel_size_a=species.pixel_size_a)
    reconstruction = reconstruct_from_star(
        particles.star, out_dir=rec_dir, reference=truth_map, device=_device()
    )
    result = DemoResult(
        out_dir=out,
        n_items=len(found.sources) + len(found.not_done) + len(found.problems),
        n_done=len(found.sources),
        not_done=dict(found.not_done),
        defocus_error_um=errors,
        n_particles=particles.n_particles,
        picking=picking,
        resolution_half_maps_a=reconstruction.resolution_a,
        resolution_truth_0143_a=reconstruction.reference_resolution_0143_a,
        resolution_truth_05_a=reconstruction.reference_resolution_05_a,
        nyquist_a=2 * reconstruction.pixel_size_a,
        paths=_paths(
            data=data,
            project=project.folder,
            micrographs_star=micrographs.ctf_star,
            corrected_micrographs_star=micrographs.corrected_star,
            particles_star=particles.star,
            map=rec_dir / "map.mrc",
            fsc_star=rec_dir / "fsc.star",
            truth_map=truth_map,
        ),
    )
    marker = {"settings": settings.model_dump(mode="json"), "summary": result.to_dict()}
    write_text_atomically(out / _MARKER, json.dumps(marker, indent=1) + "\n")
    return result


# -- helpers -----------------------------------------------------------------------------


def _simulation_settings(settings: DemoSettings) -> FrameSeriesSettings:
    """The ``tiny`` preset at the demo's size: one species, 300 Å of ice, 1.5–2.5 µm
    defocus with 0.25–0.4 µm astigmatism (as ``test_export_reconstruct`` uses)."""
    return frame_series_preset(
        "tiny",
        shape_px=(settings.field_size_px, settings.field_size_px),
        pixel_size_a=settings.pixel_size_a,
        n_frames=settings.n_frames,
        dose_per_frame_e_per_a2=settings.dose_per_frame_e_per_a2,
        n_particles=settings.n_particles,
        particle_spacing=1.2,
        defocus_range_um=(1.5, 2.5),
        astigmatism_range_um=(0.25, 0.4),
    )


def _prepare(
    out: Path,
    settings: DemoSettings,
    simulation: FrameSeriesSettings,
    log: Callable[[str], None],
) -> None:
    """Check that ``out`` is empty or a demo's; start afresh when its data differ."""
    marker = out / _MARKER
    if out.is_dir() and any(out.iterdir()) and not marker.is_file():
        raise CryowarpInputError(
            out, "is not empty and not a demo folder", "choose a new or empty folder for --out"
        )
    if not _same_data(out / "data", simulation, settings):
        for name in _FOLDERS:
            if (out / name).exists():
                log(f"removing {out / name} (other demo settings)")
                shutil.rmtree(out / name)
        marker.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomically(marker, json.dumps({"settings": settings.model_dump(mode="json")}))


def _same_data(data: Path, simulation: FrameSeriesSettings, settings: DemoSettings) -> bool:
    """Whether ``data`` holds the movies these settings simulate (same settings and seed)."""
    try:
        truths = [load_ground_truth(data, m) for m in range(settings.n_movies)]
    except (CryowarpInputError, KeyError, ValueError):
        return False
    document = json.loads((data / "ground_truth" / "ground_truth.json").read_text())
    return (
        len(document.get("movies", ())) == settings.n_movies
        and truths[0].settings == simulation
        and truths[0].seed == settings.seed
        and all(t.movie_path.is_file() for t in truths)
    )


def _simulate(
    data: Path, simulation: FrameSeriesSettings, settings: DemoSettings, log: Callable[[str], None]
) -> list[FrameSeriesTruth]:
    n = settings.n_movies
    size = f"{settings.field_size_px}² px at {settings.pixel_size_a} Å/px"
    if _same_data(data, simulation, settings):
        log(f"simulate: reusing the {n} movies in {data}")
    else:
        log(
            f"simulate: {n} movies of {size}, {settings.n_frames} frames × "
            f"{settings.dose_per_frame_e_per_a2} e⁻/Å², up to {settings.n_particles} particles"
        )
        write_frame_series_dataset(
            data, simulation, n_movies=n, seed=settings.seed, log=lambda line: log(f"  {line}")
        )
    return [load_ground_truth(data, m) for m in range(n)]


def _project_settings(settings: DemoSettings, data: Path) -> ProjectSettings:
    """Motion with a 2×2×2 local grid, CTF in 256-px windows (fields of 512 px), extraction
    of the demo's box; paths relative to the project folder (``OUT/project``)."""
    return ProjectSettings(
        data=DataSettings(
            pattern=f"../{data.name}/movie_*.mrc",
            movie=MovieInputSettings(
                pixel_size_a=settings.pixel_size_a,
                dose_per_frame_e_per_a2=settings.dose_per_frame_e_per_a2,
                gain_path=f"../{data.name}/gain.mrc",
            ),
        ),
        optics=OpticsSettings(),  # 300 kV, 2.7 mm, 0.07: the simulator's
        motion=MotionSettings(local_grid=(2, 2, 2)),
        ctf=CtfSettings(window_size_px=min(256, settings.field_size_px // 2)),
        workers=WorkerSettings(n_workers=max(1, settings.n_workers)),
        export=ExtractionSettings(
            box_size_px=settings.box_size_px, particle_diameter_a=settings.particle_diameter_a
        ),
        picking=PickingSettings(diameter_a=settings.particle_diameter_a),
    )


def _score_picks(
    project: Project,
    sources: list[MicrographSource],
    truths: list[FrameSeriesTruth],
    diameter_a: float,
) -> dict[str, float]:
    """Precision, recall and F1 of the project's BoxNet picks against every true particle."""
    picks, _ = project_picks(project, [s.name for s in sources])
    by_name = {t.movie_path.stem: t for t in truths}
    matches = [
        match_picks(
            particle_set.positions_a,
            by_name[name].particles.positions_a[:, :2],
            diameter_a=diameter_a,
        )
        for name, particle_set in picks.items()
        if name in by_name
    ]
    if not matches:
        return {}
    return {key: float(value) for key, value in pooled_summary(matches).items()}


def _truth_picks(truths: list[FrameSeriesTruth]) -> dict[str, ParticleSet]:
    """The true centres (x, y in Å, frame-0 geometry) and orientations of the particles of the
    first species, as picks centred on the particles (origin 0)."""
    picks = {}
    for truth in truths:
        species = truth.species[0].name
        keep = torch.tensor([s == species for s in truth.particles.species], dtype=torch.bool)
        name = truth.movie_path.stem
        picks[name] = ParticleSet(
            name,
            truth.particles.positions_a[keep, :2].clone(),
            euler_deg=truth.particles.euler_deg[keep].clone(),
            source="simulation ground truth",
        )
    return picks


def _paths(**paths: Path | None) -> dict[str, Path]:
    return {name: path for name, path in paths.items() if path is not None}


def _device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None
