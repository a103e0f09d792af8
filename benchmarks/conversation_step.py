"""One conversation training step, today's implementation against the reference it replaced (issue 12 §4).

Both variants train the same model (fresh weights, dropout off so the numbers can be compared) on the
same length-bucketed batches of the ReDial train split: forward, Eq. 19 loss, backward, and the
trainer's own optimiser step (fused Adam) over the conversation stage's parameters.

- **reference**: the step as of commit 7c2881c, kept here (`reference_loss`) on the same weights: the
  decoder runs every linear map on every response position, padding included; keys and values are
  two products; each attention call guards its mask again; the gold positions' log-probabilities
  come from the whole Eq. 18 distribution, whose copy scores cover the entire vocabulary (non-KG
  tokens masked to -inf), joined by `logaddexp` and normalised by a `logsumexp` over [N, 2V].
- **crsbench**: `model.conv_loss` — the decoder's linear maps run on the packed positions up to
  each row's last gold token only (attention stays in the padded layout); Q/K/V and K/V are one
  product each; masks are guarded once per memory; the copy scores only the KG tokens' rows; and
  the gold tokens' NLL is one fused cross-entropy over [generative, copy] less softplus(c_y - g_y).

Prints the mean step time of each (best of two passes), their ratio, the largest loss and gradient
differences on the first batch, the step's floating-point operations (`torch.utils.flop_counter`),
and the achieved share of this machine's measured matrix-multiply throughput.

    python benchmarks/conversation_step.py [--model kgsf|kbrd|transformer] [--batches 8] [--batch 32]
                                           [--device cpu|cuda]

On CUDA the step is the trainer's: float16 autocast with a gradient scaler (`train.amp`), and the
clock waits for the GPU (`torch.cuda.synchronize`) before it is read.

`--bf16` (CPU) runs today's step under bfloat16 autocast (`train.cpu_bf16`), against the reference
or, with `--against float32`, against today's step in float32: other arithmetic, so the printed loss
and gradient differences are a measure of that, not a check of equality.
"""
from __future__ import annotations

import argparse
import time
from contextlib import nullcontext

import torch
import torch.nn.functional as F

from crsbench.models.base import CONV, move_to
from crsbench.models.conversation import mean_nll
from crsbench.models.layers import scores_precision


# --- the reference: crsbench's conversation step as of commit 7c2881c, on the same module weights ---

def _ref_attend(attn, query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                mask: torch.Tensor | None) -> torch.Tensor:
    """7c2881c's MultiHeadAttention.attend: project the queries, guard all-masked rows per call."""
    q = attn.split(attn.q(query))
    empty = None
    if mask is not None:
        empty = ~mask.any(dim=-1, keepdim=True)
        mask = mask | empty
    out = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)
    if empty is not None:
        out = out.masked_fill(empty, 0.0)
    return attn.out(attn.merge(out))


def _ref_kv(attn, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return attn.split(attn.k(memory)), attn.split(attn.v(memory))       # two products, not one


def _ref_encode(encoder, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    x = encoder.embed(ids) * mask.unsqueeze(-1)
    for layer in encoder.layers:
        attended = _ref_attend(layer.attention, x, *_ref_kv(layer.attention, x), mask[:, None, None, :])
        x = layer.norm1(x + layer.dropout(attended))
        x = layer.norm2(x + layer.dropout(layer.ffn(x))) * mask.unsqueeze(-1)
    return x


def _ref_decode(decoder, ids: torch.Tensor, memories: list) -> torch.Tensor:
    """Every position of every row through every linear map, padding included."""
    x = decoder.embed(ids)
    length = ids.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=ids.device).tril()[None, None]
    for layer in decoder.layers:
        k, v = _ref_kv(layer.self_attention, x)
        x = layer.self_norm(x + layer.dropout(_ref_attend(layer.self_attention, x, k, v, causal)))
        for cross, norm, (memory, mask) in zip(layer.cross, layer.cross_norms, memories):
            x = norm(x + layer.dropout(_ref_attend(cross, x, *_ref_kv(cross, memory), mask[:, None, None, :])))
        x = layer.ffn_norm(x + layer.dropout(layer.ffn(x)))
    return x


def _ref_kgsf_log_probs(gen, hidden: torch.Tensor, features: torch.Tensor | None) -> torch.Tensor:
    """7c2881c's Eq. 18: copy scores over the entire vocabulary, non-KG tokens masked to -inf."""
    generative = scores_precision(gen.transformer.vocab_logits(hidden))
    if not gen.copy:
        return torch.log_softmax(generative, dim=-1)
    features = features.unsqueeze(1).expand(-1, hidden.shape[1], -1)
    copy = scores_precision(gen.copy_output(gen.copy_hidden(torch.cat([features, hidden], dim=-1))))
    mask = torch.zeros(copy.shape[-1], dtype=torch.bool, device=copy.device)
    mask[gen.copy_ids] = True
    copy = copy.masked_fill(~mask, float("-inf"))
    joint = torch.logaddexp(generative, copy)
    normaliser = torch.logsumexp(torch.cat([generative, copy], dim=-1), dim=-1, keepdim=True)
    return joint - normaliser


def reference_loss(model, batch: dict) -> torch.Tensor:
    """Eq. 19 as crsbench computed it at 7c2881c (KGSF, KBRD or the Transformer; crsbench's
    defaults, not `faithful_original`): the decoder over every position, the output distribution at
    the gold positions, gathered."""
    name = type(model).__name__
    if name == "KGSF":
        gen, transformer = model.generator, model.generator.transformer
        word_reps, entity_reps = model.knowledge(frozen=True)
        memories = [(_ref_encode(transformer.encoder, batch["context"], batch["context_mask"]), batch["context_mask"])]
        if gen.kg_decoder:
            memories = [(gen.word_memory(word_reps[batch["words"]]), batch["words_mask"]),
                        (gen.entity_memory(entity_reps[batch["entities"]]), batch["entities_mask"]), *memories]
        features = None
        if gen.copy:
            with torch.no_grad():                # the recommender's pooling is frozen; the projection trains
                rec = model.recommender
                pooled = (rec.word_pooling(word_reps[batch["words"]], batch["words_mask"]),
                          rec.entity_pooling(entity_reps[batch["entities"]], batch["entities_mask"]))
            features = gen.copy_features(*pooled)
        hidden = _ref_decode(transformer.decoder, batch["response_in"], memories)
        head = lambda h, rows: _ref_kgsf_log_probs(gen, h, None if features is None else features[rows])  # noqa: E731
    else:
        transformer = model.generator
        memories = [(_ref_encode(transformer.encoder, batch["context"], batch["context_mask"]), batch["context_mask"])]
        hidden = _ref_decode(transformer.decoder, batch["response_in"], memories)
        bias = None
        if name == "KBRD":
            with torch.no_grad():
                _, user = model._user(batch, frozen=True)
            bias = model.vocab_bias(user)
        head = lambda h, rows: torch.log_softmax(  # noqa: E731
            scores_precision(transformer.vocab_logits(h) + (0 if bias is None else bias[rows].unsqueeze(1))), dim=-1)
    mask = batch["response_mask"]
    rows, cols = mask.nonzero(as_tuple=True)
    log_probs = head(hidden[rows, cols].unsqueeze(1), rows)[:, 0]
    nll = -log_probs.gather(-1, batch["response"][rows, cols].unsqueeze(-1)).squeeze(-1)
    per_sample = torch.zeros(mask.shape[0], dtype=nll.dtype, device=nll.device).index_add_(0, rows, nll)
    return mean_nll(per_sample, mask.sum(dim=1))


def matmul_throughput(device: torch.device, size: int = 2048, repeats: int = 10) -> float:
    """This machine's float32 matrix-multiply rate in FLOP/s (a square matmul, best of `repeats`)."""
    a = torch.randn(size, size, device=device)
    best = float("inf")
    for _ in range(repeats + 1):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        a @ a
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return 2 * size ** 3 / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="kgsf", choices=["kgsf", "kbrd", "transformer"])
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--passes", type=int, default=2, help="passes over the batches (the first warms up)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--bf16", action="store_true", help="today's step under CPU bfloat16 autocast")
    parser.add_argument("--against", default="reference", choices=["reference", "float32"],
                        help="what today's step is timed against: the 7c2881c step (default) or, with "
                             "--bf16, today's step in float32")
    args = parser.parse_args()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    from torch.utils.flop_counter import FlopCounterMode

    from crsbench.config.loader import resolve_config
    from crsbench.datasets.loader import load_dataset
    from crsbench.registry import get_dataset, get_model
    from crsbench.trainer.trainer import _optimizer, batch_order, instance_length
    cls = get_model(args.model)
    config = resolve_config(cls, get_dataset("redial"))
    data = load_dataset("redial", config["data"])
    train = data.instances["train"].samples

    def build():
        """The model (seed 0: both variants start from the same weights) and its conversation stage."""
        torch.manual_seed(0)
        model = cls(config["model"], data.bundle).to(device).eval()        # no dropout: comparable
        stage = next(s for s in model.stages() if s.task == CONV)
        params = list(dict.fromkeys(stage.parameters()))
        for p in model.parameters():
            p.requires_grad_(False)
        for p in params:
            p.requires_grad_(True)
        return model, stage, params

    reference, stage_ref, params_ref = build()
    model, stage, params = build()
    if args.bf16 and cuda:
        parser.error("--bf16 is for the CPU (train.cpu_bf16); CUDA uses float16 (train.amp)")
    if args.against == "float32" and not args.bf16:
        parser.error("--against float32 compares with --bf16")
    order = batch_order(len(train), args.batch, [instance_length(s) for s in train],
                        torch.Generator().manual_seed(0))[:args.batches]
    batches = [move_to(model.collate([train[i] for i in idx], CONV), device) for idx in order]
    padded = sum((~b["response_mask"]).sum().item() for b in batches) / sum(b["response_mask"].numel() for b in batches)
    def today(b):
        with torch.autocast("cpu", dtype=torch.bfloat16) if args.bf16 else nullcontext():
            return stage.loss(b)
    other = (lambda b: reference_loss(reference, b)) if args.against == "reference" else stage_ref.loss
    variants = {"reference": (other, params_ref), "crsbench": (today, params)}
    names = {"reference": "reference" if args.against == "reference" else "float32",
             "crsbench": "bfloat16" if args.bf16 else "crsbench"}

    # equal loss and gradients on the first batch (relative to the largest gradient entry)
    values, grads = {}, {}
    for name, (loss_fn, ps) in variants.items():
        loss = loss_fn(batches[0])
        values[name] = loss.item()
        grads[name] = [g if g is not None else torch.zeros_like(p)
                       for g, p in zip(torch.autograd.grad(loss, ps, allow_unused=True), ps)]
    loss_diff = abs(values["reference"] - values["crsbench"])
    grad_diff = (max((a - b).abs().max().item() for a, b in zip(grads["reference"], grads["crsbench"]))
                 / max(a.abs().max().item() for a in grads["reference"]))

    flops = {}
    for name, (loss_fn, ps) in variants.items():
        with FlopCounterMode(display=False) as counter:
            for batch in batches:
                loss_fn(batch).backward()
        flops[name] = counter.get_total_flops() / len(batches)
        for p in ps:
            p.grad = None

    # the two variants take turns batch by batch, so a slow spell of the machine hits both
    optimizers = {name: _optimizer("adam", ps, 1e-3, 0.0) for name, (_, ps) in variants.items()}
    scaler = {name: torch.amp.GradScaler("cuda", enabled=cuda) for name in variants}
    times: dict[str, list[float]] = {name: [] for name in variants}
    for step_pass in range(args.passes):
        for batch in batches:
            for name, (loss_fn, _) in variants.items():
                if cuda:
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                with torch.autocast("cuda", dtype=torch.float16) if cuda else nullcontext():
                    loss = loss_fn(batch)
                optimizers[name].zero_grad()
                scaler[name].scale(loss).backward()
                scaler[name].step(optimizers[name])
                scaler[name].update()
                loss.item()
                if cuda:
                    torch.cuda.synchronize()
                if step_pass:                    # the first pass warms up
                    times[name].append(time.perf_counter() - t0)
    step = {name: sum(t) / len(t) for name, t in times.items()}
    ratios = sorted(a / b for a, b in zip(times["reference"], times["crsbench"]))
    peak = matmul_throughput(device)
    print(f"{args.model}: {len(batches)} train batches of {args.batch} x {args.passes - 1} timed passes, {device}, "
          f"threads {torch.get_num_threads()}, padded response positions {padded:.1%}")
    print(f"first batch: loss {values['crsbench']:.6f}, |loss diff| {loss_diff:.2e}, "
          f"largest |grad diff| / largest |grad| {grad_diff:.2e}")
    print(f"matmul throughput (2048^2 float32, best of 10): {peak / 1e9:.1f} GFLOP/s")
    for name in variants:
        print(f"{names[name]:9s}: {step[name]:.3f} s/step, {flops[name] / 1e9:.1f} GFLOP/step (fwd+bwd), "
              f"{flops[name] / step[name] / 1e9:.1f} GFLOP/s = {flops[name] / step[name] / peak:.0%} of the matmul rate")
    print(f"ratio    : {names['crsbench']} {step['reference'] / step['crsbench']:.2f}x faster than "
          f"{names['reference']} (per-batch ratios: median "
          f"{ratios[len(ratios) // 2]:.2f}, range {ratios[0]:.2f}-{ratios[-1]:.2f})")


if __name__ == "__main__":
    main()
