"""`crsbench explain` (Figure 4) on a real ReDial test conversation: the attention of Eq. 6 sums to 1
per side, the gate and the weights rebuild the model's own user vector, the top items are its own."""
import torch

from conftest import model_defaults
from crsbench.datasets.instances import RecInstance
from crsbench.explain import conversation_samples, explain_sample, format_turn, plot_turns
from crsbench.models.base import REC
from crsbench.registry import get_model


def _rich_sample(redial):
    """The first test sample whose context has several ConceptNet words and DBpedia entities."""
    return next(s for s in redial.instances["test"].samples
                if len(s.context_words) >= 3 and len(s.context_entities) >= 3 and s.targets)


def test_kgsf_attention_matches_its_forward_pass(redial, tmp_path):
    torch.manual_seed(0)
    model = get_model("kgsf")(model_defaults(get_model("kgsf")), redial.bundle).eval()
    sample = _rich_sample(redial)
    explanation = explain_sample(model, sample, top_k=5)
    words, entities = explanation.sides["words (ConceptNet)"], explanation.sides["entities (DBpedia)"]
    assert len(words) == len(set(sample.context_words[-model.config["max_context_words"]:]))
    assert len(entities) == len(sample.context_entities[-model.config["max_context_entities"]:])
    assert abs(sum(w for _, w in words) - 1) < 1e-5 and abs(sum(w for _, w in entities) - 1) < 1e-5
    assert 0 < explanation.gate < 1
    batch = model.collate([RecInstance(sample, -1, -1)], REC)
    with torch.no_grad():
        word_reps, entity_reps = model.knowledge()
        own = model.recommender.user_representation(word_reps, entity_reps, batch["words"], batch["words_mask"],
                                                    batch["entities"], batch["entities_mask"])
        rebuilt = model.recommender.attention(word_reps, entity_reps, batch["words"], batch["words_mask"],
                                              batch["entities"], batch["entities_mask"])["user"]
        scores = model.recommend(batch)[0]
    torch.testing.assert_close(rebuilt, own)
    best = torch.topk(scores, 5).indices.tolist()
    assert [t for t, _ in explanation.top] == [redial.bundle.item_titles[redial.bundle.items[j]] for j in best]
    text = format_turn(explanation)
    assert "gate beta (Eq. 7)" in text and "attention over the context's words (ConceptNet)" in text
    plot_turns([explanation], tmp_path / "figure4.png")
    assert (tmp_path / "figure4.png").read_bytes()[:4] == b"\x89PNG"


def test_kbrd_attention_and_conversation_lookup(redial):
    torch.manual_seed(0)
    model = get_model("kbrd")(model_defaults(get_model("kbrd")), redial.bundle).eval()
    sample = _rich_sample(redial)
    explanation = explain_sample(model, sample)
    assert list(explanation.sides) == ["entities (DBpedia)"] and explanation.gate is None
    assert abs(sum(w for _, w in explanation.sides["entities (DBpedia)"]) - 1) < 1e-5
    samples = redial.instances["test"].samples
    turns = conversation_samples(samples, sample.conv_id, None)
    assert sample in turns and conversation_samples(samples, sample.conv_id, sample.turn_index) == [sample]
