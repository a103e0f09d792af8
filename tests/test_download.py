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


def test_real_offline_path_fails_fast_with_a_clear_message(tmp_path):
    # no network here: the real opener must fail, and the message must say where to put files
    with pytest.raises(DataError) as err:
        ensure_files(tmp_path, KGSF_REDIAL_FILES[:1], timeout=3)
    assert str(tmp_path) in str(err.value)
