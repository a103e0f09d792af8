"""`crsbench chat`: talk to a trained model in the terminal (or through piped stdin).

Each user line becomes a seeker turn: movie titles are linked to items (TitleLinker) and put in the
text as the mention tokens the model was trained on, ConceptNet words are linked by name. The model
then answers as the recommender does on a test sample: a generated response (movie mentions shown
as titles) and, for a model that recommends, its top-k movies. DBpedia entities other than the
movies are not linked in chat (the dataset's entity linker is not part of a saved run).
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

import torch

from crsbench.datasets.instances import RecInstance, Sample
from crsbench.datasets.text import detokenize, is_mention, tokenize
from crsbench.datasets.title_linker import TitleLinker
from crsbench.datasets.types import RECOMMENDER, SEEKER, DatasetBundle, Turn
from crsbench.errors import ConfigError
from crsbench.models.base import CONV, REC, CRSModel, move_to

MAX_LINE_CHARS = 1000        # longer input is cut (with a notice): a chat turn, not a document
COMMANDS = "/reset starts a new conversation, /quit (or end of input) leaves"


class ChatSession:
    """One conversation with a model; `reply(line)` returns the text to show."""

    def __init__(self, model: CRSModel, top_k: int = 5, max_length: int = 20, beam_size: int = 1) -> None:
        if CONV not in model.tasks:
            raise ConfigError(f"model {type(model).__name__} has no conversation side",
                              hint="chat with a run of a generating model (kgsf, kbrd, transformer, redial)")
        self.model, self.top_k, self.max_length, self.beam_size = model, top_k, max_length, beam_size
        data: DatasetBundle = model.data
        self.data = data
        self.titles = data.mention_titles()
        self.item_tokens: dict[int, str] = {}
        for token, item in sorted(data.mention_items.items()):
            self.item_tokens.setdefault(item, token)
        self.linker = TitleLinker(data.item_titles, data.mention_items)
        self.word_ids = {name: i for i, name in enumerate(data.word_kg.node_names)}
        self.reset()

    def reset(self) -> None:
        self.turns: list[Turn] = []

    def _turn(self, role: str, text: str, tokens: list[str], items: list[int]) -> Turn:
        words = list(dict.fromkeys(self.word_ids[t] for t in tokens if t in self.word_ids))
        return Turn(role, text, tokens, list(dict.fromkeys(items)), [], words)

    def _user_turn(self, line: str) -> tuple[Turn, list[int]]:
        """The seeker turn: linked titles replaced by their mention token where the vocabulary has one."""
        tokens = tokenize(line)
        spans = self.linker.link(line)
        out, items, last = [], [], 0
        for start, end, item in spans:
            out += tokens[last:start]
            token = self.item_tokens.get(item)
            out += [token] if token is not None else tokens[start:end]
            items.append(item)
            last = end
        out += tokens[last:]
        return self._turn(SEEKER, line, out, items), items

    def _sample(self) -> Sample:
        items, entities, words = [], [], []
        for turn in self.turns:
            items += [i for i in turn.items if i not in items]
            entities += [e for e in turn.items + turn.entities if e not in entities]
            words += [w for w in turn.words if w not in words]
        placeholder = Turn(RECOMMENDER, "", [], [], [], [])
        return Sample(0, "chat", len(self.turns), list(self.turns), placeholder, items, entities, words)

    @torch.no_grad()
    def respond(self) -> tuple[list[str], list[int]]:
        """The model's response tokens and its top-k items for the conversation so far."""
        sample = self._sample()
        model = self.model
        batch = move_to(model.collate([sample], CONV), model.device)
        tokens = model.generate(batch, self.max_length, self.beam_size)[0]
        tokens = [t for t in tokens if t not in (self.data.vocab.END, self.data.vocab.PAD)]
        top: list[int] = []
        if REC in model.tasks:
            rec = move_to(model.collate([RecInstance(sample, -1, -1)], REC), model.device)
            scores = model.recommend(rec)[0].float()
            top = [self.data.items[i] for i in torch.topk(scores, min(self.top_k, scores.numel())).indices.tolist()]
        return tokens, top

    def reply(self, line: str) -> str:
        """Handle one line of input; the text to print (never raises on odd input)."""
        line = line.strip()
        if not line:
            return "(say something about movies you like, or /quit)"
        if line.lower() == "/reset":
            self.reset()
            return "(new conversation)"
        notice = ""
        if len(line) > MAX_LINE_CHARS:
            line = line[:MAX_LINE_CHARS]
            notice = f"(your message was cut to its first {MAX_LINE_CHARS} characters)\n"
        turn, items = self._user_turn(line)
        if not turn.tokens:
            return notice + "(I could not read any words in that; try a sentence about movies)"
        self.turns.append(turn)
        tokens, top = self.respond()
        text = detokenize(tokens, self.titles) or "..."
        mentioned = [self.data.mention_items[t] for t in tokens if is_mention(t) and t in self.data.mention_items]
        self.turns.append(self._turn(RECOMMENDER, text, tokens, mentioned))
        out = notice
        if items:
            out += "(understood: " + "; ".join(self.data.item_titles.get(i, str(i)) for i in items) + ")\n"
        out += f"system: {text}"
        if top:
            out += "\n  recommended: " + "; ".join(
                f"{k}. {self.data.item_titles.get(item, str(item))}" for k, item in enumerate(top, 1))
        return out


INVALID_TEXT = "(that line was not valid UTF-8 text; it was skipped, please type it again)"


def _read_line(stdin: TextIO) -> str | None:
    """The next line, decoded as UTF-8 one line at a time from the raw bytes where there are any, so
    an undecodable line (whatever the locale) is skipped alone; None for an undecodable line."""
    raw = getattr(stdin, "buffer", None)
    if raw is None:
        return stdin.readline()
    data = raw.readline()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def run_chat(session: ChatSession, stdin: TextIO = sys.stdin, stdout: TextIO = sys.stdout) -> int:
    """Read lines until /quit or end of input; prompts only when stdin is a terminal."""
    interactive = stdin.isatty()
    print(f"chatting with {type(session.model).__name__} ({COMMANDS})", file=stdout)
    while True:
        if interactive:
            print("you: ", end="", file=stdout, flush=True)
        line = _read_line(stdin)
        if line is None:
            print(INVALID_TEXT, file=stdout, flush=True)
            continue
        if not line or line.strip().lower() == "/quit":
            break
        if not interactive:
            print(f"you: {line.rstrip()[:200]}", file=stdout)
        print(session.reply(line), file=stdout, flush=True)
    return 0


def load_session(run_dir: str | Path, data_dir: str | None = None, top_k: int = 5,
                 beam_size: int | None = None) -> ChatSession:
    """A ChatSession on a finished run's weights and config."""
    from crsbench.runner import load_trained
    model, config = load_trained(run_dir, data_dir)
    ev = config["eval"]
    return ChatSession(model, top_k, ev["max_length"], beam_size or ev["beam_size"])
