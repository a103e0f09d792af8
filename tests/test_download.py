"""Release files: blob-id verification, offline failure message, verified atomic download."""
import subprocess
import urllib.error

import pytest

from crsbench.datasets.download import (KGSF_REDIAL_FILES, ReleaseFile, ensure_files, git_blob_id,
                                        verify_bytes, verify_file)
from crsbench.errors import DataError


def test_blob_id_equals_git_hash_object(tmp_path):
    path = tmp_path / "f.txt"
    path.write_bytes(b"hello crsbench\n")
    expected = subprocess.run(["git", "hash-object", str(path)], capture_output=True, text=True,
                              check=True).stdout.strip()
    assert git_blob_id(path.read_bytes()) == expected
    verify_file(path, expected)
    verify_file(path, expected[:8])                      # a known prefix is enough
    with pytest.raises(DataError, match="does not match"):
        verify_file(path, "0" * 40)
    with pytest.raises(DataError):
        verify_bytes(b"hello crsbench!\n", expected, "x")


def test_shared_upstream_files_match_the_recorded_ids(real_data_dir):
    for f in KGSF_REDIAL_FILES:
        if f.path != "train_data.jsonl":                 # the shared copy is partial, by design
            verify_file(real_data_dir / "redial" / f.path, f.blob_id)


def test_offline_failure_lists_files_and_where_to_put_them(tmp_path):
    files = (ReleaseFile("a.jsonl", "https://example.invalid/a.jsonl", "0" * 40),
             ReleaseFile("b.txt", None, "1" * 40))
    def offline(url, timeout):
        raise urllib.error.URLError("network unreachable")
    with pytest.raises(DataError) as err:
        ensure_files(tmp_path, files, fetch=offline)
    text = str(err.value)
    assert "a.jsonl" in text and "b.txt" in text and str(tmp_path) in text
    assert "network unreachable" in text and "https://example.invalid/a.jsonl" in text


def test_download_is_verified_and_atomic(tmp_path):
    good = b"real content\n"
    files = (ReleaseFile("sub/a.txt", "https://x/a.txt", git_blob_id(good)),)
    ensure_files(tmp_path, files, fetch=lambda url, timeout: good)
    assert (tmp_path / "sub" / "a.txt").read_bytes() == good
    other = tmp_path / "other"
    with pytest.raises(DataError, match="does not match"):
        ensure_files(other, files, fetch=lambda url, timeout: b"tampered\n")
    assert not (other / "sub" / "a.txt").exists()
    assert not list(other.rglob("*")) or all(p.is_dir() for p in other.rglob("*"))


def test_present_files_need_no_network(tmp_path):
    (tmp_path / "a.txt").write_text("x")
    def no_call(url, timeout):
        raise AssertionError("must not download")
    ensure_files(tmp_path, (ReleaseFile("a.txt", "https://x", "0" * 40),), fetch=no_call)


@pytest.fixture
def local_server(real_data_dir):
    """A real HTTP server on localhost serving the shared ReDial directory: the downloader's own
    transport (urllib) is exercised with real bytes, whatever network the machine has."""
    import functools
    import http.server
    import threading
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(real_data_dir / "redial"))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def test_real_transport_downloads_verifies_and_reports_failures(local_server, tmp_path):
    stopwords = next(f for f in KGSF_REDIAL_FILES if f.path == "stopwords.txt")
    served = ReleaseFile("stopwords.txt", local_server + "stopwords.txt", stopwords.blob_id)
    ensure_files(tmp_path, (served,), timeout=10)
    verify_file(tmp_path / "stopwords.txt", stopwords.blob_id)
    missing = ReleaseFile("nothing.txt", local_server + "nothing.txt", "0" * 40)
    with pytest.raises(DataError) as err:
        ensure_files(tmp_path / "b", (missing,), timeout=10)
    assert "nothing.txt (download failed" in str(err.value) and str(tmp_path / "b") in str(err.value)
    # a refused connection (nothing listens on port 9 of localhost) fails fast with the same message
    closed = ReleaseFile("x.txt", "http://127.0.0.1:9/x.txt", "0" * 40)
    with pytest.raises(DataError, match="x.txt .download failed"):
        ensure_files(tmp_path / "c", (closed,), timeout=5)
