"""`crsbench explain`: what a trained recommender attends to in one conversation (KGSF Figure 4).

For each chosen recommender turn of a conversation: the self-attention weights of Eq. 6 over the
context's words and entities (KGSF: ConceptNet words and DBpedia entities; KBRD: entities), the gate
beta of Eq. 7 (KGSF), and the top-k recommended items, as terminal bars and optionally a PNG/SVG.
The weights are the model's own (`CRSModel.attention`), computed by the same modules as its scores.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from crsbench.datasets.instances import RecInstance, Sample
from crsbench.errors import ConfigError
from crsbench.models.base import REC, CRSModel, move_to

BAR = 30                          # characters of a full bar


@dataclass
class TurnExplanation:
    sample: Sample
    sides: dict[str, list[tuple[str, float]]] = field(default_factory=dict)   # side -> (name, weight)
    gate: float | None = None                                                 # share of the first side
    top: list[tuple[str, float]] = field(default_factory=list)                # (title, score)
    targets: list[str] = field(default_factory=list)


def _names(model: CRSModel, side: str) -> list[str]:
    data = model.data
    if side.startswith("words"):
        return list(data.word_kg.node_names)
    return list(data.entity_kg.node_names)


def explain_sample(model: CRSModel, sample: Sample, top_k: int = 5) -> TurnExplanation:
    """The attention, gate and top-k items of the model for one sample (eval mode, no gradients)."""
    batch = move_to(model.collate([RecInstance(sample, -1, -1)], REC), model.device)
    data = model.data
    with torch.no_grad():
        found = model.attention(batch)
        scores = model.recommend(batch)[0]
    out = TurnExplanation(sample)
    for side, value in found.items():
        if side == "gate":
            out.gate = float(value[0])
            continue
        ids, weights = value
        names = _names(model, side)
        titles = data.item_titles if side.startswith("entities") else {}
        pairs = [(titles.get(int(i)) or names[int(i)] or str(int(i)), float(w))
                 for i, w in zip(ids[0].tolist(), weights[0].tolist()) if w > 0]      # 0: padding
        out.sides[side] = sorted(pairs, key=lambda p: -p[1])
    best = torch.topk(scores, min(top_k, scores.shape[0]))
    out.top = [(data.item_titles.get(data.items[j], str(data.items[j])), float(s))
               for s, j in zip(best.values.tolist(), best.indices.tolist())]
    out.targets = [data.item_titles.get(t, str(t)) for t in sample.targets]
    return out


def conversation_samples(samples: list[Sample], conversation: str, turn: int | None) -> list[Sample]:
    """The samples (recommender turns) of one conversation, or the one at `turn`."""
    mine = [s for s in samples if s.conv_id == str(conversation)]
    if not mine:
        some = ", ".join(sorted({s.conv_id for s in samples})[:5])
        raise ConfigError(f"--conversation {conversation}: no recommender turn of that conversation in the split",
                          hint=f"conversation ids look like: {some}")
    if turn is None:
        return mine
    chosen = [s for s in mine if s.turn_index == turn]
    if not chosen:
        raise ConfigError(f"--turn {turn}: not a recommender turn with context in conversation {conversation}",
                          hint=f"its recommender turns: {', '.join(str(s.turn_index) for s in mine)}")
    return chosen


def format_turn(explanation: TurnExplanation, max_rows: int = 10) -> str:
    """Terminal bars for one turn."""
    sample = explanation.sample
    lines = [f"conversation {sample.conv_id}, turn {sample.turn_index} (recommender): {sample.response.text[:120]}"]
    for side, pairs in explanation.sides.items():
        lines.append(f"  attention over the context's {side} (Eq. 6), {len(pairs)} in all:")
        width = max((len(name) for name, _ in pairs[:max_rows]), default=0)
        for name, weight in pairs[:max_rows]:
            lines.append(f"    {name:<{width}}  {'█' * round(weight * BAR):<{BAR}} {weight:.3f}")
        if not pairs:
            lines.append("    (none in this context)")
    if explanation.gate is not None:
        first = next(iter(explanation.sides), "first side")
        lines.append(f"  gate beta (Eq. 7): {explanation.gate:.3f} on the {first} side, "
                     f"{1 - explanation.gate:.3f} on the other")
    lines.append("  top items: " + "; ".join(f"{k}. {title}" for k, (title, _) in enumerate(explanation.top, 1)))
    if explanation.targets:
        lines.append("  the recommender named: " + "; ".join(explanation.targets))
    return "\n".join(lines)


def plot_turns(explanations: list[TurnExplanation], out: Path, max_rows: int = 10) -> None:
    """One row of horizontal bar charts per turn (one chart per side), written to PNG or SVG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    sides = list(dict.fromkeys(side for e in explanations for side in e.sides))
    fig, axes = plt.subplots(len(explanations), len(sides), squeeze=False,
                             figsize=(5 * len(sides), 0.3 * max_rows * len(explanations) + 1))
    for row, explanation in enumerate(explanations):
        for col, side in enumerate(sides):
            ax = axes[row][col]
            pairs = explanation.sides.get(side, [])[:max_rows][::-1]
            ax.barh([name[:30] for name, _ in pairs], [w for _, w in pairs], color="#4c72b0")
            title = f"turn {explanation.sample.turn_index}: {side}"
            if explanation.gate is not None:
                share = explanation.gate if col == 0 else 1 - explanation.gate
                title += f" (gate {share:.2f})"
            ax.set_title(title, fontsize=9)
            ax.set_xlim(0, 1)
            ax.tick_params(labelsize=7)
    from crsbench.results.plots import save_figure
    save_figure(plt, fig, out)
