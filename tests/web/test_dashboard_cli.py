"""``cryowarp dashboard``: the served page and the token rule as a user meets them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx2 as httpx
import pytest

from cryowarp.pipeline.project import init_project
from cryowarp.pipeline.settings import ProjectSettings
from cryowarp.web.background import free_port


def _start(args: list[str]) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "cryowarp", "dashboard", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "CRYOWARP_DASHBOARD_TOKEN": ""},
    )
    assert process.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if line.startswith("open "):
            return process, line.split(maxsplit=1)[1].strip()
        if not line and process.poll() is not None:
            break
    process.kill()
    raise AssertionError("the dashboard printed no URL")


def _stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    process.wait(timeout=20)
    assert process.stdout is not None
    process.stdout.close()


def _wait_until_served(url: str, **kwargs: object) -> httpx.Response:
    deadline = time.monotonic() + 30
    while True:
        try:
            return httpx.get(url, timeout=5, **kwargs)
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    settings = ProjectSettings.model_validate({"data": {"pattern": "raw/*.mrc"}})
    return init_project(tmp_path / "proj", settings).folder


def test_loopback_needs_no_token_and_serves_the_packaged_page(project: Path) -> None:
    port = free_port()
    process, url = _start([str(project), "--port", str(port)])
    try:
        assert url == f"http://127.0.0.1:{port}/"
        page = _wait_until_served(url)
        assert page.status_code == 200
        assert "<script" in page.text
        assert "http://" not in page.text.replace(url, "")  # nothing from elsewhere (no CDN)
        for script in re.findall(r'src="([^"]+)"', page.text):
            assert httpx.get(url + script.lstrip("./")).status_code == 200, script
        overview = httpx.get(url + "api/overview").json()
        assert overview["counts"]["items"] == 0
        rebinding = httpx.get(url + "api/overview", headers={"Host": "evil.example:80"})
        assert rebinding.status_code == 400
    finally:
        _stop(process)


def test_other_addresses_get_a_printed_token(project: Path) -> None:
    port = free_port()
    process, url = _start([str(project), "--host", "0.0.0.0", "--port", str(port)])
    try:
        token = re.fullmatch(rf"http://[^/]+:{port}/\?token=([A-Za-z0-9_-]{{32}})", url)
        assert token is not None, url
        base = f"http://127.0.0.1:{port}/"
        assert _wait_until_served(base + "api/overview").status_code == 401
        assert httpx.get(base, params={"token": "wrong"}).status_code == 401
        bearer = {"Authorization": f"Bearer {token[1]}"}
        assert httpx.get(base + "api/overview", headers=bearer).status_code == 200
        opened = httpx.get(base, params={"token": token[1]})
        assert opened.status_code == 200
        assert opened.cookies.get("cryowarp_token") == token[1]
        cookie = {"cryowarp_token": token[1]}
        assert httpx.get(base + "api/overview", cookies=cookie).status_code == 200
    finally:
        _stop(process)


def test_not_a_project_is_a_clear_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cryowarp", "dashboard", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "cryowarp.json" in result.stderr + result.stdout
