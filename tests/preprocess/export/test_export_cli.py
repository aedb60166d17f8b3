"""``cryowarp export micrographs|particles|update-defocus`` on a real processing folder.

The tiny simulated movie is motion-corrected (quick fit) and CTF-estimated once per module;
particles come from an EMAN ``.box`` file of the true positions. The files written must pass
the RELION 5 validator and hold what the processing measured.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from cryowarp.cli.main import app
from cryowarp.io.eman_box import BoxCoordinates, write_box
from cryowarp.io.mrc import read_mrc, read_mrc_header
from cryowarp.io.relion import read_micrographs, read_particles
from cryowarp.io.relion_motion import read_relion_motion
from cryowarp.io.relion_validate import check_relion_star
from cryowarp.preprocess.ctf.result import CtfResult

BOX = 48


@dataclass(frozen=True)
class Processed:
    folder: Path
    stem: str
    ctf: CtfResult
    positions_px: np.ndarray  # (n, 2) true particle positions (x, y), pixels of the average
    pixel_size_a: float
    box_file: Path  # EMAN .box of the true positions


@pytest.fixture(scope="module")
def processed(
    tiny_processed: Any, tiny_frame_series: Any, tmp_path_factory: pytest.TempPathFactory
) -> Processed:
    """The session's processed tiny movie and a ``.box`` file of its true particle centres."""
    px = tiny_processed.motion.output_pixel_size_a
    positions = tiny_frame_series.truth.particles.positions_a[:, :2].numpy() / px
    stem = tiny_processed.movie.stem
    box_file = tmp_path_factory.mktemp("export_cli") / f"{stem}.box"
    write_box(box_file, BoxCoordinates(np.round(positions), np.full(positions.shape, 40.0)))
    return Processed(
        tiny_processed.folder, stem, tiny_processed.ctf, np.round(positions), px, box_file
    )


def _run(*args: str) -> Any:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result


def test_micrographs_star_files_are_relion_valid_and_point_at_the_outputs(
    processed: Processed, tmp_path: Path
) -> None:
    out = tmp_path / "relion"
    _run("export", "micrographs", processed.folder, "--out", out)
    check_relion_star(out / "micrographs_ctf.star", kind="micrographs", root=out)
    check_relion_star(out / "corrected_micrographs.star", kind="corrected_micrographs", root=out)
    optics, table = read_micrographs(out / "micrographs_ctf.star")
    frame = table.frame
    assert (out / frame["rlnMicrographName"][0]).resolve() == (
        processed.folder / "average" / f"{processed.stem}.mrc"
    ).resolve()
    assert frame["rlnDefocusU"][0] == pytest.approx(processed.ctf.defocus_u_um * 1e4, rel=1e-6)
    assert optics[0].micrograph_original_pixel_size_a == pytest.approx(processed.pixel_size_a)
    _, corrected = read_micrographs(out / "corrected_micrographs.star")
    motion_star = out / corrected.frame["rlnMicrographMetadata"][0]
    motion = read_relion_motion(motion_star)  # RELION's polishing reads this file
    assert motion is not None
    assert corrected.frame["rlnAccumMotionTotal"][0] > 0


def test_particles_from_box_files_are_extracted_with_the_local_ctf(
    processed: Processed, tmp_path: Path
) -> None:
    out = tmp_path / "relion"
    _run(
        "export", "particles", processed.folder, "--out", out,
        "--coords", processed.box_file,
        "--coords-pixel-size", processed.pixel_size_a,
        "--box", BOX, "--diameter", 60,
    )  # fmt: skip
    for name in ("particles.star", "particles_odd.star", "particles_even.star"):
        check_relion_star(out / name, kind="particles", root=out)
    optics, table = read_particles(out / "particles.star")
    assert optics[0].image_size_px == BOX
    assert optics[0].pixel_size_a == pytest.approx(processed.pixel_size_a)
    frame = table.frame
    n = len(processed.positions_px)
    assert len(frame) == n
    xy = frame[["rlnCoordinateX", "rlnCoordinateY"]].to_numpy()
    assert np.allclose(xy, processed.positions_px, atol=1e-4)
    # per-particle defocus from the local grid, astigmatism of the micrograph
    positions_a = torch.from_numpy(xy * processed.pixel_size_a)
    mean_um = processed.ctf.defocus_at(positions_a).numpy()
    u = frame["rlnDefocusU"].to_numpy()
    v = frame["rlnDefocusV"].to_numpy()
    assert np.allclose((u + v) / 2, mean_um * 1e4, atol=0.05)
    assert np.allclose((u - v) / 2, processed.ctf.astigmatism_um * 1e4, atol=0.05)
    locations = table.image_locations()
    stack = locations[0].path
    assert read_mrc_header(stack).shape[-3:] == (n, BOX, BOX)
    data, _ = read_mrc(stack)
    outside = np.hypot(*np.meshgrid(np.arange(BOX) - 24, np.arange(BOX) - 24)) > 20
    assert abs(float(data[:, outside].mean())) < 0.05  # normalised against the background
    assert float(data[:, outside].std()) == pytest.approx(1.0, abs=0.05)
    _, odd = read_particles(out / "particles_odd.star")
    assert "/odd/" in str(odd.image_locations()[0].path)


def test_a_second_export_reuses_finished_extractions(processed: Processed, tmp_path: Path) -> None:
    out = tmp_path / "relion"
    args = [
        "export", "particles", processed.folder, "--out", out,
        "--coords", processed.box_file,
        "--coords-pixel-size", processed.pixel_size_a, "--box", BOX,
    ]  # fmt: skip
    _run(*args)
    stack = out / "particles" / f"{processed.stem}.mrcs"
    first = stack.stat().st_mtime_ns
    result = _run(*args)
    assert "1 kept from an earlier run" in result.output
    assert stack.stat().st_mtime_ns == first
    _run(*args[:-1], str(BOX + 16))  # other settings: extracted again
    assert read_mrc_header(stack).shape[-1] == BOX + 16


def test_filters_exclude_micrographs_with_their_reason(
    processed: Processed, tmp_path: Path
) -> None:
    limit = processed.ctf.defocus_um - 0.1
    result = _run(
        "export", "micrographs", processed.folder, "--out", tmp_path, "--defocus-max", limit
    )
    assert f"excluded {processed.stem}: defocus" in result.output
    assert not (tmp_path / "micrographs_ctf.star").exists()


def test_update_defocus_of_an_existing_particle_set(processed: Processed, tmp_path: Path) -> None:
    out = tmp_path / "relion"
    _run(
        "export", "particles", processed.folder, "--out", out,
        "--coords", processed.box_file,
        "--coords-pixel-size", processed.pixel_size_a, "--box", BOX, "--no-odd-even",
    )  # fmt: skip
    optics, table = read_particles(out / "particles.star")
    frame = table.frame
    frame["rlnDefocusU"] = 1.0
    frame["rlnDefocusV"] = 1.0
    stale = out / "stale.star"
    from cryowarp.io.relion import ParticleTable, write_particles

    write_particles(stale, optics, ParticleTable(frame, optics))
    _run("export", "update-defocus", stale, processed.folder, "--out", out / "fixed.star")
    _, fixed = read_particles(out / "fixed.star")
    assert np.allclose(fixed.defocus_u_a(), table.defocus_u_a(), atol=0.05)
    assert np.allclose(fixed.defocus_v_a(), table.defocus_v_a(), atol=0.05)
