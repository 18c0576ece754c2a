"""fp32 PyTorch reference of the LLaDA and Dream forward passes (docs/models.md §1.3, §2.3).

Independent of the Hugging Face modeling code. Pure fp32: weights are whatever the checkpoint holds (bf16 or
f32), upcast to fp32; no activation is rounded to bf16. torch 1.13 has no scaled_dot_product_attention, so
attention is written out.

Both forwards return UNSHIFTED logits [B, L, V] (V = LLaDA embedding_size / Dream vocab_size). Dream's logit
shift belongs to the sampler (tools/samplers.py).

`capture`, if a dict is given, receives named activations of batch row 0 as 2-D fp32 tensors [L, width]:
  embed                 token embeddings                                  [L, D]
  layer{i}.attn_norm    RMSNorm_attn(x)                                   [L, D]
  layer{i}.q / .k       after RoPE, heads concatenated (head h = cols h*Dh..(h+1)*Dh) [L, H*Dh] / [L, KV*Dh]
  layer{i}.v            value projection (+bias for Dream)                [L, KV*Dh]
  layer{i}.attn_ctx     softmax(...)·v, heads concatenated, before the output projection [L, H*Dh]
  layer{i}.attn_out     output projection of attn_ctx (before the residual add) [L, D]
  layer{i}.ffn_norm     RMSNorm_ff(x) after the attention residual        [L, D]
  layer{i}.ffn_out      down(SiLU(gate)·up) (before the residual add)    [L, D]
  layer{i}.out          block output (residual stream)                    [L, D]
  final_norm            final RMSNorm output                              [L, D]
"""
import torch

F32 = torch.float32
NEG = torch.finfo(torch.float32).min


def _t(w):
    return torch.as_tensor(w, dtype=F32)


def rms_norm(x, weight, eps):
    # fp32: x * rsqrt(mean(x^2) + eps), then * weight (no bf16 rounding in this reference)
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def rope_tables(positions, head_dim, theta):
    """positions: [B, L] (int). Returns cos, sin [B, 1, L, Dh] in fp32.
    inv_freq = 1 / theta^(arange(0, Dh, 2)/Dh) in fp32; tables = cat(freqs, freqs) (half-split layout)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=F32) / head_dim))
    freqs = positions.to(F32)[:, :, None] * inv_freq[None, None, :]  # [B, L, Dh/2]
    emb = torch.cat([freqs, freqs], dim=-1)
    return emb.cos()[:, None], emb.sin()[:, None]


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], dim=-1)


def apply_rope(x, cos, sin):
    return x * cos + rotate_half(x) * sin


def attention(q, k, v, bias=None, allowed=None):
    """q [B,H,L,Dh], k/v [B,KV,L,Dh]. KV heads are repeated per group (KV head j serves query heads
    j*G .. j*G+G-1). bias: additive fp32 [B,1,1,L] or None. allowed: bool [B,1,L,L] (True = may attend)
    or None; a query row with no allowed key outputs zeros. Returns [B,H,L,Dh]."""
    H, KV, Dh = q.shape[1], k.shape[1], q.shape[-1]
    if KV != H:
        k = k.repeat_interleave(H // KV, dim=1)
        v = v.repeat_interleave(H // KV, dim=1)
    scores = torch.matmul(q, k.transpose(-1, -2)) / (Dh ** 0.5)
    if bias is not None:
        scores = scores + bias
    if allowed is not None:
        scores = scores.masked_fill(~allowed, float("-inf"))
        row_ok = allowed.any(-1, keepdim=True)  # [B,1,L,1]
        scores = torch.where(row_ok, scores, torch.zeros_like(scores))  # avoid NaN on empty rows
        probs = torch.softmax(scores, dim=-1)
        probs = torch.where(row_ok, probs, torch.zeros_like(probs))
    else:
        probs = torch.softmax(scores, dim=-1)
    return torch.matmul(probs, v)


def _heads(x, n):  # [B,L,n*Dh] -> [B,n,L,Dh]
    B, L, W = x.shape
    return x.view(B, L, n, W // n).transpose(1, 2)


def _merge(x):  # [B,n,L,Dh] -> [B,L,n*Dh]
    B, n, L, Dh = x.shape
    return x.transpose(1, 2).reshape(B, L, n * Dh)


def _cap(capture, name, t):
    if capture is not None:
        capture[name] = t[0].detach().clone()


# ----------------------------------------------------------------------------------------------- LLaDA
def llada_forward(w, cfg, input_ids, attention_mask=None, capture=None):
    """w: dict name -> array (real tensor names, §1.2). cfg: LLaDA config.json dict."""
    ids = torch.as_tensor(input_ids, dtype=torch.long)
    B, L = ids.shape
    D, H = cfg["d_model"], cfg["n_heads"]
    KV = cfg["n_kv_heads"] or H
    Dh = D // H
    eps = cfg["rms_norm_eps"]
    p = "model.transformer."
    W = lambda n: _t(w[p + n])  # noqa: E731

    x = W("wte.weight")[ids]  # 1. embedding, no scaling
    _cap(capture, "embed", x)

    # 2. key-padding bias; a mask with no 0 means no mask at all
    bias = None
    if attention_mask is not None:
        m = torch.as_tensor(attention_mask)
        if bool((m == 0).any()):
            bias = torch.zeros(B, 1, 1, L, dtype=F32).masked_fill(m.view(B, 1, 1, L) == 0, NEG)

    # positions are always 0..L-1 of the padded sequence
    pos = torch.arange(L).unsqueeze(0).expand(B, L)
    cos, sin = rope_tables(pos, Dh, cfg["rope_theta"])

    for i in range(cfg["n_layers"]):
        b = f"blocks.{i}."
        h = rms_norm(x, W(b + "attn_norm.weight"), eps)
        _cap(capture, f"layer{i}.attn_norm", h)
        q = _heads(h @ W(b + "q_proj.weight").T, H)
        k = _heads(h @ W(b + "k_proj.weight").T, KV)
        v = _heads(h @ W(b + "v_proj.weight").T, KV)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        _cap(capture, f"layer{i}.q", _merge(q))
        _cap(capture, f"layer{i}.k", _merge(k))
        _cap(capture, f"layer{i}.v", _merge(v))
        ctx = _merge(attention(q, k, v, bias=bias))
        _cap(capture, f"layer{i}.attn_ctx", ctx)
        a = ctx @ W(b + "attn_out.weight").T
        _cap(capture, f"layer{i}.attn_out", a)
        x = x + a
        h = rms_norm(x, W(b + "ff_norm.weight"), eps)
        _cap(capture, f"layer{i}.ffn_norm", h)
        gate = h @ W(b + "ff_proj.weight").T  # ff_proj is the GATE
        up = h @ W(b + "up_proj.weight").T
        f = (torch.nn.functional.silu(gate) * up) @ W(b + "ff_out.weight").T
        _cap(capture, f"layer{i}.ffn_out", f)
        x = x + f
        _cap(capture, f"layer{i}.out", x)

    x = rms_norm(x, W("ln_f.weight"), eps)
    _cap(capture, "final_norm", x)
    return x @ W("ff_out.weight").T  # LM head (weight_tying false), no shift


# ----------------------------------------------------------------------------------------------- Dream
def dream_prepare_mask(attention_mask, L=None):
    """Mirror of Dream `_sample`'s mask handling. attention_mask: [B, P] 0/1 or None; it is extended with
    ones to length L. Returns (tok_idx [B,L] or None, allowed bool [B,1,L,L] or None)."""
    if attention_mask is None:
        return None, None
    m = torch.as_tensor(attention_mask, dtype=torch.long)
    if not bool((m == 0).any()):
        return None, None  # "full"
    if L is not None and m.shape[1] < L:
        m = torch.cat([m, torch.ones(m.shape[0], L - m.shape[1], dtype=torch.long)], dim=1)
    tok_idx = m.cumsum(-1) - 1
    tok_idx = tok_idx.masked_fill(m == 0, 1)
    mb = m.bool()
    allowed = mb[:, None, None, :] & mb[:, None, :, None]  # key valid AND query valid
    return tok_idx, allowed


def dream_forward(w, cfg, input_ids, attention_mask=None, capture=None, position_ids=None, allowed=None):
    """w: dict name -> array (real tensor names, §2.2). cfg: Dream config.json dict.
    attention_mask: 2-D 0/1 [B,L] (converted as the sampler does) or None. position_ids / allowed: the
    ready-made tok_idx and boolean 4-D mask (override attention_mask)."""
    ids = torch.as_tensor(input_ids, dtype=torch.long)
    B, L = ids.shape
    D, H, KV = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    Dh = D // H
    eps = cfg["rms_norm_eps"]
    W = lambda n: _t(w[n])  # noqa: E731

    if position_ids is None and allowed is None:
        position_ids, allowed = dream_prepare_mask(attention_mask, L)
    if position_ids is None:
        position_ids = torch.arange(L).unsqueeze(0).expand(B, L)
    cos, sin = rope_tables(torch.as_tensor(position_ids), Dh, cfg["rope_theta"])

    x = W("model.embed_tokens.weight")[ids]
    _cap(capture, "embed", x)
    for i in range(cfg["num_hidden_layers"]):
        b = f"model.layers.{i}."
        h = rms_norm(x, W(b + "input_layernorm.weight"), eps)
        _cap(capture, f"layer{i}.attn_norm", h)
        q = _heads(h @ W(b + "self_attn.q_proj.weight").T + W(b + "self_attn.q_proj.bias"), H)
        k = _heads(h @ W(b + "self_attn.k_proj.weight").T + W(b + "self_attn.k_proj.bias"), KV)
        v = _heads(h @ W(b + "self_attn.v_proj.weight").T + W(b + "self_attn.v_proj.bias"), KV)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        _cap(capture, f"layer{i}.q", _merge(q))
        _cap(capture, f"layer{i}.k", _merge(k))
        _cap(capture, f"layer{i}.v", _merge(v))
        ctx = _merge(attention(q, k, v, allowed=allowed))
        _cap(capture, f"layer{i}.attn_ctx", ctx)
        a = ctx @ W(b + "self_attn.o_proj.weight").T
        _cap(capture, f"layer{i}.attn_out", a)
        x = x + a
        h = rms_norm(x, W(b + "post_attention_layernorm.weight"), eps)
        _cap(capture, f"layer{i}.ffn_norm", h)
        gate = h @ W(b + "mlp.gate_proj.weight").T
        up = h @ W(b + "mlp.up_proj.weight").T
        f = (torch.nn.functional.silu(gate) * up) @ W(b + "mlp.down_proj.weight").T
        _cap(capture, f"layer{i}.ffn_out", f)
        x = x + f
        _cap(capture, f"layer{i}.out", x)
    x = rms_norm(x, W("model.norm.weight"), eps)
    _cap(capture, "final_norm", x)
    return x @ W("lm_head.weight").T  # unshifted


def forward(kind, w, cfg, input_ids, attention_mask=None, capture=None):
    if kind == "llada":
        return llada_forward(w, cfg, input_ids, attention_mask, capture)
    return dream_forward(w, cfg, input_ids, attention_mask, capture)
