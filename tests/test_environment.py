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
