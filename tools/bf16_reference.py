#!/usr/bin/python3
"""How far PyTorch's own bf16 arithmetic is from the fp32 reference logits, on the bf16 fixtures.

Run from the repository root:   /usr/bin/python3 tools/bf16_reference.py   (make_fixtures.py also runs it)
Writes test/fixtures/{llada-tiny,dream-tiny}/bf16-reference.json: per case of that folder's reference.json, the
error of two PyTorch bf16 runs against its fp32 logits (max|Δ|/max|ref| over all B×L×V logits, pads included;
the metric of test/parity/forward.test.ts). No logits are stored. Deterministic (torch single-threaded).

Both runs are the reference model (tools/reference.py: same weights, inputs, padding semantics) executed the way
the official modeling code runs a bf16 checkpoint (model.to(bfloat16)), so only the arithmetic differs:
  eager  every op in bf16 (torch's bf16 linear: fp32 accumulate, one rounding), with the official upcasts:
         RMSNorm normalizes in fp32, casts to bf16, multiplies the bf16 weight in bf16 (LLaDA RMSLayerNorm,
         DreamRMSNorm); LLaDA RoPE in fp32 then type_as(bf16) (rope_full_precision); Dream cos/sin cast to bf16
         and RoPE in bf16; attention QK^T in bf16, /sqrt(Dh), + mask, softmax(dtype=fp32).to(bf16), P@V in bf16
         (Dream's eager path). Residual adds, SiLU, gate*up in bf16; bf16 logits -> fp32.
  sdpa   the same, but the attention core as a fused SDPA kernel computes it on GPU (flash / mem-efficient):
         QK^T, scale, mask and softmax in fp32, P rounded to bf16, P@V accumulated in fp32, output rounded to bf16.
The fp32 mode of the same code must reproduce reference.json (checked) before any bf16 number is written.
"""
import json
import math
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import reference as ref  # noqa: E402
from safetensors_io import read_checkpoint  # noqa: E402

FIX = os.path.join(os.path.dirname(HERE), "test", "fixtures")
FIXTURES = ("llada-tiny", "dream-tiny")
VARIANTS = ("eager", "sdpa")
BF, F32 = torch.bfloat16, torch.float32

torch.set_num_threads(1)


class Arith:
    """mode 'fp32' (= reference.py), 'eager' or 'sdpa' (bf16, see the module docstring)."""

    def __init__(self, mode):
        self.mode, self.bf = mode, mode != "fp32"
        self.dt = BF if self.bf else F32

    def W(self, w):  # bf16 checkpoint values are exact in bf16
        return torch.as_tensor(w, dtype=F32).to(self.dt)

    def lin(self, x, W, b=None):
        if self.bf:
            return torch.nn.functional.linear(x, W, b)
        y = x @ W.T
        return y if b is None else y + b

    def rms(self, x, w, eps):
        if not self.bf:
            return ref.rms_norm(x, w, eps)
        xf = x.to(F32)
        return w * (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(BF)

    def attn(self, q, k, v, bias=None, allowed=None):
        H, KV, Dh = q.shape[1], k.shape[1], q.shape[-1]
        if not self.bf:
            return ref.attention(q, k, v, bias=bias, allowed=allowed)
        k, v = k.repeat_interleave(H // KV, dim=1), v.repeat_interleave(H // KV, dim=1)
        if self.mode == "sdpa":
            q, k = q.float(), k.float()
        s = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(Dh)
        if bias is not None:
            s = s + bias.to(s.dtype)
        if allowed is not None:
            row_ok = allowed.any(-1, keepdim=True)
            s = torch.where(row_ok, s.masked_fill(~allowed, float("-inf")), torch.zeros_like(s))
        p = torch.softmax(s, dim=-1, dtype=F32)
        if allowed is not None:
            p = torch.where(row_ok, p, torch.zeros_like(p))
        p = p.to(BF)
        if self.mode == "sdpa":
            return torch.matmul(p.float(), v.float()).to(BF)
        return torch.matmul(p, v)


def llada(A, w, cfg, input_ids, attention_mask):
    ids = torch.as_tensor(input_ids, dtype=torch.long)
    B, L = ids.shape
    D, H = cfg["d_model"], cfg["n_heads"]
    KV, eps = cfg["n_kv_heads"] or H, cfg["rms_norm_eps"]
    W = lambda n: A.W(w["model.transformer." + n])  # noqa: E731
    bias = None
    if attention_mask is not None:
        m = torch.as_tensor(attention_mask).view(B, 1, 1, L)
        if bool((m == 0).any()):
            bias = torch.zeros(B, 1, 1, L, dtype=F32).masked_fill(m == 0, torch.finfo(A.dt).min)
    cos, sin = ref.rope_tables(torch.arange(L).unsqueeze(0).expand(B, L), D // H, cfg["rope_theta"])
    x = W("wte.weight")[ids]
    for i in range(cfg["n_layers"]):
        b = f"blocks.{i}."
        h = A.rms(x, W(b + "attn_norm.weight"), eps)
        q, k, v = (ref._heads(A.lin(h, W(b + p + "_proj.weight")), n) for p, n in (("q", H), ("k", KV), ("v", KV)))
        q = ref.apply_rope(q.float(), cos, sin).to(A.dt)  # rope_full_precision, then type_as
        k = ref.apply_rope(k.float(), cos, sin).to(A.dt)
        x = x + A.lin(ref._merge(A.attn(q, k, v, bias=bias)), W(b + "attn_out.weight"))
        h = A.rms(x, W(b + "ff_norm.weight"), eps)
        g, u = A.lin(h, W(b + "ff_proj.weight")), A.lin(h, W(b + "up_proj.weight"))
        x = x + A.lin(torch.nn.functional.silu(g) * u, W(b + "ff_out.weight"))
    return A.lin(A.rms(x, W("ln_f.weight"), eps), W("ff_out.weight")).float()


def dream(A, w, cfg, input_ids, attention_mask):
    ids = torch.as_tensor(input_ids, dtype=torch.long)
    B, L = ids.shape
    D, H, KV = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    eps = cfg["rms_norm_eps"]
    W = lambda n: A.W(w[n])  # noqa: E731
    pos, allowed = ref.dream_prepare_mask(attention_mask, L)
    if pos is None:
        pos = torch.arange(L).unsqueeze(0).expand(B, L)
    cos, sin = ref.rope_tables(torch.as_tensor(pos), D // H, cfg["rope_theta"])
    cos, sin = cos.to(A.dt), sin.to(A.dt)  # DreamRotaryEmbedding returns cos/sin in x.dtype
    x = W("model.embed_tokens.weight")[ids]
    for i in range(cfg["num_hidden_layers"]):
        b = f"model.layers.{i}."
        h = A.rms(x, W(b + "input_layernorm.weight"), eps)
        a = b + "self_attn."
        q, k, v = (ref._heads(A.lin(h, W(a + p + "_proj.weight"), W(a + p + "_proj.bias")), n)
                   for p, n in (("q", H), ("k", KV), ("v", KV)))
        q, k = ref.apply_rope(q, cos, sin), ref.apply_rope(k, cos, sin)
        x = x + A.lin(ref._merge(A.attn(q, k, v, allowed=allowed)), W(a + "o_proj.weight"))
        h = A.rms(x, W(b + "post_attention_layernorm.weight"), eps)
        g, u = A.lin(h, W(b + "mlp.gate_proj.weight")), A.lin(h, W(b + "mlp.up_proj.weight"))
        x = x + A.lin(torch.nn.functional.silu(g) * u, W(b + "mlp.down_proj.weight"))
    return A.lin(A.rms(x, W("model.norm.weight"), eps), W("lm_head.weight")).float()


def rel_max_error(got, want):  # test/helpers/fixtures.ts relMaxError
    return float((got.double() - want.double()).abs().max() / want.double().abs().max())


def f32(x):  # shortest decimal that round-trips the float32 (as the other fixtures)
    return float(str(np.float32(x)))


def measure(name):
    folder = os.path.join(FIX, name)
    w, dts = read_checkpoint(folder)
    assert set(dts.values()) == {"BF16"}, f"{name} is not a bf16 checkpoint"
    with open(os.path.join(folder, "config.json")) as f:
        cfg = json.load(f)
    with open(os.path.join(folder, "reference.json")) as f:
        fx = json.load(f)
    forward = llada if fx["model"] == "llada" else dream
    cases = []
    for c in fx["cases"]:
        want = torch.tensor(c["logits"], dtype=F32)
        run = lambda mode: forward(Arith(mode), w, cfg, c["input_ids"], c["attention_mask"])  # noqa: E731
        with torch.no_grad():
            e32 = rel_max_error(run("fp32"), want)
            if e32 > 1e-5:
                raise SystemExit(f"{name}/{c['name']}: fp32 mode is {e32:.2e} from reference.json")
            cases.append({"name": c["name"], "ref_max_abs": f32(want.abs().max()),
                          **{v: f32(rel_max_error(run(v), want)) for v in VARIANTS}})
    return {"magic": "dyllm-fixture", "version": 1, "kind": "bf16-reference", "generator": "tools/bf16_reference.py",
            "torch": torch.__version__, "model": fx["model"], "checkpoint": name,
            "how": "reference.json cases re-run by tools/bf16_reference.py as PyTorch runs a bf16 checkpoint "
                   "(eager: all ops bf16 with the official fp32 upcasts; sdpa: attention core as a fused GPU kernel); "
                   "each number is max|logits - reference.json logits| / max|reference.json logits| over the case "
                   "(ref_max_abs = that denominator)",
            "cases": cases}


def main():
    for name in FIXTURES:
        doc = measure(name)
        with open(os.path.join(FIX, name, "bf16-reference.json"), "w") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")
        worst = max(c[v] for c in doc["cases"] for v in VARIANTS)
        print(name, " ".join(f"{c['name']}: eager {c['eager']:.3g} sdpa {c['sdpa']:.3g}" for c in doc["cases"]),
              f"| worst {worst:.3g}")


if __name__ == "__main__":
    main()
