"""Foundation benchmarks: speed of core operations relative to a plain FFT, and accuracy
against Warp's golden values.

Speed: each operation is timed together with a baseline measured in the same run — a plain
``torch.fft.rfftn`` over the same array size as the operation's images — and reported as
``ratio = t_op / t_fft``.  Accuracy: maximum absolute difference to Warp's own outputs (when
``../shared/data`` is present).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks._timing import median_seconds
from cryowarp.core.backprojection import Reconstructor
from cryowarp.core.ctf import CTFParams, ctf_2d
from cryowarp.core.fourier import irfft_centered
from cryowarp.core.projection import prepare_volume_for_projection, project_fourier
from cryowarp.core.rotations import random_rotations
from cryowarp.core.shift import shift_image
from cryowarp.simulate.phantom import blob_phantom


def _fft_baseline(shape: tuple[int, ...], device: torch.device) -> Callable[[], object]:
    x = torch.randn(shape, device=device)
    return lambda: torch.fft.rfftn(x, dim=(-2, -1))


def speed_cases(device: torch.device, *, quick: bool) -> list[dict[str, Any]]:
    n_img, size = (8, 256) if quick else (16, 512)
    n_views, box = (64, 48) if quick else (256, 96)
    results: list[dict[str, Any]] = []

    def record(name: str, size_desc: str, op: Callable[[], object], fft_shape: tuple[int, ...]):
        t_fft = median_seconds(_fft_baseline(fft_shape, device), device=device)
        t_op = median_seconds(op, device=device)
        results.append(
            {
                "name": name,
                "device": device.type,
                "size": size_desc,
                "seconds": t_op,
                "fft_seconds": t_fft,
                "ratio_to_fft": t_op / t_fft,
            }
        )

    params = CTFParams.create(
        pixel_size_a=1.0,
        defocus_um=torch.linspace(0.8, 3.0, n_img, device=device),
        astig_x_um=0.05,
        astig_y_um=-0.02,
        phase_shift_rad=0.3,
        bfactor_a2=-50.0,
        device=device,
    )
    record(
        "ctf_2d",
        f"{n_img} x {size}^2 rfft",
        lambda: ctf_2d(params, (size, size)),
        (n_img, size, size),
    )

    images = torch.randn(n_img, size, size, device=device)
    shifts = torch.randn(n_img, 2, device=device) * 3
    record(
        "shift_image",
        f"{n_img} x {size}^2",
        lambda: shift_image(images, shifts),
        (n_img, size, size),
    )

    volume = blob_phantom(box, device=device)
    rotations = random_rotations(n_views, generator=torch.Generator().manual_seed(0)).to(device)
    prepared = prepare_volume_for_projection(volume)
    record(
        "project_fourier",
        f"{n_views} views of {box}^3 (volume prepared once)",
        lambda: project_fourier(prepared, rotations),
        (n_views, box, box),
    )

    images = irfft_centered(project_fourier(prepared, rotations), shape=(box, box))

    def backproject() -> None:
        rec = Reconstructor((box, box, box), device=device)
        rec.insert_images(images, rotations)

    record(
        "backproject_insert",
        f"{n_views} images into {box}^3 (2x padded, incl. image FFTs)",
        backproject,
        (n_views, box, box),
    )
    return results


def accuracy_cases(shared_data: Path) -> list[dict[str, Any]]:
    """Max abs difference to Warp's golden CTF image and Fourier shift."""
    import mrcfile

    ref = shared_data / "warp_reference" / "warpylib_testdata"
    out: list[dict[str, Any]] = []
    if not ref.is_dir():
        return out
    with mrcfile.open(ref / "ctf_reference.mrc", permissive=True) as f:
        warp_ctf = torch.from_numpy(np.asarray(f.data, dtype=np.float32).copy())
    c1 = CTFParams.from_warp(
        defocus_um=1.5,
        defocus_delta_um=0.3,
        defocus_angle_deg=25,
        pixel_size_a=1.1,
        voltage_kv=300,
        cs_mm=2.7,
        amplitude=0.1,
        phase_shift_pi=0.4,
        bfactor_a2=-40,
        scale=0.9,
    )
    c2 = CTFParams.from_warp(
        defocus_um=2.5,
        defocus_delta_um=0.0,
        defocus_angle_deg=0,
        pixel_size_a=1.5,
        voltage_kv=200,
        cs_mm=2.7,
        amplitude=0.07,
        phase_shift_pi=0.0,
        bfactor_a2=-40,
        scale=1.0,
    )
    ours = torch.stack([ctf_2d(c, (256, 256)) for c in (c1, c2)])
    out.append(
        {
            "name": "ctf_vs_warp",
            "max_abs_error": float((ours - warp_ctf).abs().max()),
            "reference": "ctf_reference.mrc",
        }
    )
    with mrcfile.open(ref / "shift_reference.mrc", permissive=True) as f:
        original = torch.from_numpy(np.asarray(f.data, dtype=np.float32).copy())
    with mrcfile.open(ref / "shift_shifted_2.5_3.3.mrc", permissive=True) as f:
        warp_shifted = torch.from_numpy(np.asarray(f.data, dtype=np.float32).copy())
    shifted = shift_image(original.reshape(8, 8), torch.tensor([2.5, 3.3]))
    out.append(
        {
            "name": "shift_vs_warp",
            "max_abs_error": float((shifted - warp_shifted.reshape(8, 8)).abs().max()),
            "reference": "shift_shifted_2.5_3.3.mrc",
        }
    )
    return out


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "## foundation",
        "",
        f"torch {report['torch']}, {report['threads']} CPU threads, devices: "
        f"{', '.join(report['devices'])}",
        "",
        "| operation | device | size | seconds | plain FFT seconds | ratio to FFT |",
        "|---|---|---|---|---|---|",
    ]
    for r in report["speed"]:
        lines.append(
            f"| {r['name']} | {r['device']} | {r['size']} | {r['seconds']:.4g} | "
            f"{r['fft_seconds']:.4g} | {r['ratio_to_fft']:.3g} |"
        )
    if report["accuracy"]:
        lines += ["", "| accuracy check | max abs error | reference |", "|---|---|---|"]
        for r in report["accuracy"]:
            err = r["max_abs_error"]
            lines.append(f"| {r['name']} | {err:.3g} | {r['reference']} |")
    return "\n".join(lines) + "\n"


def run(*, quick: bool, shared_data: Path) -> dict[str, Any]:
    devices = [torch.device("cpu")]
    if torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    speed: list[dict[str, Any]] = []
    for device in devices:
        speed += speed_cases(device, quick=quick)
    return {
        "suite": "foundation",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "devices": [d.type for d in devices],
        "quick": quick,
        "speed": speed,
        "accuracy": accuracy_cases(shared_data),
        "notes": "ratio_to_fft = t_op / t_rfft2 of an array the size of the op's images",
    }
