"""Motion-correct movies end to end: read, fit, average, write every output (docs/motion.md).

:func:`correct_movie` runs one movie through :func:`~.frames.load_movie`,
:func:`~.frames.alignment_frames`, :func:`~.fit.estimate_motion` and
:func:`~.average.average_frames` and writes the outputs of :func:`motion_output_paths`.
:func:`correct_movies` runs many; one bad movie (a typed input error) is recorded and the
others go on. Shifts follow docs/conventions.md §4.

No partial output: every file of a movie is written into a staging folder
``out_dir/.staging/<stem>-<pid>/`` and moved into place (``os.replace``) only when all of them
exist, the metadata JSON last, so a ``motion/<stem>.json`` marks a complete set; on any error
the staging folder is removed. A rerun overwrites the outputs of the same stem and removes
those the new settings no longer ask for.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from cryowarp.errors import CryowarpInputError
from cryowarp.io.mrc import write_mrc
from cryowarp.preprocess.motion._outputs import (
    MotionPaths,
    motion_metadata,
    motion_output_paths,
    write_metadata,
    write_relion_star,
)
from cryowarp.preprocess.motion.average import MotionAverages, average_frames
from cryowarp.preprocess.motion.fit import MotionFit, estimate_motion
from cryowarp.preprocess.motion.frames import (
    LoadedMovie,
    alignment_frames,
    binned_shape,
    load_movie,
)
from cryowarp.preprocess.motion.model import FrameMotion
from cryowarp.preprocess.motion.plot import plot_motion_tracks
from cryowarp.preprocess.motion.settings import MotionSettings, MovieInputSettings
from cryowarp.preprocess.motion.summary import MotionSummary, motion_summary

__all__ = [
    "MotionOutcome",
    "MotionResult",
    "alignment_patch_size_px",
    "alignment_pixel_size_a",
    "correct_movie",
    "correct_movies",
]

Progress = Callable[[str, float], None]

_MIN_ALIGNMENT_PATCH_PX = 32
_STAGING = ".staging"


@dataclass(frozen=True)
class MotionResult:
    """What :func:`correct_movie` made of one movie.

    Attributes
    ----------
    movie_path:
        The movie.
    paths:
        The files written (absolute paths; :class:`~._outputs.MotionPaths`).
    motion:
        The fitted, gauged motion (Å, frame 0 the reference).
    summary:
        Its quality figures.
    raw_pixel_size_a, alignment_pixel_size_a, output_pixel_size_a:
        Pixel sizes (Å) of the raw frames, of the frames the fit used and of the averages.
    seconds:
        Wall time of each stage (``load``, ``alignment_frames``, ``fit``, ``average``,
        ``write``) and ``total``.
    """

    movie_path: Path
    paths: MotionPaths
    motion: FrameMotion
    summary: MotionSummary
    raw_pixel_size_a: float
    alignment_pixel_size_a: float
    output_pixel_size_a: float
    seconds: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class MotionOutcome:
    """One movie of :func:`correct_movies`: its result, or the message of its input error."""

    movie_path: Path
    result: MotionResult | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the movie was corrected."""
        return self.result is not None


def alignment_pixel_size_a(
    raw_pixel_size_a: float, frame_shape: tuple[int, int], settings: MotionSettings
) -> float:
    """Pixel size (Å) to request from :func:`~.frames.alignment_frames` for the motion fit.

    The coarsest sampling whose Nyquist (``2 ×`` pixel size) still reaches the fit's highest
    resolution, ``max(raw, max_resolution_a / 2)``, holds every frequency the fit uses at the
    least cost. The output binning does not enter: the fit band is set by
    ``max_resolution_a`` alone, and frames are never upsampled. Because the resampled sizes
    are rounded to even numbers (:func:`~.frames.binned_shape`), the request is lowered, if
    needed, until the actual pixel size is at most ``max_resolution_a / 2``.
    """
    raw = float(raw_pixel_size_a)
    limit = settings.max_resolution_a / 2
    if limit <= raw:
        return raw
    target = limit
    shape, actual = binned_shape(frame_shape, target / raw, pixel_size_a=raw)
    while actual > limit * (1 + 1e-9) and target > raw:
        target = raw * frame_shape[1] / (shape[1] + 2)  # two more columns
        shape, actual = binned_shape(frame_shape, max(1.0, target / raw), pixel_size_a=raw)
    return max(raw, target)


def alignment_patch_size_px(
    settings: MotionSettings, *, output_pixel_size_a: float, alignment_pixel_size_a: float
) -> int:
    """The patch edge of ``settings.patch_size_px`` (output pixels) in alignment pixels:
    the same length in Å, rounded to an even number of at least 32 pixels."""
    length_a = settings.patch_size_px * output_pixel_size_a
    size = 2 * round(length_a / alignment_pixel_size_a / 2)
    return max(_MIN_ALIGNMENT_PATCH_PX, size)


def correct_movie(
    path: str | Path,
    *,
    input_settings: MovieInputSettings,
    settings: MotionSettings,
    out_dir: str | Path,
    device: torch.device | str = "cpu",
    progress: Progress | None = None,
    relion_voltage_kv: float | None = None,
) -> MotionResult:
    """Motion-correct one movie and write its outputs (module docstring; docs/motion.md).

    Parameters
    ----------
    path:
        The movie (MRC, TIFF or EER).
    input_settings:
        How its frames are read and gain-corrected, the dose, the output binning.
    settings:
        How motion is fitted and which outputs are written.
    out_dir:
        Output folder (created); the layout is :func:`motion_output_paths`.
    device:
        Where the fit and the averaging run.
    progress:
        Called with a message and the fraction of this movie done (0 … 1).
    relion_voltage_kv:
        Acceleration voltage (kV) written to RELION's motion STAR file (``rlnVoltage``);
        without it the key is left out, and RELION's polishing will need it from elsewhere.

    Returns
    -------
    MotionResult

    Raises
    ------
    CryowarpInputError
        The movie, gain or defect file cannot be used (the message names the file); nothing
        is written.
    """
    movie_path = Path(path)
    report = progress if progress is not None else _silent
    seconds: dict[str, float] = {}
    started = clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[stage] = now - clock
        clock = now

    report("reading the movie", 0.0)
    movie = load_movie(movie_path, input_settings)
    lap("load")
    out_shape, output_px_nominal = binned_shape(
        movie.frame_shape, input_settings.bin_factor, pixel_size_a=movie.pixel_size_a
    )
    target_px = alignment_pixel_size_a(movie.pixel_size_a, movie.frame_shape, settings)
    frames, align_px = alignment_frames(movie, pixel_size_a=target_px, device=device)
    lap("alignment_frames")
    patch_px = alignment_patch_size_px(
        settings, output_pixel_size_a=output_px_nominal, alignment_pixel_size_a=align_px
    )
    fit = estimate_motion(
        frames,
        pixel_size_a=align_px,
        field_size_a=movie.field_size_a,
        settings=settings,
        patch_size_px=patch_px,
        progress=lambda message, done: report(f"fit: {message}", 0.1 + 0.6 * done),
    )
    del frames
    lap("fit")
    report("averaging", 0.7)
    averages = average_frames(
        lambda start, stop: movie.corrected_frames(start, stop, device=device),
        fit.motion,
        n_frames=movie.n_frames,
        frame_shape=movie.frame_shape,
        pixel_size_a=movie.pixel_size_a,
        output_shape=out_shape,
        accumulated_dose_e_per_a2=(
            movie.accumulated_dose_e_per_a2() if settings.dose_weighting else None
        ),
        local_tolerance_px=settings.local_tolerance_px,
        odd_even=settings.write_odd_even,
        aligned_stack=settings.write_aligned_stack,
        device=device,
    )
    lap("average")
    report("writing", 0.9)
    summary = motion_summary(
        fit.motion,
        field_size_a=movie.field_size_a,
        dose_per_frame_e_per_a2=input_settings.dose_per_frame_e_per_a2,
    )
    paths = _write_outputs(
        movie,
        fit,
        averages,
        summary,
        out_dir=Path(out_dir),
        input_settings=input_settings,
        settings=settings,
        relion_voltage_kv=relion_voltage_kv,
        seconds=seconds,
        started=started,
    )
    lap("write")
    seconds["total"] = time.perf_counter() - started
    report("done", 1.0)
    return MotionResult(
        movie_path=movie_path,
        paths=paths,
        motion=fit.motion,
        summary=summary,
        raw_pixel_size_a=movie.pixel_size_a,
        alignment_pixel_size_a=align_px,
        output_pixel_size_a=averages.pixel_size_a,
        seconds=seconds,
    )


def correct_movies(
    paths: Iterable[str | Path],
    *,
    input_settings: MovieInputSettings,
    settings: MotionSettings,
    out_dir: str | Path,
    device: torch.device | str = "cpu",
    progress: Progress | None = None,
    relion_voltage_kv: float | None = None,
    on_result: Callable[[MotionOutcome], None] | None = None,
) -> list[MotionOutcome]:
    """Motion-correct many movies into one output folder; one outcome per movie, in order.

    A movie that raises a :class:`~cryowarp.errors.CryowarpInputError` (a bad movie, gain or
    defect file) or a ``ValueError`` (a movie its settings cannot handle, e.g. too few
    frames) is recorded with the error's message and the others go on; any other exception
    is a bug and propagates. Two movies with the same file stem would write the same outputs:
    the later one is recorded as failed.

    Parameters
    ----------
    paths:
        The movies.
    input_settings, settings, out_dir, device, relion_voltage_kv:
        As for :func:`correct_movie`, shared by every movie.
    progress:
        Called with ``"<stem>: <message>"`` and the fraction of the whole batch done.
    on_result:
        Called with each outcome as soon as it is known.
    """
    movies = [Path(p) for p in paths]
    outcomes: list[MotionOutcome] = []
    seen: dict[str, Path] = {}
    for index, movie in enumerate(movies):
        if movie.stem in seen:
            outcome = MotionOutcome(
                movie,
                error=f"{movie}: same file stem as {seen[movie.stem]}; its outputs would "
                "overwrite those of that movie (rename one, or use another --out folder)",
            )
        else:
            seen[movie.stem] = movie
            outcome = _one_of_many(
                movie,
                index=index,
                count=len(movies),
                input_settings=input_settings,
                settings=settings,
                out_dir=out_dir,
                device=device,
                progress=progress,
                relion_voltage_kv=relion_voltage_kv,
            )
        outcomes.append(outcome)
        if on_result is not None:
            on_result(outcome)
    return outcomes


def _one_of_many(
    movie: Path,
    *,
    index: int,
    count: int,
    input_settings: MovieInputSettings,
    settings: MotionSettings,
    out_dir: str | Path,
    device: torch.device | str,
    progress: Progress | None,
    relion_voltage_kv: float | None,
) -> MotionOutcome:
    def scaled(message: str, done: float) -> None:
        if progress is not None:
            progress(f"{movie.stem}: {message}", (index + done) / count)

    try:
        result = correct_movie(
            movie,
            input_settings=input_settings,
            settings=settings,
            out_dir=out_dir,
            device=device,
            progress=scaled,
            relion_voltage_kv=relion_voltage_kv,
        )
    except CryowarpInputError as error:
        return MotionOutcome(movie, error=str(error))
    except ValueError as error:
        return MotionOutcome(movie, error=f"{movie}: {error}")
    return MotionOutcome(movie, result=result)


def _write_outputs(
    movie: LoadedMovie,
    fit: MotionFit,
    averages: MotionAverages,
    summary: MotionSummary,
    *,
    out_dir: Path,
    input_settings: MovieInputSettings,
    settings: MotionSettings,
    relion_voltage_kv: float | None,
    seconds: dict[str, float],
    started: float,
) -> MotionPaths:
    """Write every output into a staging folder, then move them into place (module doc)."""
    stem = movie.path.stem
    final = motion_output_paths(
        out_dir,
        stem,
        odd_even=averages.odd is not None,
        aligned_stack=averages.aligned_stack is not None,
        relion_star=True,
        png=settings.write_png,
    )
    staging = out_dir / _STAGING / f"{stem}-{os.getpid()}"
    try:
        if staging.exists():
            shutil.rmtree(staging)
        staged = final.moved(out_dir, staging)
        for folder in staged.folders():
            folder.mkdir(parents=True, exist_ok=True)
        px = averages.pixel_size_a
        write_mrc(staged.average, averages.average.cpu().numpy(), voxel_size_a=px)
        if staged.odd is not None and averages.odd is not None:
            write_mrc(staged.odd, averages.odd.cpu().numpy(), voxel_size_a=px)
        if staged.even is not None and averages.even is not None:
            write_mrc(staged.even, averages.even.cpu().numpy(), voxel_size_a=px)
        if staged.aligned is not None and averages.aligned_stack is not None:
            write_mrc(staged.aligned, averages.aligned_stack.cpu().numpy(), voxel_size_a=px)
        relion_error_px = None
        if staged.star is not None:
            relion_error_px = write_relion_star(
                staged.star, movie, fit, input_settings=input_settings, voltage_kv=relion_voltage_kv
            )
        if staged.png is not None:
            plot_motion_tracks(
                fit.motion,
                path=staged.png,
                n_frames=movie.n_frames,
                field_size_a=movie.field_size_a,
                pixel_size_a=px,
                title=f"{movie.path.name}: early motion "
                f"{summary.early_motion_a_per_frame:.2f} Å/frame",
            )
        seconds["write"] = time.perf_counter() - started - sum(seconds.values())
        document = motion_metadata(
            movie,
            fit,
            averages,
            summary,
            input_settings=input_settings,
            settings=settings,
            files=final.relative_to(out_dir),
            seconds=seconds,
            relion_local_model_error_px=relion_error_px,
        )
        write_metadata(staged.metadata, document)
        final.claim_from(staged, stale=motion_output_paths(out_dir, stem))
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(staging)
        with contextlib.suppress(OSError):
            (out_dir / _STAGING).rmdir()  # only when empty (another movie may be staging)
    return final


def _silent(message: str, done: float) -> None:
    """The default progress callback: says nothing."""
