"""``cryowarp denoise deconvolve|apply|train`` on a simulated processing folder: the files hold
the images the library computes, the CTF comes from the folder's estimates, bad items fail
with their reason (exit code 1) without stopping the others."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from cryowarp.cli import denoise_train
from cryowarp.cli.main import app
from cryowarp.core.ctf import CTFParams
from cryowarp.core.resize import rescale
from cryowarp.io.mrc import read_mrc, write_mrc
from cryowarp.preprocess.ctf.result import CtfResult
from cryowarp.preprocess.denoise.deconvolution import (
    DENOISER_INPUT_DECONVOLUTION,
    DeconvolutionSettings,
)
from cryowarp.preprocess.denoise.display import DisplaySettings, display_images
from cryowarp.preprocess.denoise.n2n_data import TrainingPair
from cryowarp.preprocess.denoise.n2n_inference import normalisation
from cryowarp.preprocess.denoise.n2n_model_file import (
    DenoiserModel,
    load_denoiser_model,
    save_denoiser_model,
)
from cryowarp.preprocess.denoise.n2n_network import DenoiserArchitecture, DenoiserUNet
from cryowarp.simulate.build_species import build_species
from cryowarp.simulate.frame_series import simulate_frame_series
from cryowarp.simulate.presets import frame_series_preset

runner = CliRunner()
PIXEL_A = 1.5
SHAPE = (256, 256)
DOSE_E_PER_A2 = 40.0


@dataclass(frozen=True)
class Folder:
    """A processing folder of simulated micrographs (average/, average/odd|even/, ctf/)."""

    root: Path
    names: tuple[str, ...]
    potentials: dict[str, torch.Tensor]  # projected potential (V·Å) per item
    ctfs: dict[str, CtfResult]


def _ctf_result(simulated_ctf: object, pixel_size_a: float) -> CtfResult:
    params = simulated_ctf.ctf_params()  # type: ignore[attr-defined]
    u, v, angle = (float(t) for t in params.to_relion_defocus())
    return CtfResult(
        defocus_u_um=u * 1e-4,
        defocus_v_um=v * 1e-4,
        astigmatism_angle_deg=angle,
        phase_shift_deg=math.degrees(float(params.phase_shift_rad)),
        defocus_grid_um=(((u + v) / 2 * 1e-4,),),
        image_size_xy_a=(SHAPE[1] * pixel_size_a, SHAPE[0] * pixel_size_a),
        resolution_a=4.0,
        fit_score=0.5,
        pixel_size_a=pixel_size_a,
        voltage_kv=float(params.voltage_kv),
        cs_mm=float(params.cs_mm),
        amplitude_contrast=float(params.amplitude_contrast),
    )


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Folder:
    """Two noisy simulated micrographs (256², 1.5 Å/px, 40 e⁻/Å²) with odd/even halves
    (independent Poisson draws at half the dose each) and CTF estimates equal to the truth."""
    root = tmp_path_factory.mktemp("processed")
    for sub in ("average", "average/odd", "average/even", "ctf"):
        (root / sub).mkdir()
    settings = frame_series_preset("tiny", shape_px=SHAPE, n_particles=6)
    species = build_species(settings, seed=4)
    names, potentials, ctfs = [], {}, {}
    for index in range(2):
        simulated = simulate_frame_series(
            species, settings, seed=4, movie_index=index, render_frames=False
        )
        name = f"mic_{index}"
        generator = torch.Generator().manual_seed(index)
        counts = simulated.clean_micrograph.clamp_min(0).double() * DOSE_E_PER_A2 / 2 * PIXEL_A**2
        odd = torch.poisson(counts, generator=generator).float()
        even = torch.poisson(counts, generator=generator).float()
        for sub, image in (
            ("average", (odd + even) / 2),
            ("average/odd", odd),
            ("average/even", even),
        ):
            write_mrc(root / sub / f"{name}.mrc", image.numpy(), voxel_size_a=PIXEL_A)
        ctfs[name] = _ctf_result(simulated.ctf, PIXEL_A)
        (root / "ctf" / f"{name}_ctf.json").write_text(json.dumps(ctfs[name].to_dict()))
        potentials[name] = simulated.projected_potential_va
        names.append(name)
    return Folder(root, tuple(names), potentials, ctfs)


def _corr(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double() - a.double().mean(), b.double() - b.double().mean()
    return float((a * b).sum() / (a.norm() * b.norm()))


def _read(path: Path) -> torch.Tensor:
    data, _ = read_mrc(path)
    return torch.from_numpy(np.array(data, np.float32))


def test_deconvolve_uses_the_folders_ctf_and_reports_items_without_one(
    folder: Folder, tmp_path: Path
) -> None:
    good = folder.root / "average" / f"{folder.names[0]}.mrc"
    orphan = tmp_path / "average" / "orphan.mrc"  # no ../ctf/orphan_ctf.json
    orphan.parent.mkdir()
    write_mrc(orphan, np.ones((64, 64), np.float32), voxel_size_a=PIXEL_A)
    out = tmp_path / "out"
    result = runner.invoke(
        app, ["denoise", "deconvolve", str(good), str(orphan), "--out", str(out)]
    )
    assert result.exit_code == 1, result.output
    assert "FAILED" in result.output
    assert "orphan_ctf.json" in result.output
    assert "never average" in result.output
    # the good item: 4 Å display grid (256 · 1.5 / 4 = 96 px), the library's image
    written = _read(out / f"{folder.names[0]}_deconv.mrc")
    average = _read(good)
    expected = display_images(average, pixel_size_a=PIXEL_A, ctf=folder.ctfs[folder.names[0]])
    assert written.shape == (96, 96)
    torch.testing.assert_close(written, expected.deconvolved)
    _, header = read_mrc(out / f"{folder.names[0]}_deconv.mrc")
    assert header.pixel_size_a == pytest.approx(4.0)
    with Image.open(out / f"{folder.names[0]}_deconv.png") as png:
        assert png.size == (96, 96)
        assert png.mode == "L"
    # and it looks more like the particles (dark) than the raw micrograph does: correlation
    # with the negated projected potential 0.26 raw, 0.93 deconvolved (measured)
    target = -rescale(folder.potentials[folder.names[0]], (96, 96))
    raw = _corr(rescale(average, (96, 96)), target)
    assert _corr(written, target) > max(0.8, raw + 0.4)
    assert not (out / "orphan_deconv.png").exists()


def test_deconvolve_with_a_given_defocus_at_full_size(folder: Folder, tmp_path: Path) -> None:
    micrograph = folder.root / "average" / f"{folder.names[1]}.mrc"
    out = tmp_path / "out"
    args = ["denoise", "deconvolve", str(micrograph), "--out", str(out), "--full-size"]
    args += ["--defocus", "1.7", "--phase-shift", "30", "--strength", "0.7", "--highpass", "0"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    written = _read(out / f"{folder.names[1]}_deconv.mrc")
    assert written.shape == SHAPE
    ctf = CTFParams.create(
        pixel_size_a=PIXEL_A, defocus_um=1.7, phase_shift_rad=math.pi / 6, dtype=torch.float64
    )
    expected = display_images(
        _read(micrograph),
        pixel_size_a=PIXEL_A,
        ctf=ctf,
        deconvolution=DeconvolutionSettings(strength=0.7, highpass_a=None),
        settings=DisplaySettings(pixel_size_a=PIXEL_A),
    )
    assert expected.pixel_size_a == PIXEL_A
    torch.testing.assert_close(written, expected.deconvolved)


def test_both_ctf_sources_is_a_usage_error(folder: Folder, tmp_path: Path) -> None:
    micrograph = folder.root / "average" / f"{folder.names[0]}.mrc"
    result = runner.invoke(
        app,
        ["denoise", "deconvolve", str(micrograph), "--out", str(tmp_path), "--defocus", "1.5",
         "--ctf-dir", str(folder.root / "ctf")],
    )  # fmt: skip
    assert result.exit_code == 2
    assert "not both" in result.output


def _tiny_model(tmp_path: Path, *, pixel_size_a: float, name: str) -> Path:
    torch.manual_seed(0)
    network = DenoiserUNet(DenoiserArchitecture(widths=(4, 8), convs_per_level=1))
    return save_denoiser_model(
        DenoiserModel(network=network, name=name, pixel_size_a=pixel_size_a), tmp_path / name
    )


def test_apply_writes_denoised_images_from_the_halves(folder: Folder, tmp_path: Path) -> None:
    model_path = _tiny_model(tmp_path, pixel_size_a=3.0, name="tiny_v1")
    micrograph = folder.root / "average" / f"{folder.names[0]}.mrc"
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        ["denoise", "apply", str(micrograph), "--model", str(model_path), "--out", str(out),
         "--halves"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "tiny_v1" in result.output
    sub = micrograph.parent
    expected = display_images(
        _read(micrograph),
        pixel_size_a=PIXEL_A,
        ctf=folder.ctfs[folder.names[0]],
        denoiser=load_denoiser_model(model_path),
        odd=_read(sub / "odd" / micrograph.name),
        even=_read(sub / "even" / micrograph.name),
    )
    assert expected.denoised is not None
    denoised = _read(out / f"{folder.names[0]}_denoised.mrc")
    torch.testing.assert_close(denoised, expected.denoised, rtol=1e-4, atol=1e-4)
    assert (out / f"{folder.names[0]}_denoised.png").is_file()
    assert (out / f"{folder.names[0]}_deconv.png").is_file()


def test_apply_refuses_unknown_models_and_finer_models(folder: Folder, tmp_path: Path) -> None:
    micrograph = folder.root / "average" / f"{folder.names[0]}.mrc"
    unknown = runner.invoke(
        app,
        ["denoise", "apply", str(micrograph), "--model", "no_such_model", "--out", str(tmp_path)],
    )
    assert unknown.exit_code == 2
    assert "no denoiser model" in unknown.output
    fine = _tiny_model(tmp_path, pixel_size_a=1.0, name="fine_v1")
    result = runner.invoke(
        app,
        ["denoise", "apply", str(micrograph), "--model", str(fine), "--out", str(tmp_path / "o")],
    )
    assert result.exit_code == 1
    assert "fine_v1" in result.output
    assert "coarser" in result.output


# -- train --------------------------------------------------------------------------------


def _simulated_pairs(n: int) -> list[TrainingPair]:
    """Smooth random 'specimens' with independent Poisson noise in the two halves,
    normalised as the collector does."""
    pairs = []
    for index in range(n):
        generator = torch.Generator().manual_seed(100 + index)
        noise = torch.randn(1, 1, 96, 96, generator=generator)
        clean = torch.nn.functional.avg_pool2d(noise, 9, stride=1, padding=4)[0, 0]
        rate = (20 * (1 + 3 * clean)).clamp_min(0).double()
        odd = torch.poisson(rate, generator=generator).float()
        even = torch.poisson(rate, generator=generator).float()
        scale = normalisation(odd, even)
        pairs.append(TrainingPair(f"item_{index}", scale.apply(odd), scale.apply(even), 4.0, scale))
    return pairs


def test_train_writes_a_model_that_lowers_the_validation_loss(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CLI plumbing: pairs from the collector (replaced here by simulated pairs), a short
    training with its progress, and a model file with the name, pixel size and metadata that
    ``apply`` needs."""
    calls: dict[str, object] = {}

    def stand_in(folder: Path, **options: object) -> list[TrainingPair]:
        calls.update(options, folder=folder)
        return _simulated_pairs(3)

    monkeypatch.setattr(denoise_train, "collect_training_pairs", stand_in)
    small = DenoiserArchitecture(widths=(8, 16), convs_per_level=1)  # a fast stand-in network
    monkeypatch.setattr(denoise_train, "DenoiserUNet", lambda: DenoiserUNet(small))
    out = tmp_path / "models"
    result = runner.invoke(
        app,
        ["denoise", "train", str(tmp_path), "--name", "mine_v1", "--out", str(out),
         "--steps", "30", "--crop", "32", "--batch-size", "4", "--max-examples", "7",
         "--pixel-size", "4"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert calls["max_examples"] == 7
    assert calls["pixel_size_a"] == 4.0
    assert calls["deconvolution"] == DENOISER_INPUT_DECONVOLUTION
    model = load_denoiser_model(out / "mine_v1.n2n.pt")
    assert model.name == "mine_v1"
    assert model.pixel_size_a == 4.0
    assert model.metadata["items"] == ["item_0", "item_1", "item_2"]
    assert DeconvolutionSettings.model_validate(model.metadata["deconvolution"]) == (
        DENOISER_INPUT_DECONVOLUTION
    )
    training = model.metadata["training"]
    assert training["steps_run"] == 30
    untrained = training["validations"][0][1]
    assert training["best_validation_loss"] < 0.9 * untrained
    assert "validation loss" in result.output


def test_train_reports_missing_halves_and_too_few_examples(tmp_path: Path) -> None:
    empty = runner.invoke(
        app, ["denoise", "train", str(tmp_path), "--name", "x", "--out", str(tmp_path / "m")]
    )
    assert empty.exit_code == 1
    assert "no processed items" in empty.output
    bad_name = runner.invoke(
        app, ["denoise", "train", str(tmp_path), "--name", "a/b", "--out", str(tmp_path)]
    )
    assert bad_name.exit_code == 2


@pytest.mark.slow
def test_train_on_a_processed_folder(tiny_processed: Any, tmp_path: Path) -> None:
    """A real processing folder of one item: too few examples by default, a model with
    --min-examples 1."""
    folder = str(tiny_processed.folder)
    few = runner.invoke(app, ["denoise", "train", folder, "--name", "t", "--out", str(tmp_path)])
    assert few.exit_code == 1
    assert "only 1 usable training example" in few.output
    assert "at least 4" in few.output
    result = runner.invoke(
        app,
        ["denoise", "train", folder, "--name", "t", "--out", str(tmp_path), "--min-examples",
         "1", "--steps", "3", "--crop", "32", "--batch-size", "2"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    model = load_denoiser_model(tmp_path / "t.n2n.pt")
    assert model.metadata["items"] == [tiny_processed.movie.stem]
