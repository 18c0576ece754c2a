#!/usr/bin/python3
"""Self-checks of the reference and the written fixtures:  /usr/bin/python3 tools/check_reference.py

- safetensors: bf16 round-to-nearest-even on hand-picked values; write/read round trip.
- reference.json logits are reproduced from the checkpoint files on disk (single and sharded).
- f32 vs bf16 fixture logits are close (same weights up to bf16 rounding).
- padding invariants: Dream's real positions are independent of left padding (tok_idx + query/key mask);
  LLaDA pad keys are invisible (changing the pad ids does not change any logit), and an all-ones mask equals
  no mask; with zero left pads the padded batch row equals an unpadded run.
- GQA: Dream's grouped attention equals MHA with explicitly duplicated k/v weights.
- tie-freedom and spread of all reference logits.
"""
import json
import os
import sys
import tempfile

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import reference as ref  # noqa: E402
from safetensors_io import (bf16_bits_to_f32, f32_to_bf16_bits, read_checkpoint, read_safetensors,  # noqa: E402
                            write_safetensors)

FIX = os.path.join(os.path.dirname(HERE), "test", "fixtures")
torch.set_num_threads(1)


def ok(cond, msg):
    if not cond:
        raise SystemExit("FAIL: " + msg)
    print("ok  ", msg)


def check_bf16():
    # 1.0 exact; 1+2^-8 is a tie -> even (1.0); 1+3*2^-8 tie -> up to even; NaN stays NaN; inf stays inf
    vals = np.array([1.0, 1 + 2 ** -8, 1 + 3 * 2 ** -8, 1 + 2 ** -8 + 2 ** -20, -2.5, np.inf, np.nan,
                     3.4028235e38], dtype=np.float32)
    r = bf16_bits_to_f32(f32_to_bf16_bits(vals))
    ok(r[0] == 1.0 and r[1] == 1.0 and r[2] == 1 + 4 * 2 ** -8 and r[3] == 1 + 2 ** -7 and r[4] == -2.5
       and np.isinf(r[5]) and np.isnan(r[6]) and np.isinf(r[7]), "bf16 round-to-nearest-even")
    with tempfile.TemporaryDirectory() as d:
        t = {"a": np.arange(6, dtype=np.float32).reshape(2, 3) / 7, "b": np.ones(3, np.float32)}
        for dt in ("F32", "F16", "BF16"):
            p = os.path.join(d, "x.safetensors")
            write_safetensors(p, t, dt)
            raw = open(p, "rb").read()
            n = int.from_bytes(raw[:8], "little")
            ok(n % 8 == 0 and json.loads(raw[8:8 + n])["__metadata__"] == {"format": "pt"}, f"{dt} header padded")
            back, dts, _ = read_safetensors(p)
            tol = {"F32": 0, "F16": 1e-3, "BF16": 1e-2}[dt]
            ok(all(np.allclose(back[k], t[k], atol=tol, rtol=0) for k in t), f"{dt} round trip")


def load_fixture(name):
    folder = os.path.join(FIX, name)
    w, _ = read_checkpoint(folder)
    cfg = json.load(open(os.path.join(folder, "config.json")))
    doc = json.load(open(os.path.join(folder, "reference.json")))
    return w, cfg, doc


def run(kind, w, cfg, ids, mask=None):
    with torch.no_grad():
        return ref.forward(kind, w, cfg, ids, mask)


def check_fixture_pair(kind, name):
    w, cfg, doc = load_fixture(name)
    w32, _, doc32 = load_fixture(name + "-f32-sharded")
    for c, c32 in zip(doc["cases"], doc32["cases"]):
        lg = run(kind, w, cfg, c["input_ids"], c["attention_mask"])
        ok(np.array_equal(lg.numpy(), np.array(c["logits"], np.float32)), f"{name}/{c['name']} reproduced")
        lg32 = run(kind, w32, cfg, c32["input_ids"], c32["attention_mask"])
        ok(np.array_equal(lg32.numpy(), np.array(c32["logits"], np.float32)),
           f"{name}-f32-sharded/{c['name']} reproduced")
        diff = float((lg - lg32).abs().max())
        ok(0 < diff < 2.0, f"{name}/{c['name']} bf16 vs f32 logits differ a little ({diff:.3g})")

    bp = doc["cases"][1]
    ids, mask = bp["input_ids"], bp["attention_mask"]
    lg = run(kind, w, cfg, ids, mask)
    # row 0 has no pads: equals running it alone (no mask)
    alone = run(kind, w, cfg, [ids[0]])
    ok(torch.allclose(lg[0], alone[0], atol=1e-5), f"{name}: unpadded row in padded batch == alone")
    other_pad = [[(7 if m == 0 else t) for t, m in zip(r, mr)] for r, mr in zip(ids, mask)]
    lg2 = run(kind, w, cfg, other_pad, mask)
    real = torch.tensor(mask).bool()
    if kind == "llada":
        ok(torch.allclose(lg[real], lg2[real], atol=1e-5), "llada: pad ids invisible to real positions (pad keys hidden)")
        ones = run(kind, w, cfg, [ids[0]], [[1] * len(ids[0])])
        ok(torch.equal(ones, alone), "llada: all-ones mask == no mask")
        # positions are 0..L-1 including pads; RoPE only sees relative offsets and pad keys are hidden, so the
        # real positions still match an unpadded run up to rounding (pad query rows do depend on positions)
        r2 = [t for t, m in zip(ids[2], mask[2]) if m]
        a2 = run(kind, w, cfg, [r2])[0]
        ok(torch.allclose(lg[2][real[2]], a2, atol=1e-4), "llada: real positions of a padded row ~= unpadded run")
        shifted = run(kind, w, cfg, [ids[2][5:] + ids[2][:5]], [mask[2][5:] + mask[2][:5]])[0]
        ok(not torch.allclose(lg[2][~real[2]], shifted[~real[2]], atol=1e-3),
           "llada: pad query rows depend on where the pads sit (attend to real keys)")
    else:
        ok(torch.allclose(lg[real], lg2[real], atol=1e-5), "dream: real positions independent of pad ids")
        for r in (1, 2):
            rr = [t for t, m in zip(ids[r], mask[r]) if m]
            ar = run(kind, w, cfg, [rr])[0]
            ok(torch.allclose(lg[r][real[r]], ar, atol=1e-4),
               f"dream: row {r} real positions == unpadded run (tok_idx from first real token)")
        cap = {}
        with torch.no_grad():
            tok_idx, allowed = ref.dream_prepare_mask(mask)
            ref.dream_forward(w, cfg, ids[2:3], position_ids=tok_idx[2:3], allowed=allowed[2:3], capture=cap)
        ok(float(cap["layer0.attn_ctx"][:5].abs().max()) == 0.0, "dream: fully masked pad rows give zero attention")
        # GQA equals MHA with k/v duplicated per group
        H, KV = cfg["num_attention_heads"], cfg["num_key_value_heads"]
        Dh = cfg["hidden_size"] // H
        w2 = dict(w)
        for i in range(cfg["num_hidden_layers"]):
            for p in ("k_proj", "v_proj"):
                for s in ("weight", "bias"):
                    k = f"model.layers.{i}.self_attn.{p}.{s}"
                    t = w[k].reshape(KV, Dh, *w[k].shape[1:])
                    w2[k] = np.repeat(t, H // KV, axis=0).reshape(H * Dh, *w[k].shape[1:])
        cfg2 = dict(cfg, num_key_value_heads=H)
        a = run(kind, w, cfg, ids, mask)
        b = run(kind, w2, cfg2, ids, mask)
        ok(torch.allclose(a, b, atol=1e-5), "dream: GQA == MHA with duplicated kv heads")


def main():
    check_bf16()
    check_fixture_pair("llada", "llada-tiny")
    check_fixture_pair("dream", "dream-tiny")
    for name in ("llada-tiny", "dream-tiny"):
        doc = json.load(open(os.path.join(FIX, name, "reference.json")))
        for c in doc["cases"]:
            x = np.sort(np.array(c["logits"], np.float64).reshape(-1, doc["logits_width"]), axis=1)[:, ::-1]
            print(f"     {name}/{c['name']}: logit std {x.std(1).mean():.2f}, min top1 gap {(x[:, 0] - x[:, 1]).min():.4f}")
    up = os.path.join(FIX, "upstream")  # copied upstream files (Dream's vocabulary alone is 5 MB), not generated
    total = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(FIX) if not dp.startswith(up) for f in fs)
    ok(total < 5 * 1024 * 1024, f"generated fixtures total {total / 1024:.0f} KiB < 5 MiB")
    print("all checks passed")


if __name__ == "__main__":
    main()
