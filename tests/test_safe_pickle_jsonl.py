"""Untrusted pickles and malformed JSON lines give clear errors; real data pickles load."""
import collections
import os
import pickle

import pytest

from crsbench.datasets.jsonl import read_jsonl, require
from crsbench.datasets.safe_pickle import load_pickle, loads
from crsbench.errors import DataError


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/crsbench_pwned",))


def test_pickle_importing_code_is_refused_and_nothing_runs(tmp_path):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(_Evil()))
    with pytest.raises(DataError) as err:
        load_pickle(path)
    assert str(path) in str(err.value) and "allow-list" in str(err.value)
    assert not os.path.exists("/tmp/crsbench_pwned")


def test_truncated_pickle_names_the_file(tmp_path):
    path = tmp_path / "cut.pkl"
    path.write_bytes(pickle.dumps({"a": list(range(100))})[:-10])
    with pytest.raises(DataError) as err:
        load_pickle(path)
    assert str(path) in str(err.value) and "truncated" in str(err.value)


def test_plain_containers_and_defaultdict_load(tmp_path):
    data = collections.defaultdict(list, {1: [(2, 3)], 4: []})
    assert loads(pickle.dumps(data)) == data
    assert loads(pickle.dumps({"x": (1, 2.0, "s", None, True)})) == {"x": (1, 2.0, "s", None, True)}


def test_real_data_pickles_load(real_data_dir):
    subkg = load_pickle(real_data_dir / "redial" / "subkg.pkl")
    assert isinstance(subkg, collections.defaultdict) and len(subkg) == 23160
    assert len(load_pickle(real_data_dir / "redial" / "id2entity.pkl")) == 6924


def test_malformed_json_line_names_file_and_line(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2,\n')
    rows = read_jsonl(path)
    assert next(rows) == (1, {"a": 1})
    with pytest.raises(DataError) as err:
        next(rows)
    assert f"{path}:3" in str(err.value)


def test_non_object_line_and_missing_field(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text("[1, 2]\n")
    with pytest.raises(DataError, match="expected a JSON object"):
        list(read_jsonl(path))
    with pytest.raises(DataError) as err:
        require({"a": 1}, "messages", list, "f.jsonl:7")
    assert "f.jsonl:7" in str(err.value) and "'messages'" in str(err.value)
    with pytest.raises(DataError, match="should be list"):
        require({"messages": "x"}, "messages", list, "f.jsonl:7")
