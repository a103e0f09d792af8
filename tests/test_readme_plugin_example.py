"""The README's plugin example, installed as a package would be and trained by the generic trainer."""
import re
import sys

from conftest import REPO
from crsbench import registry
from crsbench.config.loader import resolve_config
from crsbench.datasets.instances import build_instances
from crsbench.evaluator import evaluate_recommendation
from crsbench.trainer import Trainer


def test_readme_plugin_example_runs(tmp_path, monkeypatch, tiny_bundle):
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Adding a model", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    toml = re.search(r"```toml\n(.*?)```", section, re.S).group(1)
    entry = re.search(r'^(\w+) = "([\w.]+)"', toml, re.M)
    package = tmp_path / "my_crs"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "entity_bag.py").write_text(code)
    (package / "entity_bag.yaml").write_text("model:\n  dim: 8\nstages:\n  rec:\n    epochs: 2\n")
    dist = tmp_path / "my_crs-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-crs\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[crsbench.models]\n{entry.group(1)} = {entry.group(2)}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_loaded", set())
    try:
        cls = registry.get_model("entity_bag")

        class NoDataset:
            config_file = None
        config = resolve_config(cls, NoDataset, None, ["train.batch_size=2", f"run.output_dir={tmp_path}"])
        model = cls(config["model"], tiny_bundle)
        instances = build_instances(tiny_bundle)
        summary = Trainer(model, instances, config, tmp_path / "run").fit()
        assert summary["stages"][0]["epochs"] == 2
        metrics, _ = evaluate_recommendation(model, instances["test"], ["all"], [1, 5], 4)
        assert metrics["all/count"] == 3
    finally:
        registry._MODELS.pop("entity_bag", None)
        for name in [m for m in sys.modules if m.startswith("my_crs")]:
            sys.modules.pop(name)
