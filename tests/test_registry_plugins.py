"""Models arrive through decorators and the `crsbench.models` entry-point group, like a third party's."""
import sys
import textwrap

import pytest

from crsbench import registry
from crsbench.errors import ConfigError

PLUGIN = textwrap.dedent('''
    import torch
    from crsbench import register_model
    from crsbench.models.base import CRSModel

    @register_model("external_first_item")
    class FirstItem(CRSModel):
        """Always ranks the first candidate item on top (a third-party test plugin)."""
        def collate(self, instances, task):
            return {"size": len(instances)}
        def recommend(self, batch):
            scores = torch.zeros(batch["size"], self.data.num_items)
            scores[:, 0] = 1.0
            return scores
''')


@pytest.fixture
def installed_plugin(tmp_path, monkeypatch):
    """A package installed the way pip would: a module plus a dist-info with an entry point."""
    (tmp_path / "my_crs_plugin.py").write_text(PLUGIN)
    dist = tmp_path / "my_crs_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-crs-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[crsbench.models]\nexternal_first_item = my_crs_plugin\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_loaded", set())
    yield tmp_path
    registry._MODELS.pop("external_first_item", None)
    sys.modules.pop("my_crs_plugin", None)


def test_entry_point_plugin_is_discovered_and_runs(installed_plugin, tiny_bundle):
    from crsbench.datasets.instances import build_instances
    assert "external_first_item" in registry.list_models()
    model = registry.get_model("external_first_item")({}, tiny_bundle)
    test = build_instances(tiny_bundle)["test"]
    scores = model.recommend(model.collate(test.rec, "rec"))
    assert scores.shape == (len(test.rec), tiny_bundle.num_items)
    assert scores.argmax(dim=1).tolist() == [0] * len(test.rec)


def test_baselines_arrive_through_entry_points_not_imports():
    from importlib import metadata
    names = {ep.name: ep.value for ep in metadata.entry_points(group=registry.MODEL_ENTRY_POINT_GROUP)}
    assert names.get("popularity") == "baselines.popularity"
    assert names.get("context_repeat") == "baselines.context_repeat"
    assert {"popularity", "context_repeat"} <= set(registry.list_models())


def test_unknown_model_suggests_the_closest_name():
    with pytest.raises(ConfigError) as err:
        registry.get_model("popularty")
    assert "popularity" in str(err.value)


def test_registering_two_models_under_one_name_is_an_error():
    class A: pass
    class B: pass
    registry.register_model("dup_test_name")(A)
    try:
        with pytest.raises(ConfigError):
            registry.register_model("dup_test_name")(B)
    finally:
        registry._MODELS.pop("dup_test_name", None)


def test_a_broken_plugin_is_named_and_the_others_load(installed_plugin, monkeypatch):
    dist = installed_plugin / "broken_crs-0.2.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-crs\nVersion: 0.2\n")
    (dist / "entry_points.txt").write_text("[crsbench.models]\nbroken_model = broken_crs_module_missing\n")
    monkeypatch.setattr(registry, "_failed", {})
    names = registry.list_models()
    assert "external_first_item" in names and "kgsf" in names and "broken_model" not in names
    (why,) = registry.broken_plugins()
    assert "'broken_model' (broken_crs_module_missing, from broken-crs)" in why and "ModuleNotFoundError" in why
    with pytest.raises(ConfigError) as err:
        registry.get_model("broken_model")
    assert "from broken-crs" in err.value.message


def test_asking_for_a_dataset_imports_no_model_and_no_torch():
    """A fresh interpreter: get_dataset loads the dataset kind only (crsbench compare needs no torch)."""
    import subprocess
    code = ("import sys; from crsbench.registry import get_dataset; get_dataset('redial'); "
            "print(sorted(m for m in ('torch', 'crsbench.models', 'baselines') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
