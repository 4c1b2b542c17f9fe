"""EventEncoder: tiny-config shapes, causality, padding, eager vs SDPA, save/load, hooks, surprise."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from models.encoder import EventEncoder, EventEncoderConfig
from models.tokenizer import HEAD_FIELDS

SIZES = {
    "event_type": 7, "category": 9, "status": 4, "currency": 3, "amount": 6, "gap": 10, "hour": 25,
    "weekday": 8, "new_device": 4, "new_ip": 4, "new_country": 4, "new_address": 4, "new_payment": 4,
    "new_session": 4, "new_item": 4,
}
B, T, K = 3, 10, 4


POOLINGS = pytest.mark.parametrize("pooling", ["last", "last_max"])


def tiny_model(seed: int = 0, pooling: str = "last") -> EventEncoder:
    torch.manual_seed(seed)
    cfg = EventEncoderConfig(
        field_vocab_sizes=SIZES, head_fields=list(HEAD_FIELDS), query_buckets=32, query_slots=K,
        d_model=16, n_layers=2, n_heads=2, mlp_ratio=2, max_events=16, dropout=0.0, risk_pooling=pooling,
    )
    return EventEncoder(cfg).eval()


def random_inputs(b: int = B, t: int = T, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    inputs = {name: torch.randint(1, size, (b, t), generator=g) for name, size in SIZES.items()}
    inputs["amount_value"] = torch.randn(b, t, generator=g)
    inputs["query"] = torch.randint(0, 33, (b, t, K), generator=g)
    return inputs


def take(inputs: dict[str, torch.Tensor], rows: slice, cols: slice) -> dict[str, torch.Tensor]:
    return {k: v[rows, cols] for k, v in inputs.items()}


def pad(inputs: dict[str, torch.Tensor], n: int, left: bool) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in inputs.items():
        zeros = torch.zeros((v.shape[0], n) + v.shape[2:], dtype=v.dtype)
        out[k] = torch.cat([zeros, v] if left else [v, zeros], dim=1)
    return out


def test_shapes():
    model, inputs = tiny_model(), random_inputs()
    out = model(inputs)
    assert out.last_hidden_state.shape == (B, T, 16)
    assert out.risk_logits.shape == (B, T)
    assert set(out.next_event_logits) == set(HEAD_FIELDS)
    for f in HEAD_FIELDS:
        assert out.next_event_logits[f].shape == (B, T, SIZES[f])
    assert out.attentions is None
    surprise = model.field_surprise(inputs, out)
    assert set(surprise) == set(HEAD_FIELDS) and all(s.shape == (B, T) for s in surprise.values())


@POOLINGS
def test_causal_later_events_never_change_earlier_outputs(pooling: str):
    model, inputs = tiny_model(pooling=pooling), random_inputs()
    changed = {k: v.clone() for k, v in inputs.items()}
    changed["event_type"][:, 6] = 1
    changed["amount_value"][:, 6:] += 5.0
    a, b = model(inputs), model(changed)
    assert torch.allclose(a.risk_logits[:, :6], b.risk_logits[:, :6], atol=1e-6)
    assert torch.allclose(a.last_hidden_state[:, :6], b.last_hidden_state[:, :6], atol=1e-6)
    assert not torch.allclose(a.risk_logits[:, 6:], b.risk_logits[:, 6:])
    sa, sb = model.field_surprise(inputs, a), model.field_surprise(changed, b)
    assert torch.allclose(sa["event_type"][:, :6], sb["event_type"][:, :6], atol=1e-6)


@POOLINGS
@pytest.mark.parametrize("left", [False, True])
def test_padding_does_not_change_outputs(left: bool, pooling: str):
    model, inputs = tiny_model(pooling=pooling), random_inputs()
    ref = model(inputs)
    padded = pad(inputs, 5, left)
    mask = (padded["event_type"] != 0).long()
    out = model(padded, attention_mask=mask if left else None)
    real = slice(5, None) if left else slice(0, T)
    assert torch.allclose(out.risk_logits[:, real], ref.risk_logits, atol=1e-5)
    s_ref = model.field_surprise(inputs, ref)["amount"]
    s_pad = model.field_surprise(padded, out)["amount"]
    assert torch.allclose(s_pad[:, real], s_ref, atol=1e-5)
    assert (s_pad[:, slice(0, 5) if left else slice(T, None)] == 0).all()


@POOLINGS
def test_batch_composition_does_not_change_outputs(pooling: str):
    model, inputs = tiny_model(pooling=pooling), random_inputs()
    together = model(inputs).risk_logits
    alone = model(take(inputs, slice(1, 2), slice(None))).risk_logits
    assert torch.allclose(together[1:2], alone, atol=1e-5)


def test_eager_attention_matches_sdpa_and_returns_causal_weights():
    model, inputs = tiny_model(), random_inputs()
    fast = model(inputs)
    eager = model(inputs, output_attentions=True)
    assert torch.allclose(fast.risk_logits, eager.risk_logits, atol=1e-5)
    assert len(eager.attentions) == 2
    att = eager.attentions[0]
    assert att.shape == (B, 2, T, T)
    assert torch.allclose(att.sum(-1), torch.ones(B, 2, T), atol=1e-5)
    assert (att.triu(1) == 0).all()


def test_surprise_is_cross_entropy_of_the_next_event_and_first_uses_prior():
    model, inputs = tiny_model(), random_inputs()
    counts = {f: torch.arange(SIZES[f]) + 1 for f in HEAD_FIELDS}
    model.set_priors(counts)
    out = model(inputs)
    s = model.field_surprise(inputs, out)["event_type"]
    logits = out.next_event_logits["event_type"]
    expected = F.cross_entropy(logits[0, 3], inputs["event_type"][0, 4])
    assert torch.allclose(s[0, 4], expected, atol=1e-5)
    c = counts["event_type"].double() + 1
    c[0] = 0
    first = -torch.log(c / c.sum())[inputs["event_type"][0, 0]]
    assert torch.allclose(s[0, 0].double(), first, atol=1e-5)
    assert (s >= 0).all()
    loss = model.next_event_loss(inputs, out)
    total = sum(model.field_surprise(inputs, out)[f][:, 1:].sum() for f in HEAD_FIELDS)
    assert torch.allclose(loss, total / (B * (T - 1)), atol=1e-4)


def test_field_embeddings_are_hookable_modules():
    model, inputs = tiny_model(), random_inputs()
    seen = {}

    def record(name):
        def hook(module, args, output):
            seen[name] = tuple(output.shape)  # returns None: the output is left as it is
        return hook

    handles = [model.embed.fields[n].register_forward_hook(record(n)) for n in ("event_type", "amount", "query")]
    try:
        model(inputs)
    finally:
        for h in handles:
            h.remove()
    assert seen == {"event_type": (B, T, 16), "amount": (B, T, 16), "query": (B, T, 16)}


@POOLINGS
def test_save_load_gives_identical_outputs(tmp_path, pooling: str):
    model, inputs = tiny_model(pooling=pooling), random_inputs()
    model.set_priors({f: torch.arange(SIZES[f]) for f in HEAD_FIELDS})
    model.save_pretrained(tmp_path)
    loaded = EventEncoder.from_pretrained(tmp_path).eval()
    a, b = model(inputs), loaded(inputs)
    # same weights; a loaded tensor may have other strides, so kernels may round differently (~1e-8)
    assert torch.allclose(a.risk_logits, b.risk_logits, atol=1e-6, rtol=0)
    for f in HEAD_FIELDS:
        assert torch.allclose(a.next_event_logits[f], b.next_event_logits[f], atol=1e-6, rtol=0)
    assert torch.equal(model.prior_logp_category, loaded.prior_logp_category)
    assert loaded.config.field_vocab_sizes == SIZES
    assert loaded.config.risk_pooling == pooling


def test_running_max_lets_an_early_event_reach_every_later_risk():
    """last_max: the risk at the last event depends on the first event through the running max
    even when attention alone is cut off (a model with the attention output zeroed)."""
    def without_attention(pooling: str) -> EventEncoder:
        model = tiny_model(pooling=pooling)
        with torch.no_grad():
            for block in model.blocks:
                block.attn.proj.weight.zero_()
                block.attn.proj.bias.zero_()
        return model

    inputs = random_inputs()
    changed = {k: v.clone() for k, v in inputs.items()}
    changed["amount_value"][:, 0] += 50.0  # a huge first amount
    pooled, plain = without_attention("last_max"), without_attention("last")
    assert not torch.allclose(pooled(inputs).risk_logits[:, -1], pooled(changed).risk_logits[:, -1])
    assert torch.allclose(plain(inputs).risk_logits[:, -1], plain(changed).risk_logits[:, -1])


def test_a_config_saved_before_pooling_existed_loads_as_last(tmp_path):
    import json

    model = tiny_model()
    model.save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg.pop("risk_pooling")
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    loaded = EventEncoder.from_pretrained(tmp_path)
    assert loaded.config.risk_pooling == "last" and loaded.risk_pool is None


def test_too_long_and_bad_config_raise():
    model = tiny_model()
    with pytest.raises(ValueError, match="max_events"):
        model(random_inputs(t=17))
    with pytest.raises(ValueError, match="n_heads"):
        EventEncoder(EventEncoderConfig(field_vocab_sizes=SIZES, head_fields=["event_type"], d_model=10, n_heads=4))
    with pytest.raises(ValueError, match="risk_pooling"):
        EventEncoder(EventEncoderConfig(field_vocab_sizes=SIZES, head_fields=["event_type"], d_model=16, n_heads=2,
                                        risk_pooling="mean"))
    with pytest.raises(ValueError, match="head_fields"):
        EventEncoder(EventEncoderConfig(field_vocab_sizes=SIZES, head_fields=["nope"], d_model=16, n_heads=2))
