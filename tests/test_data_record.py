"""run.json's `data` keeps the preprocessed content a run started on; a resume on another build warns."""
from types import SimpleNamespace

from loguru import logger

from crsbench.datasets.provenance import DataVersion
from crsbench.run_dir import RunDir
from crsbench.runner import _data_record


def _loaded(content: str):
    bundle = SimpleNamespace(splits={"train": [1, 2, 3]})
    return SimpleNamespace(bundle=bundle, version=DataVersion("redial", "f" * 64, "p" * 64, content))


def _record(meta, content, resuming):
    messages = []
    sink = logger.add(lambda m: messages.append(str(m)), level="WARNING")
    try:
        return _data_record(RunDir("/tmp/run"), meta, _loaded(content), resuming), messages
    finally:
        logger.remove(sink)


def test_a_fresh_run_records_the_content_and_a_resume_on_the_same_build_keeps_it():
    start, messages = _record({}, "a" * 64, resuming=False)
    assert start == {"dataset": "redial", "files": "f" * 64, "fingerprint": "p" * 64, "content": "a" * 64,
                     "train_conversations": 3}
    again, messages = _record({"data": start}, "a" * 64, resuming=True)
    assert again == start and not messages


def test_a_resume_on_another_build_keeps_the_start_and_warns():
    start, _ = _record({}, "a" * 64, resuming=False)
    resumed, messages = _record({"data": start}, "b" * 64, resuming=True)
    assert resumed["content"] == "a" * 64 and resumed["content_at_resume"] == "b" * 64
    assert len(messages) == 1 and "aaaaaaaaaa" in messages[0] and "bbbbbbbbbb" in messages[0]


def test_a_run_from_before_content_digests_does_not_get_one_at_resume():
    old = {"dataset": "redial", "files": "f" * 64, "fingerprint": "p" * 64, "train_conversations": 3}
    resumed, messages = _record({"data": old}, "b" * 64, resuming=True)
    assert "content" not in resumed and resumed["content_at_resume"] == "b" * 64 and not messages
