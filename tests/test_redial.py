"""ReDial preprocessing: both message formats, turn merging, items, bad input, and the real data."""
import json

import pytest

from crsbench.datasets.redial import RedialSpec
from crsbench.errors import DataError


def _conv(messages, mentions=None, cid="c1"):
    return {"conversationId": cid, "initiatorWorkerId": 1, "respondentWorkerId": 2,
            "movieMentions": mentions or {}, "messages": messages,
            "initiatorQuestions": {}, "respondentQuestions": {}}


def _spec(tmp_path, real_data_dir, train_lines):
    """A data dir with our train split and the real graphs/pickles (symlinked, not copied)."""
    root = tmp_path / "redial"
    root.mkdir()
    for name in RedialSpec.input_files:
        if name.startswith("conceptnet/"):
            continue
        if name != "train_data.jsonl":
            (root / name).symlink_to(real_data_dir / "redial" / name)
    (root / "conceptnet").symlink_to(real_data_dir / "redial" / "conceptnet")
    (root / "train_data.jsonl").write_text("\n".join(train_lines) + "\n")
    import yaml
    from crsbench.config.loader import DEFAULTS_FILE
    settings = yaml.safe_load(DEFAULTS_FILE.read_text())["data"]
    return RedialSpec(tmp_path, settings)


def test_formats_merging_and_items(tmp_path, real_data_dir):
    original = _conv([
        {"messageId": 1, "timeOffset": 0, "senderWorkerId": 1, "text": "Hi! I loved @84001"},
        {"messageId": 2, "timeOffset": 5, "senderWorkerId": 1, "text": "and Tom Hanks films"},
        {"messageId": 3, "timeOffset": 9, "senderWorkerId": 2, "text": "Try @91332 or @999999999"}],
        {"84001": "Donnie Darko (2001)", "91332": "Pulp Fiction (1994)"})
    merged = _conv([{"senderWorkerId": 2, "text": "Hello"}, {"senderWorkerId": 1, "text": "comedy please"},
                    {"senderWorkerId": 2, "text": "@91332"}], {"91332": "Pulp Fiction (1994)"}, "c2")
    spec = _spec(tmp_path, real_data_dir, [json.dumps(original), json.dumps(merged)])
    convs = spec._read_split("train")
    assert [len(c["turns"]) for c in convs] == [2, 3]
    assert convs[0]["turns"][0] == ("seeker", "Hi! I loved @84001 and Tom Hanks films")
    from loguru import logger
    messages = []
    sink = logger.add(messages.append, level="WARNING")
    try:
        bundle = spec.build()
    finally:
        logger.remove(sink)
    assert any("train_data.jsonl:1" in m and "@999999999" in m for m in messages)
    first = bundle.splits["train"][0]
    assert [t.role for t in first.turns] == ["seeker", "recommender"]
    assert len(first.turns[0].items) == 1 and len(first.turns[1].items) == 1   # unknown id dropped
    assert bundle.stats["train_unknown_mentions"] == 1
    assert "@999999999" in first.turns[1].tokens                                # the token stays
    names = [bundle.entity_kg.node_names[e] for e in first.turns[0].entities]
    assert "Tom Hanks" in names
    assert all(i in bundle.item_index for t in first.turns for i in t.items)
    assert bundle.item_titles[first.turns[1].items[0]] == "Pulp Fiction (1994)"


def test_merged_record_with_empty_questionnaires(tmp_path, real_data_dir):
    """The third shape (IARD release): merged messages joined with '...', `{}` questionnaires."""
    record = _conv([{"senderWorkerId": 1, "text": "hi ... any horror like @84001 ?"},
                    {"senderWorkerId": 2, "text": "sure ... @91332 is great"}],
                   {"84001": "Donnie Darko (2001)", "91332": "Pulp Fiction (1994)"}, "iard-1")
    spec = _spec(tmp_path, real_data_dir, [json.dumps(record)])
    (conv,) = spec.build().splits["train"]
    assert [t.role for t in conv.turns] == ["seeker", "recommender"]
    assert all(len(t.items) == 1 for t in conv.turns) and conv.item_feedback == {}


@pytest.mark.parametrize("line, fragment", [
    ('{"conversationId": 1, "initiatorWorkerId": 1, "respondentWorkerId": 2, "messages": [', "malformed JSON"),
    ('{"conversationId": 1, "initiatorWorkerId": 1, "messages": []}', "'respondentWorkerId'"),
    ('{"conversationId": 1, "initiatorWorkerId": 1, "respondentWorkerId": 2, "messages": [{"text": "x"}]}',
     "'senderWorkerId'"),
    ('{"conversationId": 1, "initiatorWorkerId": 1, "respondentWorkerId": 2, "messages": [{"senderWorkerId": 7, "text": "x"}]}',
     "neither the seeker"),
])
def test_bad_records_name_file_line_and_key(tmp_path, real_data_dir, line, fragment):
    good = json.dumps(_conv([{"senderWorkerId": 1, "text": "hi"}]))
    spec = _spec(tmp_path, real_data_dir, [good, line])
    with pytest.raises(DataError) as err:
        spec._read_split("train")
    assert "train_data.jsonl:2" in str(err.value) and fragment in str(err.value)


def test_real_redial(redial):
    bundle, inst = redial.bundle, redial.instances
    # the shared train file holds 3,379 conversations since its second version (it had 2,557)
    assert [len(bundle.splits[s]) for s in ("train", "valid", "test")] == [3379, 901, 1342]
    assert bundle.num_items == 6924
    assert bundle.entity_kg.num_relations == 36
    assert 370_000 < bundle.entity_kg.num_edges < 380_000
    assert bundle.word_embeddings.shape == (len(bundle.vocab), 300)
    assert bundle.vocab.tokens[:4] == ["__pad__", "__start__", "__end__", "__unk__"]
    for split in ("train", "valid", "test"):
        assert all(r.target in bundle.item_index for r in inst[split].rec)
    test = inst["test"]
    assert test.counts() == {"samples": 7087, "rec_all": 4897, "rec_dedup": 4426, "rec_cold_start": 905}
    # all three record shapes loaded (2,473 original, 727 merged, 179 merged with empty
    # questionnaires); consecutive messages of a speaker are one turn, so roles alternate
    for conv in bundle.splits["train"]:
        assert all(a.role != b.role for a, b in zip(conv.turns, conv.turns[1:]))
    assert sum(len(t.entities) > 0 for c in bundle.splits["test"] for t in c.turns) > 1000


def test_release_instance_set_against_an_independent_count(real_data_dir, real_cache_dir):
    """data.release_instances: the candidate movies without a DBpedia URI are no targets and no
    context entities (the release's loader skips them), but stay candidates. Counted here again
    from the raw test file, written independently of crsbench's loader."""
    import re
    from crsbench.config.loader import resolve_config
    from crsbench.datasets.loader import load_dataset
    from crsbench.datasets.safe_pickle import load_pickle
    from crsbench.registry import get_dataset
    root = real_data_dir / "redial"
    id2entity, entity2id = load_pickle(root / "id2entity.pkl"), load_pickle(root / "entity2entityId.pkl")
    candidates = set(load_pickle(root / "movie_ids.pkl"))
    expected = cold = 0
    for line in (root / "test_data.jsonl").read_text(encoding="utf-8").splitlines():
        conv = json.loads(line)
        turns = []
        for message in conv["messages"]:
            if turns and turns[-1][0] == message["senderWorkerId"]:
                turns[-1][1] += " " + message["text"]
            else:
                turns.append([message["senderWorkerId"], message["text"]])
        context_has_item = False
        for t, (sender, text) in enumerate(turns):
            items = []
            for movie in re.findall(r"@\s*(\d+)", text):
                uri = id2entity.get(int(movie)) if movie in conv["movieMentions"] else None
                entity = entity2id.get(uri) if uri is not None else None
                if entity in candidates and entity not in items:
                    items.append(entity)
            if t > 0 and sender == conv["respondentWorkerId"]:
                expected += len(items)
                cold += 0 if context_has_item else len(items)
            context_has_item = context_has_item or bool(items)
    class NoModel:
        config_file = None
    config = resolve_config(NoModel, get_dataset("redial"), None,
                            [f"data.cache_dir={real_cache_dir}", "data.release_instances=true"])
    data = load_dataset("redial", config["data"], real_data_dir)
    test = data.instances["test"]
    assert (len(test.rec), len(test.views["cold_start"])) == (expected, cold)
    assert data.bundle.num_items == 6924                         # the movies without a URI stay candidates
    assert 3900 < expected < 4000 and expected < 4897            # crsbench's own set has 4,897
    assert data.bundle.stats["test_release_dropped_mentions"] > 900
