#!/usr/bin/python3
"""Generate the tiny LLaDA / Dream test checkpoints and their fp32 reference outputs.

Run from the repository root:   /usr/bin/python3 tools/make_fixtures.py
Deterministic: numpy PCG64 seeded with SEED, torch single-threaded; re-running reproduces byte-identical
files. See tools/README.md for the layout and the JSON schemas.
"""
import json
import os
import shutil
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import bf16_reference  # noqa: E402
import reference as ref  # noqa: E402
import samplers  # noqa: E402
import tiny_tokenizer as tt  # noqa: E402
from safetensors_io import read_checkpoint, round_to_bf16, write_safetensors, write_sharded  # noqa: E402

SEED = 20240611
ROOT = os.path.dirname(HERE)
OUT = os.path.join(ROOT, "test", "fixtures")
UPSTREAM = os.path.join(OUT, "upstream")  # the released models' config/tokenizer files (see its README.md)
LLADA_UP = os.path.join(UPSTREAM, "llada-8b-instruct")
DREAM_UP = os.path.join(UPSTREAM, "dream-v0-instruct-7b")

N_MERGES = 40
# tie-freedom thresholds (absolute, on fp32 logits): the engine's fp32 logits differ from these by ~1e-5
MIN_TOP1_GAP = 1e-3
MIN_TOPK_GAP = 1e-4
TOPK_CHECK = 5

torch.set_num_threads(1)


def load_json(path):
    with open(path) as f:
        return json.load(f)


# ------------------------------------------------------------------------------------------ JSON writing
def f32s(v):
    v = np.float32(v)
    if not np.isfinite(v):
        raise ValueError(f"non-finite float {v} in fixture")
    return str(v)  # numpy >= 1.14: shortest repr that round-trips the float32


def jdump(obj, indent=0, inline_depth=None):
    """JSON text: dicts one key per line, numeric arrays compact; float32 arrays with shortest float32 repr.
    np.float32 arrays -> floats; None inside float arrays (from NaN-free -inf markers) -> null."""
    pad = "  " * indent
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        items = [f'{pad}  {json.dumps(k)}: {jdump(v, indent + 1)}' for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, torch.Tensor):
        obj = obj.detach().numpy()
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind == "f":
            return _farr(obj.astype(np.float32))
        return json.dumps(obj.tolist(), separators=(",", ":"))
    if isinstance(obj, (list, tuple)):
        if obj and all(isinstance(o, dict) for o in obj):
            return "[\n" + ",\n".join(pad + "  " + jdump(o, indent + 1) for o in obj) + "\n" + pad + "]"
        return "[" + ",".join(jdump(o, indent) for o in obj) + "]"
    if isinstance(obj, (np.floating, float)) and not isinstance(obj, bool):
        return f32s(obj) if isinstance(obj, np.float32) else json.dumps(float(obj))
    if isinstance(obj, np.integer):
        return str(int(obj))
    return json.dumps(obj)


def _farr(a):
    if a.ndim == 0:
        return "null" if np.isneginf(a) else f32s(a)
    if a.ndim == 1:
        return "[" + ",".join("null" if np.isneginf(x) else f32s(x) for x in a) + "]"
    return "[" + ",".join(_farr(x) for x in a) + "]"


def write_json(path, obj):
    with open(path, "w") as f:
        f.write(jdump(obj) + "\n")


# ------------------------------------------------------------------------------------------ tokenizers
LLADA_SPECIALS = [  # upstream order (126080..126348), compacted; reserved ones thinned out
    "<|startoftext|>", "<|endoftext|>", "[CLS]", "[gMASK]", "<|reserved_token_0|>", "<|reserved_token_1|>",
    "<|mdm_mask|>", "<|reserved_token_253|>", "<role>", "</role>", "<|arithmetic_start|>", "<|arithmetic_end|>",
    "<|number_start|>", "<|number_end|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
]


def build_tokenizer(kind):
    vocab, merges = tt.learn_bpe(tt.TRAIN_TEXT, N_MERGES)
    base = len(vocab)
    if kind == "llada":
        up = load_json(os.path.join(LLADA_UP, "tokenizer_config.json"))["added_tokens_decoder"]
        by_name = {v["content"]: (int(k), v) for k, v in up.items()}
        names = LLADA_SPECIALS
    else:
        up = load_json(os.path.join(DREAM_UP, "tokenizer_config.json"))["added_tokens_decoder"]
        by_name = {v["content"]: (int(k), v) for k, v in up.items()}
        names = [v["content"] for k, v in sorted(up.items(), key=lambda kv: int(kv[0]))]  # all 24
    added, id_map = [], {}
    for j, name in enumerate(names):
        old_id, entry = by_name[name]
        added.append((base + j, name, bool(entry["special"])))
        id_map[old_id] = base + j
    return vocab, merges, added, id_map, by_name


# ------------------------------------------------------------------------------------------ weights
def llada_weights(rng, cfg, n_used, boost):
    D, L, F, V = cfg["d_model"], cfg["n_layers"], cfg["mlp_hidden_size"], cfg["embedding_size"]
    KVD = cfg["n_kv_heads"] * (D // cfg["n_heads"])
    n = lambda *s, std=1.0: (rng.standard_normal(s) * std).astype(np.float32)  # noqa: E731
    w = {"model.transformer.wte.weight": n(V, D, std=0.3)}
    for i in range(L):
        b = f"model.transformer.blocks.{i}."
        w[b + "attn_norm.weight"] = (1.0 + n(D, std=0.2)).astype(np.float32)
        w[b + "q_proj.weight"] = n(D, D, std=3.75 / D ** 0.5)
        w[b + "k_proj.weight"] = n(KVD, D, std=3.75 / D ** 0.5)
        w[b + "v_proj.weight"] = n(KVD, D, std=2.0 / D ** 0.5)
        w[b + "attn_out.weight"] = n(D, D, std=2.0 / D ** 0.5)
        w[b + "ff_norm.weight"] = (1.0 + n(D, std=0.2)).astype(np.float32)
        w[b + "ff_proj.weight"] = n(F, D, std=1.5 / D ** 0.5)
        w[b + "up_proj.weight"] = n(F, D, std=1.0 / D ** 0.5)
        w[b + "ff_out.weight"] = n(D, F, std=1.0 / F ** 0.5)
    w["model.transformer.ln_f.weight"] = (1.0 + n(D, std=0.2)).astype(np.float32)
    head = n(V, D, std=3.0 / D ** 0.5)
    head[n_used:] *= np.float32(0.3)  # rows past the tokenizer's ids: lower logits (rarely the argmax)
    head[boost] *= np.float32(1.6)  # EOS / EOT rows: larger logits, so generations contain them
    w["model.transformer.ff_out.weight"] = head.astype(np.float32)
    return w


def dream_weights(rng, cfg, n_used, boost):
    D, L, F, V = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["intermediate_size"], cfg["vocab_size"]
    Dh = D // cfg["num_attention_heads"]
    KVD = cfg["num_key_value_heads"] * Dh
    n = lambda *s, std=1.0: (rng.standard_normal(s) * std).astype(np.float32)  # noqa: E731
    w = {"model.embed_tokens.weight": n(V, D, std=0.3)}
    for i in range(L):
        b = f"model.layers.{i}."
        w[b + "input_layernorm.weight"] = (1.0 + n(D, std=0.2)).astype(np.float32)
        w[b + "self_attn.q_proj.weight"] = n(D, D, std=3.75 / D ** 0.5)
        w[b + "self_attn.q_proj.bias"] = n(D, std=0.5)
        w[b + "self_attn.k_proj.weight"] = n(KVD, D, std=3.75 / D ** 0.5)
        w[b + "self_attn.k_proj.bias"] = n(KVD, std=0.5)
        w[b + "self_attn.v_proj.weight"] = n(KVD, D, std=2.0 / D ** 0.5)
        w[b + "self_attn.v_proj.bias"] = n(KVD, std=0.5)
        w[b + "self_attn.o_proj.weight"] = n(D, D, std=2.0 / D ** 0.5)
        w[b + "post_attention_layernorm.weight"] = (1.0 + n(D, std=0.2)).astype(np.float32)
        w[b + "mlp.gate_proj.weight"] = n(F, D, std=1.5 / D ** 0.5)
        w[b + "mlp.up_proj.weight"] = n(F, D, std=1.0 / D ** 0.5)
        w[b + "mlp.down_proj.weight"] = n(D, F, std=1.0 / F ** 0.5)
    w["model.norm.weight"] = (1.0 + n(D, std=0.2)).astype(np.float32)
    head = n(V, D, std=3.0 / D ** 0.5)
    head[n_used:] *= np.float32(0.3)
    head[boost] *= np.float32(1.6)
    w["lm_head.weight"] = head.astype(np.float32)
    return w


# ------------------------------------------------------------------------------------------ configs
def llada_config(tok_ids):
    cfg = load_json(os.path.join(LLADA_UP, "config.json"))
    cfg.update({"d_model": 64, "n_layers": 2, "n_heads": 4, "n_kv_heads": 4, "mlp_hidden_size": 96,
                "vocab_size": 330, "embedding_size": 384,
                "mask_token_id": tok_ids["<|mdm_mask|>"], "eos_token_id": tok_ids["<|endoftext|>"],
                "pad_token_id": tok_ids["<|endoftext|>"]})
    gen = load_json(os.path.join(LLADA_UP, "generation_config.json"))
    gen.update({"bos_token_id": tok_ids["<|startoftext|>"], "eos_token_id": tok_ids["<|endoftext|>"]})
    return cfg, gen


def dream_config(tok_ids, dtype):
    cfg = load_json(os.path.join(DREAM_UP, "config.json"))
    eot = tok_ids["<|endoftext|>"]
    cfg.update({"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                "intermediate_size": 96, "max_window_layers": 2, "vocab_size": 352,
                "bos_token_id": eot, "eos_token_id": eot, "pad_token_id": eot,
                "mask_token_id": tok_ids["<|mask|>"], "torch_dtype": dtype})
    gen = load_json(os.path.join(DREAM_UP, "generation_config.json"))
    gen.update({"bos_token_id": eot, "eos_token_id": eot, "pad_token_id": eot})
    return cfg, gen


def renumbered_tokenizer_config(path, id_map, extra=None):
    tc = load_json(path)
    tc["added_tokens_decoder"] = {str(id_map[int(k)]): v for k, v in sorted(
        tc["added_tokens_decoder"].items(), key=lambda kv: int(kv[0])) if int(k) in id_map}
    if extra:
        tc.update(extra)
    return tc


# ------------------------------------------------------------------------------------------ checks
def check_tie_free(logits, where):
    """Every row: top-1 gap >= MIN_TOP1_GAP and the first TOPK_CHECK gaps >= MIN_TOPK_GAP."""
    x = logits.reshape(-1, logits.shape[-1]).double()
    s = torch.sort(x, dim=-1, descending=True).values[:, :TOPK_CHECK + 1]
    gaps = s[:, :-1] - s[:, 1:]
    g1, gk = float(gaps[:, 0].min()), float(gaps.min())
    if g1 < MIN_TOP1_GAP or gk < MIN_TOPK_GAP:
        raise SystemExit(f"tie check failed for {where}: min top1 gap {g1:.3g}, min top{TOPK_CHECK} gap {gk:.3g}")
    spread = float(x.std(-1).mean())
    if spread < 1.0:
        raise SystemExit(f"logits of {where} not spread out (mean std {spread:.3g})")
    return g1, gk, spread


# ------------------------------------------------------------------------------------------ main
def reference_cases(kind, cfg, rng_ids, n_used, mask_id, pad_id):
    avoid = {mask_id, pad_id}
    pool = np.array([i for i in range(n_used) if i not in avoid])
    single = rng_ids.choice(pool, size=12).tolist()
    rows, masks = [], []
    for npad in (0, 2, 5):
        body = rng_ids.choice(pool, size=10 - npad).tolist()
        rows.append([pad_id] * npad + body)
        masks.append([0] * npad + [1] * (10 - npad))
    wm = rng_ids.choice(pool, size=12).tolist()
    for p in (3, 4, 8, 11):
        wm[p] = mask_id
    return [
        {"name": "single", "input_ids": [single], "attention_mask": None},
        {"name": "batch_padded", "input_ids": rows, "attention_mask": masks},
        {"name": "with_masks", "input_ids": [wm], "attention_mask": None},
    ]


def write_fixture(name, kind, weights_f32, cfg, gen, tok_files, dtype, sharded, cases, seed):
    folder = os.path.join(OUT, name)
    if os.path.isdir(folder):
        shutil.rmtree(folder)
    os.makedirs(folder)
    names = list(weights_f32)
    if sharded:
        shards = [names[0::2], names[1::2]]  # arbitrary placement: resolve through weight_map
        write_sharded(folder, weights_f32, shards, dtype)
    else:
        write_safetensors(os.path.join(folder, "model.safetensors"), weights_f32, dtype)
    write_json(os.path.join(folder, "config.json"), cfg)
    write_json(os.path.join(folder, "generation_config.json"), gen)
    for fname, content in tok_files.items():
        if isinstance(content, str):
            with open(os.path.join(folder, fname), "w", encoding="utf-8") as f:
                f.write(content)
        else:
            with open(os.path.join(folder, fname), "w", encoding="utf-8") as f:
                json.dump(content, f, indent=2, ensure_ascii=False)
                f.write("\n")

    # reference logits from exactly the weights this fixture stores (read back from disk)
    w, dts = read_checkpoint(folder)
    assert set(dts.values()) == {dtype}
    for k in weights_f32:
        expect = round_to_bf16(weights_f32[k]) if dtype == "BF16" else weights_f32[k]
        assert np.array_equal(w[k], expect), k
    out_cases = []
    hidden = {}
    for ci, c in enumerate(cases):
        cap = {} if ci == 0 else None
        with torch.no_grad():
            logits = ref.forward(kind, w, cfg, c["input_ids"], c["attention_mask"], capture=cap)
        assert torch.isfinite(logits).all()
        check_tie_free(logits, f"{name}/{c['name']}")
        out_cases.append({"name": c["name"], "input_ids": c["input_ids"], "attention_mask": c["attention_mask"],
                          "logits": logits.numpy()})
        if cap is not None:
            hidden = {k: v.numpy() for k, v in cap.items()}
    doc = {"magic": "dyllm-fixture", "version": 1, "seed": seed, "generator": "tools/make_fixtures.py",
           "torch": torch.__version__, "model": kind, "weights_dtype": dtype,
           "logits_width": int(next(iter(out_cases))["logits"].shape[-1]),
           "cases": out_cases, "hidden_case": cases[0]["name"], "hidden": hidden}
    write_json(os.path.join(folder, "reference.json"), doc)
    return w


def main():
    rng = np.random.Generator(np.random.PCG64(SEED))
    os.makedirs(OUT, exist_ok=True)
    summary = {}

    # ---------------- LLaDA
    vocab, merges, added, id_map, _ = build_tokenizer("llada")
    tok_ids = {c: i for i, c, _ in added}
    n_used = len(vocab) + len(added)
    cfg, gen = llada_config(tok_ids)
    assert cfg["embedding_size"] >= cfg["vocab_size"] >= n_used
    tok_files = {
        "tokenizer.json": tt.tokenizer_json(vocab, merges, added),
        "tokenizer_config.json": renumbered_tokenizer_config(os.path.join(LLADA_UP, "tokenizer_config.json"), id_map),
        "special_tokens_map.json": load_json(os.path.join(LLADA_UP, "special_tokens_map.json")),
    }
    w32 = llada_weights(rng, cfg, n_used, [tok_ids["<|endoftext|>"], tok_ids["<|eot_id|>"]])
    cases = reference_cases("llada", cfg, np.random.Generator(np.random.PCG64(SEED + 1)), n_used,
                            cfg["mask_token_id"], cfg["pad_token_id"])
    lw_bf16 = write_fixture("llada-tiny", "llada", w32, cfg, gen, tok_files, "BF16", False, cases, SEED)
    write_fixture("llada-tiny-f32-sharded", "llada", w32, cfg, gen, tok_files, "F32", True, cases, SEED)
    summary["llada"] = (cfg, tok_ids, vocab, merges, added, lw_bf16)

    # ---------------- Dream
    vocab, merges, added, id_map, _ = build_tokenizer("dream")
    tok_ids = {c: i for i, c, _ in added}
    n_used = len(vocab) + len(added)
    tcfg = renumbered_tokenizer_config(os.path.join(DREAM_UP, "tokenizer_config.json"), id_map,
                                       {"tokenizer_class": "Qwen2Tokenizer"})
    added_json = {c: i for i, c, _ in sorted(added, key=lambda a: a[1])}
    tok_files = {
        "tokenizer.json": tt.tokenizer_json(vocab, merges, added),
        "tokenizer_config.json": tcfg,
        "special_tokens_map.json": load_json(os.path.join(DREAM_UP, "special_tokens_map.json")),
        "added_tokens.json": added_json,
        "vocab.json": vocab,
        "merges.txt": "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges),
    }
    w32 = dream_weights(rng, dream_config(tok_ids, "bfloat16")[0], n_used,
                        [tok_ids["<|endoftext|>"], tok_ids["<|im_end|>"]])
    cfg_bf, gen = dream_config(tok_ids, "bfloat16")
    cfg_f32, _ = dream_config(tok_ids, "float32")
    assert cfg_bf["vocab_size"] >= n_used
    cases = reference_cases("dream", cfg_bf, np.random.Generator(np.random.PCG64(SEED + 2)), n_used,
                            cfg_bf["mask_token_id"], cfg_bf["pad_token_id"])
    dw_bf16 = write_fixture("dream-tiny", "dream", w32, cfg_bf, gen, tok_files, "BF16", False, cases, SEED)
    write_fixture("dream-tiny-f32-sharded", "dream", w32, cfg_f32, gen, tok_files, "F32", True, cases, SEED)
    summary["dream"] = (cfg_bf, tok_ids, vocab, merges, added, dw_bf16)

    # ---------------- Phase 2: sampler fixtures on the bf16 checkpoints (fp32 math)
    samplers.write_generate_fixtures(OUT, summary, SEED, jdump)
    samplers.write_step_fixtures(OUT, SEED, jdump)

    # ---------------- Phase 3: PyTorch-bf16 error bounds of the bf16 checkpoints (bf16-reference.json)
    bf16_reference.main()

    for name in ("llada", "dream"):
        print(name, {k: v for k, v in summary[name][1].items()})


if __name__ == "__main__":
    main()
