"""The behaviour encoder: a small causal Transformer over events, one token per event.

Read top to bottom (nanoGPT style):

    inputs (per-field ids, B x T)  ->  EventEmbedding: sum of field embeddings + learned position
    ->  n_layers x Block (pre-LayerNorm, causal self-attention, MLP)  ->  LayerNorm
    ->  next-event heads: one softmax per field of the NEXT event   (self-supervised, surprise)
    ->  risk head: one logit per event = risk as of that event      (fine-tuned on labels);
        with risk_pooling="last_max" it reads [state of event t ; running max over events <= t of
        a projection of the states], so one suspicious burst early in a long window is not diluted
        by the normal events after it (still causal: a later event never changes an earlier risk)

Causal attention gives, in one forward pass, the prediction of every next event (so the surprise
of every event) and the risk as of every event. Right padding needs no attention mask (a real
event never attends to a later pad); left padding works with `attention_mask` (positions are then
counted from the first real event). Attention runs through SDPA unless `output_attentions=True`,
which switches to the eager path that returns the weights (for attention rollout).

Signal groups (`signal_widths`, optional): per-event float vectors (velocity and entity signals,
models/tokenizer.py) projected by a linear map, like the amount's value, and summed in; their
training mean is kept as a buffer (`signal_mean_<group>`), the attribution baseline's average event.

For explanations, each field's embedding is a named submodule, `model.embed.fields[name]`, whose
output (B, T, D) can be hooked (models/attribution.py swaps them for IG's path).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig, PreTrainedModel
from transformers.utils import ModelOutput


RISK_POOLING: tuple[str, ...] = ("last", "last_max")


@strict
class EventEncoderConfig(PreTrainedConfig):
    """Model dimensions and the field layout learned by the tokenizer.

    field_vocab_sizes: id field -> number of ids (0 is PAD). head_fields: fields predicted for the
    next event. query_buckets / query_slots: hashed query n-gram table size and slots per event.
    """

    model_type = "sleuth_event_encoder"

    field_vocab_sizes: dict | None = None
    head_fields: list | None = None
    query_buckets: int = 1024
    query_slots: int = 8
    signal_widths: dict | None = None   # signal group -> input width (models/tokenizer.py)
    d_model: int = 128
    n_layers: int = 2
    n_heads: int = 4
    mlp_ratio: int = 2
    max_events: int = 256
    dropout: float = 0.1
    initializer_range: float = 0.02
    risk_pooling: str = "last"  # "last" (checkpoints saved before pooling existed) or "last_max"

    def check_layout(self) -> None:
        if not self.field_vocab_sizes:
            raise ValueError("EventEncoderConfig.field_vocab_sizes is empty: fit a tokenizer first")
        unknown = [f for f in (self.head_fields or []) if f not in self.field_vocab_sizes]
        if unknown:
            raise ValueError(f"head_fields {unknown} are not in field_vocab_sizes")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} is not a multiple of n_heads={self.n_heads}")
        if self.risk_pooling not in RISK_POOLING:
            raise ValueError(f"risk_pooling={self.risk_pooling!r}: expected one of {RISK_POOLING}")


@dataclass
class EventEncoderOutput(ModelOutput):
    """What `EventEncoder.forward` returns.

    last_hidden_state: (B, T, D) per-event states after the final LayerNorm.
    next_event_logits: field -> (B, T, V_field): at position t, the prediction of event t+1.
    risk_logits: (B, T) the risk head's logit as of each event.
    attentions: per layer (B, H, T, T), only with output_attentions=True.
    """

    last_hidden_state: torch.Tensor | None = None
    next_event_logits: dict[str, torch.Tensor] | None = None
    risk_logits: torch.Tensor | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


class AmountEmbedding(nn.Module):
    """Log-quantile bin embedding plus a learned direction scaled by the continuous value."""

    def __init__(self, n_bins: int, d: int) -> None:
        super().__init__()
        self.bins = nn.Embedding(n_bins, d, padding_idx=0)
        self.value = nn.Linear(1, d, bias=False)

    def forward(self, bins: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        return self.bins(bins) + self.value(value.unsqueeze(-1))  # (B, T, D)


class QueryEmbedding(nn.Module):
    """Sum of the embeddings of an event's hashed query n-grams (slot id 0 = empty)."""

    def __init__(self, n_buckets: int, d: int) -> None:
        super().__init__()
        self.grams = nn.EmbeddingBag(n_buckets + 1, d, mode="sum", padding_idx=0)

    def forward(self, slots: torch.Tensor) -> torch.Tensor:
        B, T, K = slots.shape
        return self.grams(slots.reshape(B * T, K)).view(B, T, -1)  # (B, T, D)


class EventEmbedding(nn.Module):
    """One vector per event: the sum of its field embeddings plus a learned position."""

    def __init__(self, config: EventEncoderConfig) -> None:
        super().__init__()
        d = config.d_model
        fields: dict[str, nn.Module] = {}
        for name, size in config.field_vocab_sizes.items():
            fields[name] = AmountEmbedding(size, d) if name == "amount" else nn.Embedding(size, d, padding_idx=0)
        fields["query"] = QueryEmbedding(config.query_buckets, d)
        for group, width in (config.signal_widths or {}).items():
            fields[group] = nn.Linear(int(width), d, bias=False)   # (B, T, W) -> (B, T, D)
        self.fields = nn.ModuleDict(fields)
        self.position = nn.Embedding(config.max_events, d)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, inputs: dict[str, torch.Tensor], position_ids: torch.Tensor) -> torch.Tensor:
        B, T = position_ids.shape
        x = torch.zeros(B, T, self.position.embedding_dim, device=position_ids.device)  # (B, T, D)
        x += self.position(position_ids)  # in place into our own buffer: field outputs stay intact
        for name, module in self.fields.items():
            if name == "amount":
                x += module(inputs["amount"], inputs["amount_value"])
            else:
                x += module(inputs[name])
        return self.drop(x)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: EventEncoderConfig) -> None:
        super().__init__()
        self.n_heads = config.n_heads
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model)
        self.proj = nn.Linear(config.d_model, config.d_model)
        self.resid_drop = nn.Dropout(config.dropout)

    def forward(
        self, x: torch.Tensor, allowed: torch.Tensor | None, output_attentions: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        B, T, D = x.shape
        q, k, v = self.qkv(x).split(D, dim=2)
        q = q.view(B, T, self.n_heads, -1).transpose(1, 2)  # (B, H, T, hd)
        k = k.view(B, T, self.n_heads, -1).transpose(1, 2)
        v = v.view(B, T, self.n_heads, -1).transpose(1, 2)
        # no dropout on the attention weights: it would push SDPA off its fast kernel on CPU
        weights = None
        if output_attentions:  # eager: the weights are returned
            if allowed is None:
                allowed = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
            att = (q @ k.transpose(-2, -1)) / math.sqrt(k.size(-1))  # (B, H, T, T)
            weights = att.masked_fill(~allowed, float("-inf")).softmax(dim=-1)
            y = weights @ v  # (B, H, T, hd)
        elif allowed is None:  # SDPA fast path, causal
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        y = y.transpose(1, 2).reshape(B, T, D)  # (B, T, D)
        return self.resid_drop(self.proj(y)), weights


class MLP(nn.Module):
    def __init__(self, config: EventEncoderConfig) -> None:
        super().__init__()
        hidden = config.mlp_ratio * config.d_model
        self.fc = nn.Linear(config.d_model, hidden)
        self.proj = nn.Linear(hidden, config.d_model)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    def __init__(self, config: EventEncoderConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.d_model)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.d_model)
        self.mlp = MLP(config)

    def forward(
        self, x: torch.Tensor, allowed: torch.Tensor | None, output_attentions: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        a, weights = self.attn(self.ln_1(x), allowed, output_attentions)
        x = x + a
        x = x + self.mlp(self.ln_2(x))
        return x, weights


class EventEncoder(PreTrainedModel):
    """Causal event Transformer with next-event heads and a risk head (see the module docstring).

    `prior_logp_<field>` buffers hold the log marginal frequency of each head field's ids (set by
    training); they give the first event of a window a surprise (it has no previous event).
    """

    config_class = EventEncoderConfig
    base_model_prefix = "encoder"
    main_input_name = "event_type"

    def __init__(self, config: EventEncoderConfig) -> None:
        super().__init__(config)
        config.check_layout()
        self.embed = EventEmbedding(config)
        self.blocks = nn.ModuleList([Block(config) for _ in range(config.n_layers)])
        self.ln_f = nn.LayerNorm(config.d_model)
        self.head_fields = list(config.head_fields or [])
        self.head_sizes = [config.field_vocab_sizes[f] for f in self.head_fields]
        self.next_head = nn.Linear(config.d_model, sum(self.head_sizes))  # all fields in one matmul
        self.risk_pool = nn.Linear(config.d_model, config.d_model) if config.risk_pooling == "last_max" else None
        self.risk_head = nn.Linear(config.d_model * (2 if self.risk_pool is not None else 1), 1)
        for f, size in zip(self.head_fields, self.head_sizes):
            self.register_buffer(f"prior_logp_{f}", torch.full((size,), -math.log(size)))
        for group, width in (config.signal_widths or {}).items():
            self.register_buffer(f"signal_mean_{group}", torch.zeros(int(width)))
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.Embedding, nn.EmbeddingBag)):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.padding_idx is not None:
                module.weight.data[module.padding_idx].zero_()
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def forward(
        self,
        inputs: dict[str, torch.Tensor],
        attention_mask: torch.Tensor | None = None,
        output_attentions: bool = False,
    ) -> EventEncoderOutput:
        """inputs: field -> (B, T) ids, "amount_value" (B, T) float, "query" (B, T, K) ids, and
        each signal group -> (B, T, W) float.

        attention_mask: optional (B, T), 1 for real events; only needed with left padding.
        """
        ids = inputs["event_type"]
        B, T = ids.shape
        if T > self.config.max_events:
            raise ValueError(f"sequence length {T} exceeds max_events={self.config.max_events}")
        allowed = None
        if attention_mask is None:
            position_ids = torch.arange(T, device=ids.device).expand(B, T)
        else:
            mask = attention_mask.bool()
            position_ids = (mask.long().cumsum(-1) - 1).clamp(min=0)  # (B, T)
            causal = torch.ones(T, T, dtype=torch.bool, device=ids.device).tril()
            eye = torch.eye(T, dtype=torch.bool, device=ids.device)  # a pad still sees itself
            allowed = ((causal & mask[:, None, :]) | eye)[:, None]  # (B, 1, T, T)

        x = self.embed(inputs, position_ids)  # (B, T, D)
        attentions = []
        for block in self.blocks:
            x, weights = block(x, allowed, output_attentions)
            attentions.append(weights)
        x = self.ln_f(x)  # (B, T, D)
        logits = self.next_head(x).split(self.head_sizes, dim=-1)  # each (B, T, V_f)
        return EventEncoderOutput(
            last_hidden_state=x,
            next_event_logits=dict(zip(self.head_fields, logits)),
            risk_logits=self.risk_head(self._risk_input(x, ids != 0)).squeeze(-1),  # (B, T)
            attentions=tuple(attentions) if output_attentions else None,
        )

    def _risk_input(self, x: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """What the risk head reads at each event: (B, T, D), or (B, T, 2D) with the running max."""
        if self.risk_pool is None:
            return x
        g = self.risk_pool(x).masked_fill(~real[..., None], float("-inf"))  # pads never win the max
        peak = g.cummax(dim=1).values  # (B, T, D): max over events <= t
        peak = torch.where(torch.isfinite(peak), peak, torch.zeros_like(peak))  # left pads: nothing yet
        return torch.cat([x, peak], dim=-1)  # (B, T, 2D)

    def field_surprise(
        self, inputs: dict[str, torch.Tensor], output: EventEncoderOutput
    ) -> dict[str, torch.Tensor]:
        """Per-field surprise (nats) of every event: -log p(field of event t | events < t).

        field -> (B, T). The first real event of a row is scored under the field's prior (it has
        no previous event); PAD positions give 0. Works with right and left padding.
        """
        real = inputs["event_type"] != 0  # (B, T); every field of a real event has an id >= 1
        first = real & ~F.pad(real[:, :-1], (1, 0), value=False)  # first real event of each row
        out = {}
        for f in self.head_fields:
            target = inputs[f]  # (B, T)
            logits = output.next_event_logits[f][:, :-1].float()  # (B, T-1, V)
            # -log softmax at the target, without materialising the whole log-softmax
            nll = logits.logsumexp(-1) - logits.gather(-1, target[:, 1:, None]).squeeze(-1)  # (B, T-1)
            nll = F.pad(nll, (1, 0))  # (B, T): event t scored from position t-1
            prior = -getattr(self, f"prior_logp_{f}")[target]  # (B, T)
            out[f] = torch.where(first, prior, nll).masked_fill(~real, 0.0)
        return out

    def next_event_loss(self, inputs: dict[str, torch.Tensor], output: EventEncoderOutput) -> torch.Tensor:
        """Mean over predicted events of the summed per-field cross-entropy (nats per event)."""
        total = 0.0
        n = (inputs["event_type"][:, 1:] != 0).sum().clamp(min=1)
        for f in self.head_fields:
            logits = output.next_event_logits[f][:, :-1]  # (B, T-1, V)
            target = inputs[f][:, 1:]  # (B, T-1)
            total = total + F.cross_entropy(
                logits.reshape(-1, logits.size(-1)).float(), target.reshape(-1), ignore_index=0, reduction="sum"
            )
        return total / n

    @torch.no_grad()
    def set_priors(self, counts: dict[str, torch.Tensor]) -> None:
        """Set each head field's prior from id counts (add-one smoothed; PAD gets no mass)."""
        for f in self.head_fields:
            c = counts[f].double() + 1.0
            c[0] = 0.0
            logp = torch.log(c / c.sum())
            logp[0] = 0.0
            getattr(self, f"prior_logp_{f}").copy_(logp.float())
