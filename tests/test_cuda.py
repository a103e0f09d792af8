"""The CUDA path: every model scores the same on the GPU as on the CPU, and trains a mixed-precision
step there; the generic trainer runs KGSF's three stages on the GPU. Needs a CUDA device, so these
tests are skipped on the CPU-only CI machine and run on the GPU machine (BENCHMARKS.md, "GPU")."""
import pytest
import torch

from crsbench.config.loader import resolve_config
from crsbench.datasets.instances import build_instances
from crsbench.datasets.loader import load_dataset
from crsbench.evaluator import evaluate_generation, evaluate_perplexity, evaluate_recommendation
from crsbench.models.base import CONV, REC, move_to
from crsbench.models.kgsf import KGSF
from crsbench.registry import get_dataset, get_model
from crsbench.trainer import Trainer
from crsbench.trainer.seeding import seed_everything

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

MODELS = ["popularity", "textcnn", "redial", "kbrd", "kgsf", "transformer"]
CUDA = torch.device("cuda")


@pytest.fixture(scope="module")
def redial_data(real_data_dir):
    """The real ReDial data through the user's cache ($CRSBENCH_CACHE): the GPU machine is lent by
    the minute, so it reuses a carried cache instead of preprocessing again."""
    class NoModel:
        config_file = None
    config = resolve_config(NoModel, get_dataset("redial"))
    return load_dataset("redial", config["data"], real_data_dir)


@pytest.mark.parametrize("name", MODELS)
def test_gpu_scores_match_cpu_and_an_amp_step_trains(name, redial_data):
    torch.manual_seed(0)
    cls = get_model(name)
    config = resolve_config(cls, get_dataset("redial"))
    cpu = cls(config["model"], redial_data.bundle)
    train, test = redial_data.instances["train"], redial_data.instances["test"]
    cpu.fit(train)
    gpu = cls(config["model"], redial_data.bundle)
    gpu.fit(train)
    gpu.load_state_dict(cpu.state_dict())
    gpu.to(CUDA)
    assert gpu.device.type == "cuda"
    cpu.eval()
    gpu.eval()
    with torch.no_grad(), cpu.inference(), gpu.inference():
        if REC in cpu.tasks:
            batch = cpu.collate(test.rec[:16], REC)
            want, got = cpu.recommend(batch), gpu.recommend(move_to(batch, CUDA))
            assert got.device.type == "cuda"
            torch.testing.assert_close(got.cpu(), want, rtol=1e-3, atol=1e-3)
        if CONV in cpu.tasks:
            batch = cpu.collate(test.samples[:8], CONV)
            (want, n_want), (got, n_got) = cpu.response_nll(batch), gpu.response_nll(move_to(batch, CUDA))
            torch.testing.assert_close(got.cpu(), want, rtol=1e-3, atol=1e-2)
            assert torch.equal(n_got.cpu(), n_want)
            for beam in (1, 3):
                responses = gpu.generate(move_to(batch, CUDA), 6, beam)
                assert len(responses) == 8 and all(1 <= len(r) <= 6 for r in responses)
    gpu.train()
    for stage in gpu.stages():          # steps as the trainer takes them: fp16 autocast + scaler
        params = list(stage.parameters())
        optimizer = torch.optim.Adam(params, lr=1e-3)
        scaler = torch.amp.GradScaler("cuda")
        batch = move_to(gpu.collate(train.rec[:8] if stage.task == REC else train.samples[:8], stage.task), CUDA)
        before = [p.detach().clone() for p in params]
        # The scaler starts at 2^16 and skips the steps whose float16 gradients overflow, halving
        # its scale each time; within a few steps it must find a scale that trains.
        for _ in range(30):
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast("cuda", dtype=torch.float16):
                out = stage.loss(batch)
            loss = out["loss"] if isinstance(out, dict) else out
            assert torch.isfinite(loss), stage.name
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            if any(not torch.equal(b, p) for b, p in zip(before, params)):
                break
        assert any(not torch.equal(b, p) for b, p in zip(before, params)), f"stage {stage.name} did not move"
        assert scaler.get_scale() >= 2.0 ** 6, f"stage {stage.name}: float16 gradients overflow at every scale"


def test_trainer_runs_every_kgsf_stage_on_the_gpu_and_resumes(tiny_bundle, tmp_path):
    overrides = ["train.batch_size=2", "stages.pretrain.epochs=1", "stages.rec.epochs=2", "model.dim=8",
                 "stages.rec.early_stop_metric=recall@1+recall@50", "eval.batch_size=4", "model.conv.dim=8",
                 "stages.conv.epochs=2", "run.device=cuda"]
    class NoDataset:
        config_file = None
    config = resolve_config(KGSF, NoDataset, None, overrides)
    instances = build_instances(tiny_bundle)
    seed_everything(0)
    model = KGSF(config["model"], tiny_bundle).to(CUDA)
    summary = Trainer(model, instances, config, tmp_path).fit()
    assert [s["stage"] for s in summary["stages"]] == ["pretrain", "rec", "conv"]
    assert all(torch.isfinite(p).all() for p in model.parameters())
    # the trained weights score the same on the CPU: the GPU path computes what the CPU path does
    on_cpu = KGSF(config["model"], tiny_bundle)
    on_cpu.load_state_dict({k: v.cpu() for k, v in model.state_dict().items()})
    metrics, ranks = evaluate_recommendation(model, instances["test"], ["all"], [1, 10], 4)
    metrics_cpu, ranks_cpu = evaluate_recommendation(on_cpu, instances["test"], ["all"], [1, 10], 4)
    assert metrics == metrics_cpu and [r["rank"] for r in ranks] == [r["rank"] for r in ranks_cpu]
    generated, records = evaluate_generation(model, instances["test"], 4, 5, 1)
    generated_cpu, records_cpu = evaluate_generation(on_cpu, instances["test"], 4, 5, 1)
    assert len(records) == len(instances["test"].samples)
    assert [r["generated_tokens"] for r in records] == [r["generated_tokens"] for r in records_cpu]
    assert generated["gen/item_ratio"] == generated_cpu["gen/item_ratio"]
    assert generated["gen/ppl"] == pytest.approx(generated_cpu["gen/ppl"], rel=1e-4)
    assert generated["gen/ppl"] == pytest.approx(evaluate_perplexity(model, instances["test"], 4)["gen/ppl"], rel=1e-4)
    # A second trainer over the same run directory resumes after the end: nothing left to train.
    again = KGSF(config["model"], tiny_bundle).to(CUDA)
    resumed = Trainer(again, instances, config, tmp_path).fit(resume=True)
    assert [s["stage"] for s in resumed["stages"]] == ["pretrain", "rec", "conv"]
    for (name, p), q in zip(model.state_dict().items(), again.state_dict().values()):
        assert torch.equal(p, q), name
