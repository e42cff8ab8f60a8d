"""The download path end to end against a local HTTP server (no network)."""

from __future__ import annotations

import hashlib
import http.server
import io
import stat
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from recfit.data.download import ARCHIVES, MARKER, URL_ENV, base_url, fetch, is_complete
from recfit.data.grouplens import movielens
from recfit.errors import ChecksumError, ConfigError, DownloadError

RATINGS = "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n2,3,3.5,964981247\n"
MOVIES = 'movieId,title,genres\n1,Toy Story (1995),Comedy\n3,"President, The (1995)",Drama\n'


def make_zip(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return buf.getvalue()


def release_zip(folder: str = "ml-latest-small") -> bytes:
    return make_zip(
        {
            f"{folder}/": b"",
            f"{folder}/ratings.csv": RATINGS.encode(),
            f"{folder}/movies.csv": MOVIES.encode(),
        }
    )


class Server:
    """Serves ``routes`` (path -> body, claimed Content-Length or None) and counts requests."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[bytes, int | None]] = {}
        self.hits: list[str] = []
        routes, hits = self.routes, self.hits

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                hits.append(self.path)
                if self.path not in routes:
                    self.send_error(404)
                    return
                body, claimed = routes[self.path]
                self.send_response(200)
                self.send_header("Content-Length", str(len(body) if claimed is None else claimed))
                self.end_headers()
                self.wfile.write(body)
                self.wfile.flush()
                self.close_connection = True

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/movielens"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def add(self, name: str, body: bytes, claimed: int | None = None) -> None:
        self.routes[f"/movielens/{name}"] = (body, claimed)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    yield s
    s.close()


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def test_good_checksum_downloads_and_loads(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = release_zip()
    server.add("ml-latest-small.zip", body)
    server.add("ml-latest-small.zip.md5", f"MD5 (ml-latest-small.zip) = {_md5(body)}\n".encode())
    monkeypatch.setenv(URL_ENV, server.url)
    cache = tmp_path / "cache"
    d = movielens("ml-latest-small", cache, download=True)
    assert (len(d), d.n_users, d.n_items) == (2, 2, 2)
    assert d.item_features is not None
    assert d.item_features.title.tolist()[1] == "President, The (1995)"
    assert is_complete(cache / "ml-latest-small")
    assert sorted(p.name for p in cache.iterdir()) == ["ml-latest-small"]  # no temp files left
    assert server.hits == ["/movielens/ml-latest-small.zip.md5", "/movielens/ml-latest-small.zip"]
    movielens("ml-latest-small", cache, download=True)  # cached: no request
    assert len(server.hits) == 2


def test_caller_checksum_and_gnu_md5_format(server: Server, tmp_path: Path) -> None:
    body = release_zip()
    server.add("ml-latest-small.zip", body)
    sha = hashlib.sha256(body).hexdigest()
    out = fetch("ml-latest-small", tmp_path, url=server.url, checksum=f"sha256:{sha}")
    assert out == tmp_path / "ml-latest-small" and (out / "ratings.csv").read_text() == RATINGS
    assert server.hits == ["/movielens/ml-latest-small.zip"]  # no .md5 needed
    other = tmp_path / "other"
    server.add("ml-latest-small.zip.md5", f"{_md5(body)}  ml-latest-small.zip\n".encode())
    assert is_complete(fetch("ml-latest-small", other, url=server.url + "/"))


def test_bad_checksum_leaves_no_cache(server: Server, tmp_path: Path) -> None:
    body = release_zip()
    server.add("ml-latest-small.zip", body)
    server.add("ml-latest-small.zip.md5", b"MD5 (ml-latest-small.zip) = " + b"0" * 32 + b"\n")
    with pytest.raises(ChecksumError) as info:
        fetch("ml-latest-small", tmp_path, url=server.url)
    msg = str(info.value)
    assert "0" * 32 in msg and _md5(body) in msg and server.url in msg
    assert info.value.expected == "md5:" + "0" * 32
    assert info.value.received == "md5:" + _md5(body)
    assert info.value.url is not None and info.value.url.startswith(server.url)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(DownloadError):  # and a later load does not accept anything
        movielens("ml-latest-small", tmp_path, download=False)


def test_table_checksum_is_used(server: Server, tmp_path: Path) -> None:
    body = release_zip("ml-100k")
    server.add("ml-100k.zip", body)
    table = ARCHIVES["ml-100k"].checksum
    assert table is not None
    with pytest.raises(ChecksumError, match=table.split(":")[1]):
        fetch("ml-100k", tmp_path, url=server.url)
    assert list(tmp_path.iterdir()) == []
    assert all(a.checksum is None or a.checksum.startswith("md5:") for a in ARCHIVES.values())


def test_truncated_transfer_leaves_no_cache(server: Server, tmp_path: Path) -> None:
    body = release_zip()
    server.add("ml-latest-small.zip", body[: len(body) // 2], claimed=len(body))
    with pytest.raises(DownloadError, match="received") as info:
        fetch("ml-latest-small", tmp_path, url=server.url, checksum=_md5(body))
    assert not isinstance(info.value, ChecksumError)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("member", "why"),
    [("ml-latest-small/../../evil", "'..'"), ("/tmp/recfit-evil-abs", "absolute")],
)
def test_unsafe_paths_rejected(server: Server, tmp_path: Path, member: str, why: str) -> None:
    body = make_zip({"ml-latest-small/ratings.csv": RATINGS.encode(), member: b"pwned"})
    server.add("ml-latest-small.zip", body)
    cache = tmp_path / "a" / "cache"
    with pytest.raises(DownloadError, match=why):
        fetch("ml-latest-small", cache, url=server.url, checksum=_md5(body))
    assert list(cache.iterdir()) == []
    assert not (tmp_path / "a" / "evil").exists() and not (tmp_path / "evil").exists()
    assert not Path("/tmp/recfit-evil-abs").exists()


def test_symlink_rejected(server: Server, tmp_path: Path) -> None:
    body = make_zip(
        {"ml-latest-small/ratings.csv": RATINGS.encode()},
        links={"ml-latest-small/movies.csv": "/etc/passwd"},
    )
    server.add("ml-latest-small.zip", body)
    with pytest.raises(DownloadError, match="symbolic link"):
        fetch("ml-latest-small", tmp_path, url=server.url, checksum=_md5(body))
    assert list(tmp_path.iterdir()) == []


def test_http_errors_and_bad_archives(server: Server, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="404"):
        fetch("ml-latest-small", tmp_path, url=server.url, checksum="0" * 32)
    with pytest.raises(DownloadError, match="published checksum"):
        fetch("ml-latest", tmp_path, url=server.url)
    server.add("ml-latest.zip", b"not a zip")
    with pytest.raises(DownloadError, match="valid zip"):
        fetch("ml-latest", tmp_path, url=server.url, checksum=_md5(b"not a zip"))
    wrong = release_zip("somewhere-else")
    server.add("ml-latest.zip", wrong)
    with pytest.raises(DownloadError, match="top-level folder 'ml-latest'"):
        fetch("ml-latest", tmp_path, url=server.url, checksum=_md5(wrong))
    assert list(tmp_path.iterdir()) == []


def test_existing_incomplete_folder_is_not_overwritten(server: Server, tmp_path: Path) -> None:
    (tmp_path / "ml-latest-small").mkdir()
    (tmp_path / "ml-latest-small" / "mine.txt").write_text("keep")
    with pytest.raises(DownloadError, match=MARKER):
        fetch("ml-latest-small", tmp_path, url=server.url, checksum="0" * 32)
    assert (tmp_path / "ml-latest-small" / "mine.txt").read_text() == "keep"
    assert server.hits == []


def test_config_errors_and_base_url(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="ml-100k"):
        fetch("ml-7m", tmp_path)
    with pytest.raises(ConfigError, match="checksum"):
        fetch("ml-latest-small", tmp_path, checksum="md5:xyz")
    monkeypatch.delenv(URL_ENV, raising=False)
    assert base_url() == "https://files.grouplens.org/datasets/movielens"
    monkeypatch.setenv(URL_ENV, "http://mirror/x/")
    assert base_url() == "http://mirror/x"
    assert base_url("http://arg") == "http://arg"
    assert {a.folder for a in ARCHIVES.values()} >= {"ml-10M100K", "ml-100k", "ml-32m"}


def test_encrypted_archive_with_matching_checksum_is_a_download_error(
    server: Server, tmp_path: Path
) -> None:
    raw = bytearray(release_zip())
    for sig, off in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):  # flag every member encrypted
        start = 0
        while (k := raw.find(sig, start)) >= 0:
            raw[k + off] |= 0x01
            start = k + 4
    server.add("ml-latest-small.zip", bytes(raw))
    with pytest.raises(DownloadError, match="encrypted"):
        fetch("ml-latest-small", tmp_path, url=server.url, checksum=_md5(bytes(raw)))
    assert list(tmp_path.iterdir()) == []


def test_extraction_is_capped_relative_to_the_release_size(server: Server, tmp_path: Path) -> None:
    spec = ARCHIVES["ml-latest-small"]
    assert spec.max_expanded == max(2 * spec.expanded, 64 << 20) < 1 << 30
    members = {
        "ml-latest-small/": b"",
        "ml-latest-small/ratings.csv": RATINGS.encode(),
        "ml-latest-small/movies.csv": MOVIES.encode(),
        "ml-latest-small/padding.bin": b"\0" * (spec.max_expanded + 1),
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    bomb = buf.getvalue()
    assert len(bomb) < spec.max_expanded // 100  # a small archive, a large expansion
    server.add("ml-latest-small.zip", bomb)
    with pytest.raises(DownloadError, match="at most"):
        fetch("ml-latest-small", tmp_path, url=server.url, checksum=_md5(bomb))
    assert list(tmp_path.iterdir()) == []
    small = release_zip()
    server.add("ml-latest-small.zip", small)
    with pytest.raises(DownloadError, match="at most 10 bytes"):
        fetch("ml-latest-small", tmp_path, url=server.url, checksum=_md5(small), max_expanded=10)
    assert list(tmp_path.iterdir()) == []
    assert fetch("ml-latest-small", tmp_path, url=server.url, checksum=_md5(small)).is_dir()


def test_offline_error_says_how_to_use_a_local_copy(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import socket
    import urllib.error
    import urllib.request

    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError(socket.gaierror(-3, "Temporary failure in name resolution"))

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    for name in ("ml-100k", "ml-latest"):  # the archive itself, and the published checksum
        with pytest.raises(DownloadError) as info:
            fetch(name, tmp_path / "cache")
        message = str(info.value)
        assert "--data-dir" in message and "RECFIT_DATA_DIR" in message, message
