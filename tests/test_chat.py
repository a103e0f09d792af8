"""Chat: movie titles typed by a person link to items, odd input never crashes, and a scripted
conversation piped into `crsbench chat` gets responses and recommendations with titles (real data)."""
import copy
import json
import os
import subprocess
import sys

import pytest
import torch

from conftest import model_defaults, small_redial
from crsbench.chat import MAX_LINE_CHARS, ChatSession, run_chat
from crsbench.datasets.title_linker import TitleLinker
from crsbench.models.kgsf import KGSF

pytestmark = pytest.mark.slow

TITLES = {0: "The Dark Knight (2008)", 1: "Up (2009)", 2: "Pulp Fiction (1994)", 3: "It (2017)"}


def test_title_linker_exact_article_year_fuzzy_and_capitals():
    linker = TitleLinker(TITLES, {"@77": 2})
    items = lambda text: [item for _, _, item in linker.link(text)]      # noqa: E731
    assert items("have you seen the dark knight?") == [0]
    assert items("Dark Knight 2008 was great") == [0]
    assert items("i loved pulp fictoin") == [2]                         # misspelt, 2+ words: fuzzy
    assert items("I liked Up a lot and It too") == [1, 3]               # one-word titles typed capitalised
    assert items("up for anything, it is late") == []                   # ... and not as plain words
    assert items("Up") == [1]                                           # the whole message
    assert items("what about @77 and @99") == [2]                       # mention tokens (unknown ignored)


def test_title_linker_finds_real_titles(redial):
    bundle = redial.bundle
    linker = TitleLinker(bundle.item_titles, bundle.mention_items)
    rng = __import__("random").Random(0)
    checked = 0
    for item in rng.sample(sorted(bundle.item_titles), 60):
        title = bundle.item_titles[item]
        bare = title.split(" (")[0]
        if len(bare.split()) < 2:
            continue
        found = [i for _, _, i in linker.link(f"i really liked {bare.lower()} last week")]
        # the item itself, or another item with exactly the same title text
        assert found and bundle.item_titles[found[0]].split(" (")[0].lower() == bare.lower(), title
        checked += 1
    assert checked >= 30


def _tiny_session(tiny_bundle):
    tiny_bundle.mention_items = {"@100": 0, "@101": 1}
    tiny_bundle.item_titles = {0: "The Dark Knight (2008)", 1: "Up (2009)", 2: "Movie 2", 3: "Movie 3",
                               4: "Movie 4", 5: "Movie 5"}
    config = model_defaults(KGSF)
    config["conv"]["dim"] = 8
    torch.manual_seed(0)
    return ChatSession(KGSF(config, tiny_bundle).eval(), top_k=3, max_length=6)


def test_bad_input_gets_a_message_never_a_crash(tiny_bundle):
    session = _tiny_session(tiny_bundle)
    assert "say something" in session.reply("")
    assert "say something" in session.reply("   \t ")
    long = session.reply("I liked the dark knight " + "x" * 10_000)
    assert f"first {MAX_LINE_CHARS} characters" in long and "system:" in long
    assert "understood: The Dark Knight (2008)" in long
    assert "system:" in session.reply("!!! ???")                         # punctuation is a token
    assert "system:" in session.reply("J'adore Amélie, 映画 🎬")
    assert "recommended: 1." in session.reply("Up")
    assert session.reply("/reset") == "(new conversation)" and session.turns == []
    # the linked movie enters the context as its mention token and as an item
    session.reply("what about the dark knight")
    assert session.turns[0].tokens[-1] == "@100" and session.turns[0].items == [0]


def test_run_chat_reads_piped_lines_until_quit(tiny_bundle):
    import io
    session = _tiny_session(tiny_bundle)
    out = io.StringIO()
    run_chat(session, io.StringIO("hello\n\nI liked Up\n/quit\nnever read\n"), out)
    text = out.getvalue()
    assert text.count("system:") == 2 and "never read" not in text
    assert "you: I liked Up" in text


@pytest.fixture(scope="module")
def trained_run(real_data_dir, tmp_path_factory):
    """A small KGSF run (real graphs, first ReDial conversations), every stage one epoch."""
    tmp = tmp_path_factory.mktemp("chat")
    data = small_redial(real_data_dir, tmp)
    env = {**os.environ, "CRSBENCH_CACHE": str(tmp / "cache")}
    sets = ["model.dim=16", "train.batch_size=8", "stages.pretrain.epochs=1", "stages.rec.epochs=1",
            "stages.conv.epochs=1", "stages.conv.batch_size=16", "model.conv.layers=1",
            "eval.max_length=8", f"run.output_dir={tmp / 'runs'}"]
    args = [sys.executable, "-m", "crsbench", "run", "--model", "kgsf", "--dataset", "redial",
            "--data-dir", str(data), "--seed", "3"] + [a for s in sets for a in ("--set", s)]
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run,) = list((tmp / "runs" / "redial" / "kgsf").iterdir())
    return run, data, env


def test_scripted_conversation_through_the_cli(trained_run):
    run, data, env = trained_run
    script = "hi! i like scary movies\nhave you seen the shining?\n\n" + "a" * 10_000 + "\nmerci beaucoup ☺\n"
    proc = subprocess.run([sys.executable, "-m", "crsbench", "chat", "--run", str(run), "--data-dir", str(data)],
                          input=script, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert out.count("system:") == 4 and out.count("recommended: 1.") == 4
    assert "understood: The Shining" in out
    assert "say something" in out and f"first {MAX_LINE_CHARS} characters" in out


def test_evaluate_dump_and_human_eval_export(trained_run, tmp_path):
    run, data, env = trained_run
    proc = subprocess.run([sys.executable, "-m", "crsbench", "evaluate", "--run", str(run), "--dump",
                           "--data-dir", str(data)], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(line) for line in (run / "predictions_test.jsonl").read_text().splitlines()]
    conv = [r for r in records if r["task"] == "conv"]
    assert conv and all({"context", "gold", "generated", "recommended_titles"} <= set(r) for r in conv)
    assert not any("@" in t for r in conv for t in r["recommended_titles"])
    sheet = tmp_path / "sheet.csv"
    proc = subprocess.run([sys.executable, "-m", "crsbench", "human-eval", "export", "--runs", str(run),
                           "--out", str(sheet), "-n", "5", "--seed", "1"], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sheet.exists() and sheet.with_name("sheet.key.json").exists()


def test_chat_skips_an_undecodable_line_under_a_strict_locale(trained_run):
    """Under the C locale with no UTF-8 coercion, stdin is ASCII: a line that is not valid UTF-8 gets
    a notice and the session answers the next lines (it used to stop answering)."""
    run, data, env = trained_run
    strict = {**env, "LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}
    strict.pop("PYTHONIOENCODING", None)
    script = b"hi! i like scary movies\n\xff\xfe caf\xe9\nhave you seen the shining?\nmerci \xe2\x98\xba\n"
    proc = subprocess.run([sys.executable, "-m", "crsbench", "chat", "--run", str(run), "--data-dir", str(data)],
                          input=script, env=strict, capture_output=True, timeout=600)
    out = proc.stdout.decode("ascii", "replace")
    assert proc.returncode == 0, proc.stderr.decode("ascii", "replace")[-3000:]
    assert "not valid UTF-8" in out and out.count("system:") == 3
    assert "understood: The Shining" in out


def test_top_k_below_one_is_refused(trained_run):
    run, data, env = trained_run
    proc = subprocess.run([sys.executable, "-m", "crsbench", "chat", "--run", str(run), "--top-k", "0"],
                          input="", env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--top-k 0" in proc.stderr and "Traceback" not in proc.stderr


def test_explain_a_real_test_conversation_through_the_cli(trained_run, tmp_path):
    run, data, env = trained_run
    first = json.loads((data / "redial" / "test_data.jsonl").read_text().splitlines()[0])
    out = tmp_path / "fig4.svg"
    proc = subprocess.run([sys.executable, "-m", "crsbench", "explain", "--run", str(run), "--data-dir", str(data),
                           "--conversation", str(first["conversationId"]), "--out", str(out)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "attention over the context's entities (DBpedia)" in proc.stdout and "gate beta" in proc.stdout
    assert out.read_text().lstrip().startswith("<?xml")
    bad = subprocess.run([sys.executable, "-m", "crsbench", "explain", "--run", str(run), "--data-dir", str(data),
                          "--conversation", "no-such-id"], env=env, capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and "no recommender turn of that conversation" in bad.stderr
