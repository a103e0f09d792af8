"""run.json records the environment a run started in, and a resume in another one (threads here)."""
import torch
from loguru import logger

from crsbench.environment import changed, environment
from crsbench.run_dir import RunDir
from crsbench.runner import _record_environment


def test_environment_names_torch_device_and_threads():
    env = environment(torch.device("cpu"))
    assert env["torch"] == torch.__version__ and env["device"] == "cpu"
    assert env["threads"] == torch.get_num_threads() and env["device_name"]
    assert changed(env, {**env, "threads": env["threads"] + 1}) == {"threads": (env["threads"], env["threads"] + 1)}
    assert changed(env, dict(env)) == {}


def test_fresh_run_records_its_environment_and_a_resume_in_another_is_kept_and_warned(tmp_path):
    run = RunDir(tmp_path)
    run.write_meta({"run_id": "r", "model": "kgsf", "dataset": "redial", "status": "running"})
    before = torch.get_num_threads()
    messages = []
    sink = logger.add(lambda m: messages.append(str(m)), level="WARNING")
    try:
        torch.set_num_threads(1)
        meta = _record_environment(run, run.read_meta(), torch.device("cpu"), resuming=False)
        assert meta["environment"]["threads"] == 1
        meta = _record_environment(run, meta, torch.device("cpu"), resuming=True)    # the same: nothing added
        assert "resume_environments" not in meta and not messages
        torch.set_num_threads(2)
        meta = _record_environment(run, meta, torch.device("cpu"), resuming=True)
    finally:
        torch.set_num_threads(before)
        logger.remove(sink)
    assert run.read_meta()["environment"]["threads"] == 1                     # the start stays recorded
    assert [e["threads"] for e in run.read_meta()["resume_environments"]] == [2]
    assert len(messages) == 1 and "threads 1 -> 2" in messages[0]


def test_a_run_started_before_environments_were_recorded_gets_its_resume_environment(tmp_path):
    run = RunDir(tmp_path)
    run.write_meta({"run_id": "r", "model": "kgsf", "dataset": "redial", "status": "interrupted"})
    meta = _record_environment(run, run.read_meta(), torch.device("cpu"), resuming=True)
    assert "environment" not in meta          # the start is unknown: not guessed
    assert meta["resume_environments"][0]["threads"] == torch.get_num_threads()


def test_deterministic_kernels_make_two_threads_repeat_to_the_bit():
    """With 2 threads the backward of advanced indexing (as `word_reps[batch["words"]]`) accumulates
    in thread order; `run.deterministic` switches to ordered kernels, so it repeats exactly. One thread
    keeps the default kernels (already ordered), and CUDA is not touched."""
    from crsbench.trainer.seeding import deterministic_kernels
    before, was = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(0, 20_000, (300_000,), generator=g)
    upstream = torch.randn(300_000, 64, generator=g)
    weights = torch.zeros(20_000, 64, requires_grad=True)

    def grad() -> torch.Tensor:
        return torch.autograd.grad((weights[idx] * upstream).sum(), [weights])[0]
    try:
        torch.set_num_threads(2)
        assert deterministic_kernels(torch.device("cpu"), True)
        assert environment(torch.device("cpu"))["deterministic_kernels"] is True
        first = grad()
        assert all(torch.equal(first, grad()) for _ in range(3))
        torch.set_num_threads(1)
        assert not deterministic_kernels(torch.device("cpu"), True)      # one thread: the default kernels
        assert torch.equal(first, grad())                                 # ... give the same bits
        torch.set_num_threads(2)
        assert not deterministic_kernels(torch.device("cpu"), False)
        assert not deterministic_kernels(torch.device("cuda"), True)
    finally:
        torch.set_num_threads(before)
        torch.use_deterministic_algorithms(was)
