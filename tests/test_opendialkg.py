"""OpenDialKG: dialogue reconstruction, labelled turns, bad input, and the real data."""
import json
import shutil

import pytest
import yaml

from crsbench.config.loader import DEFAULTS_FILE
from crsbench.datasets.instances import build_instances
from crsbench.datasets.opendialkg import OpenDialKGSpec
from crsbench.errors import DataError


def _write(tmp_path, real_data_dir, train_lines):
    root = tmp_path / "opendialkg"
    root.mkdir()
    (tmp_path / "redial").symlink_to(real_data_dir / "redial")
    (root / "entity2id.json").write_text(json.dumps({"Alien": 0, "Aliens": 1, "Sigourney Weaver": 2,
                                                     "James Cameron": 3}))
    (root / "relation2id.json").write_text(json.dumps({"actor": 0, "director": 1}))
    (root / "kg.json").write_text(json.dumps({"0": [[0, 2]], "1": [[0, 2], [1, 3]]}))
    (root / "item_ids.json").write_text(json.dumps([0, 1]))
    (root / "id2info.json").write_text(json.dumps({"0": {"name": "Alien", "year": "1979"},
                                                   "1": {"name": "Aliens", "year": "1986"}}))
    (root / "train_data.jsonl").write_text("\n".join(train_lines) + "\n")
    first = json.loads(train_lines[0]) if train_lines and train_lines[0].startswith("{\"dialog") else None
    for split in ("valid", "test"):
        (root / f"{split}_data.jsonl").write_text((json.dumps(first) + "\n") if first else "")
    settings = yaml.safe_load(DEFAULTS_FILE.read_text())["data"]
    settings["kg_min_relation_edges"] = 0          # the tiny KG has a handful of edges
    return OpenDialKGSpec(tmp_path, settings)


LINE1 = {"dialog_id": 7, "turn_id": 1, "context": ["I like Sigourney Weaver"], "entity": ["Sigourney Weaver"],
         "rec": ["Alien"], "resp": "Then watch Alien!"}
LINE2 = {"dialog_id": 7, "turn_id": 3, "context": ["I like Sigourney Weaver", "Then watch Alien!",
                                                   "Seen it, loved alien. More?"],
         "entity": ["Sigourney Weaver", "Alien"], "rec": ["Aliens", "Nope Movie"], "resp": "Aliens, by James Cameron"}


def test_dialogue_is_rebuilt_with_labelled_turns(tmp_path, real_data_dir):
    spec = _write(tmp_path, real_data_dir, [json.dumps(LINE2), json.dumps(LINE1)])
    bundle = spec.build()
    (conv,) = bundle.splits["train"]
    assert [t.role for t in conv.turns] == ["seeker", "recommender", "seeker", "recommender"]
    assert conv.sample_turns == [1, 3]
    assert conv.turns[1].items == [0] and conv.turns[3].items == [1]      # labels only
    assert conv.turns[2].items == [0]                                      # "alien" named in context
    assert conv.turns[0].entities == [2] and conv.turns[3].entities == []   # annotations only
    assert bundle.stats["train_unknown_rec_names"] == 1                    # "Nope Movie"
    inst = build_instances(bundle)["train"]
    assert [(r.sample.turn_index, r.target) for r in inst.rec] == [(1, 0), (3, 1)]
    assert inst.views["cold_start"] == [0]
    assert bundle.item_titles == {0: "Alien (1979)", 1: "Aliens (1986)"}
    assert bundle.entity_kg.num_relations == 3                             # self-loop, actor, director


def test_bad_lines_name_file_line_and_key(tmp_path, real_data_dir):
    spec = _write(tmp_path, real_data_dir, [json.dumps(LINE1), '{"dialog_id": 8, "turn_id": 1}'])
    with pytest.raises(DataError) as err:
        spec.build()
    assert "train_data.jsonl:2" in str(err.value) and "'context'" in str(err.value)


def test_missing_files_are_named(tmp_path, real_data_dir):
    spec = _write(tmp_path, real_data_dir, [json.dumps(LINE1)])
    (spec.root / "kg.json").unlink()
    with pytest.raises(DataError) as err:
        spec.ensure_files()
    assert "kg.json" in str(err.value)


def test_real_opendialkg(real_data_dir, real_cache_dir):
    from crsbench.datasets.loader import load_dataset
    settings = yaml.safe_load(DEFAULTS_FILE.read_text())["data"]
    settings["cache_dir"] = str(real_cache_dir)
    data = load_dataset("opendialkg", settings, real_data_dir)
    counts = {split: inst.counts() for split, inst in data.instances.items()}
    assert [counts[s]["samples"] for s in ("train", "valid", "test")] == [5547, 1188, 1188]
    assert counts["test"] == {"samples": 1188, "rec_all": 1261, "rec_dedup": 831, "rec_cold_start": 468}
    bundle = data.bundle
    assert bundle.num_items == 2965 and bundle.entity_kg.num_relations == 7
    assert all(r.target in bundle.item_index for inst in data.instances.values() for r in inst.rec)
