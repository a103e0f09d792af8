"""A full disk: atomic writes say so (and keep the old file), and finished runs' checkpoints can go."""
import errno

import pytest

from crsbench import atomic
from crsbench.atomic import atomic_write, atomic_write_text
from crsbench.cli import main
from crsbench.errors import StorageError
from crsbench.results.prune import prune_checkpoints
from crsbench.run_dir import RunDir


def test_a_write_that_runs_out_of_space_names_the_file_keeps_the_old_one_and_leaves_no_temp(tmp_path):
    target = tmp_path / "last.pt"
    atomic_write_text(target, "old")

    def no_space(handle):
        handle.write("partial")
        raise OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(StorageError, match=r"last\.pt: could not be written, the disk is full") as caught:
        atomic_write(target, no_space)
    assert "--prune-checkpoints" in caught.value.hint
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_a_short_write_on_an_almost_full_disk_is_a_full_disk_and_other_errors_stay_theirs(tmp_path, monkeypatch):
    def short_write(handle):                 # as torch.save reports it: "unexpected pos ..."
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 652755904 vs 652755792")
    with pytest.raises(RuntimeError, match="unexpected pos") as caught:          # plenty of space: not ours
        atomic_write(tmp_path / "a", short_write)
    assert not isinstance(caught.value, StorageError)
    usage = atomic.shutil.disk_usage(tmp_path)
    monkeypatch.setattr(atomic.shutil, "disk_usage", lambda _: usage._replace(free=10 * 2**20))
    with pytest.raises(StorageError, match="10 MiB free"):
        atomic_write(tmp_path / "a", short_write)


def _run(root, name, status, weights=True):
    run = RunDir(root / "redial" / "kgsf" / name)
    run.path.mkdir(parents=True)
    run.write_meta({"run_id": name, "model": "kgsf", "dataset": "redial", "status": status})
    run.checkpoints.mkdir()
    run.last_checkpoint.write_bytes(b"x" * 1000)
    if weights:
        run.weights.write_bytes(b"w")
    return run


def test_prune_checkpoints_frees_finished_runs_only(tmp_path, capsys):
    done = _run(tmp_path, "a-seed1", "finished")
    kept = [_run(tmp_path, "b-seed1", "interrupted"), _run(tmp_path, "c-seed1", "failed"),
            _run(tmp_path, "d-seed1", "finished", weights=False)]        # no model.pt: keep what there is
    assert prune_checkpoints(tmp_path, dry_run=True) == {"runs": [str(done.path)], "bytes": 1000}
    assert done.last_checkpoint.exists()
    assert main(["runs", "--prune-checkpoints", "--output-dir", str(tmp_path)]) == 0
    assert "freed 0.00 GiB: the checkpoints of 1 finished run(s)" in capsys.readouterr().out
    assert not done.checkpoints.exists() and done.weights.exists()
    assert all(run.last_checkpoint.exists() for run in kept)
    assert prune_checkpoints(tmp_path) == {"runs": [], "bytes": 0}
