"""The dashboard API's access rule, path traversal attempts and malformed requests
(docs/dashboard_api.md, "Access", "Item names"; issue 10) on a 30-item synthetic project
(:mod:`benchmarks.dashboard_project`).

Traversal attempts go over a real socket to uvicorn, so that paths reach the server as sent
(an HTTP client library would normalise ``..`` away); every answer must be a 4xx JSON error that
holds none of the content of the file aimed at.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from benchmarks.dashboard_project import write_synthetic_project
from fastapi.testclient import TestClient

from cryowarp.pipeline.project import SETTINGS_FILE
from cryowarp.web.app import create_app
from cryowarp.web.background import start_dashboard

TOKEN = "s3cret-T0ken_for-tests"
# Strings of the files a traversal aims at; none may appear in an answer.
SECRETS = ("root:x:0", "def create_app", '"voltage_kv"', '"raw_mtime_ns"', "OUTSIDE-SECRET")


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("security")
    (root / "secret.txt").write_text("OUTSIDE-SECRET\n")  # beside the project, not in it
    project = write_synthetic_project(
        root / "proj", n_items=30, seed=5, pixel_size_a=2.0, image_size_px=256
    )
    return project.folder


@pytest.fixture
def settings_kept(folder: Path) -> Iterator[bytes]:
    """The settings file's bytes; restored after the test."""
    path = folder / SETTINGS_FILE
    before = path.read_bytes()
    yield before
    path.write_bytes(before)


def _client(folder: Path, *, token: str | None = None, host: str = "127.0.0.1") -> TestClient:
    app = create_app(folder, token=token, host=host, min_refresh_interval_s=0.0)
    base = "http://localhost" if host == "127.0.0.1" else f"http://{host}:8000"
    return TestClient(app, base_url=base)


def _assert_error(response: object, statuses: tuple[int, ...]) -> None:
    status, text = response.status_code, response.text  # type: ignore[attr-defined]
    assert status in statuses, (status, text[:300])
    assert "error" in json.loads(text)
    assert not any(secret in text for secret in SECRETS)


# -- the token rule ------------------------------------------------------------------------


def test_loopback_without_token_is_open(folder: Path) -> None:
    client = _client(folder)
    assert client.get("/api/overview").json()["counts"]["items"] == 30
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert client.get("/static/api.js").status_code == 200


@pytest.mark.parametrize(
    ("host_header", "status"),
    [
        ("localhost", 200),
        ("localhost:8765", 200),
        ("127.0.0.1:8765", 200),
        ("[::1]:8765", 200),
        ("evil.example", 400),
        ("evil.example:8765", 400),
        ("localhost.evil.example", 400),
        ("127.0.0.1.nip.io", 400),
        ("", 400),
    ],
)
def test_loopback_refuses_other_host_headers(folder: Path, host_header: str, status: int) -> None:
    response = _client(folder).get("/api/overview", headers={"host": host_header})
    assert response.status_code == status
    if status != 200:
        _assert_error(response, (400,))
        assert "movie_000" not in response.text


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.10", "127.0.0.1"])
def test_token_is_required_when_given_or_not_loopback(folder: Path, host: str) -> None:
    client = _client(folder, token=TOKEN, host=host)
    for path in ("/", "/static/api.js", "/api/overview", "/api/items/movie_000"):
        _assert_error(client.get(path), (401,))
        assert client.get(path, headers={"authorization": f"Bearer {TOKEN}"}).status_code == 200
        assert client.get(path, params={"token": TOKEN}).status_code == 200
        client.cookies.clear()
    before = (folder / SETTINGS_FILE).read_bytes()
    _assert_error(client.put("/api/filters", json={"defocus_max_um": 2.0}), (401,))
    assert (folder / SETTINGS_FILE).read_bytes() == before


@pytest.mark.parametrize(
    "wrong", ["", "x", TOKEN[:-1], TOKEN + "x", TOKEN.upper(), f" {TOKEN}x", "Bearer " + TOKEN]
)
def test_wrong_tokens_are_refused_in_every_carrier(folder: Path, wrong: str) -> None:
    client = _client(folder, token=TOKEN, host="0.0.0.0")
    _assert_error(client.get("/api/overview", headers={"authorization": f"Bearer {wrong}"}), (401,))
    _assert_error(client.get("/api/overview", params={"token": wrong}), (401,))
    client.cookies.set("cryowarp_token", wrong)
    _assert_error(client.get("/api/overview"), (401,))


def test_cookie_carries_the_token_after_the_page_is_opened_with_it(folder: Path) -> None:
    client = _client(folder, token=TOKEN, host="0.0.0.0")
    page = client.get("/", params={"token": TOKEN})
    assert page.status_code == 200
    cookie = page.headers["set-cookie"]
    assert cookie.startswith(f"cryowarp_token={TOKEN};")
    assert "httponly" in cookie.lower()
    assert "samesite=strict" in cookie.lower()
    overview = client.get("/api/overview")  # the cookie jar now holds the token
    assert overview.status_code == 200
    assert overview.json()["counts"]["items"] == 30
    client.cookies.clear()
    _assert_error(client.get("/api/overview"), (401,))


def test_a_non_loopback_server_without_token_is_refused(folder: Path) -> None:
    with pytest.raises(ValueError, match="token"):
        create_app(folder, host="0.0.0.0")


# -- path traversal over a real socket ------------------------------------------------------


@pytest.fixture(scope="module")
def port(folder: Path) -> Iterator[int]:
    with start_dashboard(folder, min_refresh_interval_s=0.0) as dashboard:
        yield int(dashboard.url.rsplit(":", 1)[1].rstrip("/"))


def _raw(port: int, request: bytes) -> tuple[int, str]:
    """Send ``request`` as is; the status and the body of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as connection:
        connection.sendall(request)
        data = b""
        while chunk := connection.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body.decode("utf-8", "replace")


def _raw_get(port: int, path: str) -> tuple[int, str]:
    return _raw(
        port, f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode()
    )


TRAVERSALS = [
    "/api/items/..%2F..%2Fetc%2Fpasswd",
    "/api/items/..%2f..%2f..%2f..%2f..%2f..%2f..%2fetc%2fpasswd",
    "/api/items/../cryowarp.json",
    "/api/items/%2e%2e%2fcryowarp.json",
    "/api/items/..",
    "/api/items/.%2E",
    "/api/items/%2Fetc%2Fpasswd",
    "/api/items//etc/passwd",
    "/api/items/movie_000%00",
    "/api/items/movie_000%00.json",
    "/api/items/%00",
    "/api/items/C:%5CWindows%5Cwin.ini",
    "/api/items/..%5C..%5Ccryowarp.json",
    "/api/items/movie_000%2F..%2F..%2Fcryowarp.json",
    "/api/items/movie_000/../../cryowarp.json",
    "/api/items/..%2Fitems%2Fmovie_000/picks",
    "/api/items/..%2F..%2Fsecret.txt/spectrum",
    "/api/items/movie_000/image/..%2F..%2F..%2Fcryowarp.json",
    "/api/items/movie_000/image/average%00",
    "/api/items/movie_000/image/%2e%2e",
    "/static/../app.py",
    "/static/%2e%2e/app.py",
    "/static/..%2Fapp.py",
    "/static/%2e%2e%2fapp.py",
    "/static/..%2F..%2F..%2F..%2Fetc%2Fpasswd",
    "/static/app.py",
    "/static/__init__.py",
    "/static/api.js%00.png",
    "/static/.%2E/access.py",
    "/../../../etc/passwd",
    "/%2e%2e/%2e%2e/etc/passwd",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_path_traversal_is_refused(port: int, path: str) -> None:
    status, body = _raw_get(port, path)
    assert status in (400, 404), (status, body[:300])
    assert "error" in json.loads(body)
    assert not any(secret in body for secret in SECRETS)


def test_known_item_answers_over_the_same_socket(port: int) -> None:
    status, body = _raw_get(port, "/api/items/movie_000")
    assert status == 200
    assert json.loads(body)["name"] == "movie_000"


@pytest.mark.parametrize(
    "path",
    [
        "/api/items/movie_999",
        "/api/items/movie_999/spectrum",
        "/api/items/movie_999/picks",
        "/api/items/movie_999/image/average",
        "/api/items/secret.txt",
        "/api/items/cryowarp",
    ],
)
def test_unknown_items_are_404(folder: Path, path: str) -> None:
    _assert_error(_client(folder).get(path), (404,))


@pytest.mark.parametrize(
    "kind", ["raw", "mrc", "AVERAGE", "average.png", "spectrum_json", "%2e%2e"]
)
def test_image_kinds_outside_the_enum_are_refused(folder: Path, kind: str) -> None:
    _assert_error(_client(folder).get(f"/api/items/movie_000/image/{kind}"), (400, 404, 422))


def test_a_link_out_of_the_project_is_not_followed(folder: Path) -> None:
    """An output replaced by a symbolic link to a file outside the project is not served."""
    target = folder / "ctf" / "movie_001_ctf_spectrum.png"
    kept = target.with_name("kept.png")
    target.rename(kept)
    try:
        target.symlink_to(folder.parent / "secret.txt")
        _assert_error(_client(folder).get("/api/items/movie_001/image/spectrum"), (404,))
    finally:
        target.unlink()
        kept.rename(target)
    assert _client(folder).get("/api/items/movie_001/image/spectrum").status_code == 200


# -- malformed requests ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"{",
        b"[1, 2]",
        b'"defocus_max_um"',
        b"null",
        b'{"defocus_max_um": "two"}',
        b'{"defocus_max_um": [2.0]}',
        b'{"defocus_max_um": {"value": 2.0}}',
        b'{"particles_min": 1.5}',
        b'{"particles_min": "many"}',
        b'{"particles_min": true}',
        b'{"defocus_max_um": "2.5"}',
        b'{"astigmatism_max_um": -0.1}',
        b'{"masked_fraction_max": 1.5}',
        b'{"ctf_resolution_max_a": 0}',
        b'{"unknown_key": 1}',
        b'{"include": ["movie_000"]}',
        b'{"exclude": ["movie_000"]}',
        b'{"force_include": ["movie_000"]}',
        b'{"reject_failed_ctf": false}',
        b'{"defocus_min_um": 3.0, "defocus_max_um": 1.0}',
        b'{"particles_min": 50, "particles_max": 10}',
    ],
)
def test_malformed_filter_bodies_are_422_and_change_nothing(
    folder: Path, settings_kept: bytes, body: bytes
) -> None:
    client = _client(folder)
    response = client.put(
        "/api/filters", content=body, headers={"content-type": "application/json"}
    )
    _assert_error(response, (422,))
    assert (folder / SETTINGS_FILE).read_bytes() == settings_kept


def test_a_minimum_above_the_saved_maximum_is_422(folder: Path, settings_kept: bytes) -> None:
    client = _client(folder)
    assert client.put("/api/filters", json={"defocus_max_um": 2.0}).status_code == 200
    saved = (folder / SETTINGS_FILE).read_bytes()
    _assert_error(client.put("/api/filters", json={"defocus_min_um": 2.5}), (422,))
    assert (folder / SETTINGS_FILE).read_bytes() == saved
    filters = client.get("/api/overview").json()["filters"]
    assert (filters["defocus_min_um"], filters["defocus_max_um"]) == (None, 2.0)


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity"])
def test_non_finite_filter_values_are_422(
    folder: Path, settings_kept: bytes, literal: bytes
) -> None:
    body = b'{"defocus_min_um": ' + literal + b"}"
    response = _client(folder).put(
        "/api/filters", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert (folder / SETTINGS_FILE).read_bytes() == settings_kept


def test_huge_bodies_are_refused(folder: Path, settings_kept: bytes) -> None:
    client = _client(folder)
    body = b'{"defocus_max_um": 2.0' + b" " * (1 << 20) + b"}"
    response = client.put(
        "/api/filters", content=body, headers={"content-type": "application/json"}
    )
    _assert_error(response, (413, 422))
    assert (folder / SETTINGS_FILE).read_bytes() == settings_kept


def test_huge_chunked_bodies_are_refused(port: int, folder: Path, settings_kept: bytes) -> None:
    """A body sent in chunks, without a length, is cut off at the limit too."""
    head = b"PUT /api/filters HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
    head += b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    body = [b'{"defocus_max_um": 2.0'] + [b" " * 65536] * 16 + [b"}"]
    answer = b""
    with socket.create_connection(("127.0.0.1", port), timeout=20) as connection:
        connection.sendall(head)
        for part in body:  # stop sending once the server has answered
            if select.select([connection], [], [], 0.05)[0]:
                break
            try:
                connection.sendall(b"%x\r\n%s\r\n" % (len(part), part))
            except (BrokenPipeError, ConnectionResetError):
                break
        else:
            connection.sendall(b"0\r\n\r\n")
        with contextlib.suppress(ConnectionResetError):
            while chunk := connection.recv(65536):
                answer += chunk
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert (folder / SETTINGS_FILE).read_bytes() == settings_kept


@pytest.mark.parametrize(
    "body",
    [
        b'{"selection": "maybe"}',
        b'{"selection": null}',
        b'{"selection": "exclude", "why": "bad"}',
        b"{}",
        b"exclude",
        b"",
    ],
)
def test_malformed_selection_bodies_are_422(
    folder: Path, settings_kept: bytes, body: bytes
) -> None:
    response = _client(folder).put(
        "/api/items/movie_000/selection", content=body, headers={"content-type": "application/json"}
    )
    _assert_error(response, (422,))
    assert (folder / SETTINGS_FILE).read_bytes() == settings_kept


@pytest.mark.parametrize("threshold", ["0", "1", "-0.5", "1.5", "abc", "nan", "inf", "0.5.1"])
def test_pick_thresholds_outside_0_1_are_refused(folder: Path, threshold: str) -> None:
    response = _client(folder).get("/api/items/movie_000/picks", params={"threshold": threshold})
    _assert_error(response, (400, 422))


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/overview"),
        ("DELETE", "/api/filters"),
        ("GET", "/api/filters"),
        ("DELETE", "/api/items/movie_000"),
        ("POST", "/api/items/movie_000/selection"),
        ("PUT", "/api/items/movie_000/image/average"),
    ],
)
def test_wrong_methods_are_405(folder: Path, settings_kept: bytes, method: str, path: str) -> None:
    _assert_error(_client(folder).request(method, path), (405,))
    assert (folder / SETTINGS_FILE).read_bytes() == settings_kept


def test_overlong_since_is_refused(folder: Path) -> None:
    _assert_error(_client(folder).get("/api/overview", params={"since": "v" * 500}), (400, 422))
