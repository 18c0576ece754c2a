#!/usr/bin/python3
"""Convert a Hugging Face LLaDA or Dream folder to a bf16 GGUF that llama.cpp's `llama-diffusion-cli` loads.

    /usr/bin/python3 tools/hf_to_gguf.py MODEL_DIR OUT.gguf --gguf-py LLAMA_CPP/gguf-py [--vocab hf|ids]
                                         [--prompt-passthrough]

A focused converter for `npm run bench:peers` (bench/peers.ts): it writes the keys and tensor names llama.cpp's
loader reads for its `llada` and `dream` architectures (src/models/llada.cpp, src/models/dream.cpp and
conversion/llada.py, conversion/dream.py in the llama.cpp tree that bench/peers-build.sh builds), using the `gguf`
package from that tree's gguf-py/ (added to sys.path at run time; never vendored here) and numpy. Weights are read
lazily with tools/safetensors_io.py, so a 16 GB checkpoint converts in little memory.

- Matrices keep their bf16 bits exactly (F32 checkpoints are rounded to bf16, round-to-nearest-even); 1-D tensors
  (norm weights, Dream's q/k/v biases) are written F32, as llama.cpp's own converter does.
- LLaDA: llama.cpp runs its `llada` graph with LLAMA_ROPE_TYPE_NORM (rotation of adjacent pairs), while the HF model
  rotates the two halves of each head (rotate_half). The q/k rows of every head are therefore permuted from
  [x_0..x_{d/2-1}, y_0..y_{d/2-1}] to [x_0, y_0, x_1, y_1, ...] (the `undo_permute` of conversion/llada.py); q·k is
  unchanged because both get the same permutation. `diffusion.shift_logits = false`.
- Dream: NEOX RoPE (halves) in llama.cpp too, so no permutation; `diffusion.shift_logits = true`.
- The vocabulary has one token per row of the embedding (`embedding_size` for LLaDA, which may exceed `vocab_size`):
  ids the tokenizer lacks become `[PAD<i>]` (type UNUSED), so token ids are identical on both sides.

--vocab hf   (default) maps the folder's byte-level BPE (`tokenizer.json`, or Dream's vocab.json + merges.txt) to
             GGUF `gpt2` tokenizer metadata: tokens, merges, token types (added special tokens CONTROL, other added
             tokens USER_DEFINED), bos/eos/pad/mask ids, add_bos/add_eos, and the chat template.
--vocab ids  writes an id vocabulary instead: token i is the text `[t<i>]` (type USER_DEFINED). llama-diffusion-cli
             only takes a text prompt and prints text; with this vocabulary the prompt `[t5][t17]` is exactly the
             ids 5, 17 and the printed answer spells its ids, so outputs compare token for token. Needed for
             checkpoints without a tokenizer (the synthetic LLaDA-8B-shaped one of `npm run bench:step`).
--prompt-passthrough  writes the chat template `{{ message content }}` instead of the model's: llama-diffusion-cli
             always applies the GGUF's template (it has no flag to skip it), so a caller that renders the prompt
             itself (the bench passes the same rendered prompt to dyllm as token ids) needs this.

Errors are one line on stderr, exit status 1 (2 for wrong flags); the output is written to OUT.tmp and renamed, so
a failed run never leaves a half-written OUT.
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_io import f32_to_bf16_bits, map_checkpoint  # noqa: E402

# Sizes beyond these are not a model this converter is meant for; checked before anything is read.
MAX_VOCAB = 1 << 20
MAX_DIM = 1 << 16
MAX_LAYERS = 1024

# Hugging Face pre-tokenizer regexes -> llama.cpp `tokenizer.ggml.pre` names (src/llama-vocab.cpp).
QWEN2_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
               r"|\s+(?!\S)|\s+")
LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
PASSTHROUGH_TEMPLATE = "{% for message in messages %}{{ message['content'] }}{% endfor %}"


class ConvertError(Exception):
    pass


def read_json(path, what):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise ConvertError(f"{path}: no such file (expected {what})")
    except json.JSONDecodeError as e:
        raise ConvertError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}); expected {what}")


def positive_int(cfg, key, limit, where):
    v = cfg.get(key)
    if not isinstance(v, int) or isinstance(v, bool) or v <= 0 or v > limit:
        raise ConvertError(f"{where}: expected \"{key}\" to be an integer in 1..{limit}, found {v!r}")
    return v


def import_gguf(path):
    if not path:
        raise ConvertError("no gguf-py folder: pass --gguf-py DIR or set GGUF_PY (bench/peers-build.sh prints GGUF_PY=...)")
    if not os.path.isfile(os.path.join(path, "gguf", "__init__.py")):
        raise ConvertError(f"{path}: expected llama.cpp's gguf-py folder (containing gguf/__init__.py), found none")
    sys.path.insert(0, path)
    try:
        import gguf  # noqa: F401
    except ImportError as e:
        raise ConvertError(f"cannot import gguf from {path}: {e} (numpy missing? Debian: apt-get install python3-numpy)")
    return sys.modules["gguf"]


# ---------------------------------------------------------------- architecture

def describe(cfg, where):
    """Architecture-specific facts: gguf arch name, hyperparameters, HF -> GGUF tensor names."""
    mt = cfg.get("model_type")
    if mt == "llada":
        d = positive_int(cfg, "d_model", MAX_DIM, where)
        n_layers = positive_int(cfg, "n_layers", MAX_LAYERS, where)
        n_heads = positive_int(cfg, "n_heads", MAX_DIM, where)
        n_kv = cfg.get("n_kv_heads") or n_heads
        ff = positive_int(cfg, "mlp_hidden_size", 1 << 20, where)
        rows = cfg.get("embedding_size") or cfg.get("vocab_size")
        if not isinstance(rows, int) or rows <= 0 or rows > MAX_VOCAB:
            raise ConvertError(f"{where}: expected \"embedding_size\" (or \"vocab_size\") in 1..{MAX_VOCAB}, found {rows!r}")
        if d % n_heads or n_heads % n_kv:
            raise ConvertError(f"{where}: d_model {d} must be a multiple of n_heads {n_heads}, n_heads of n_kv_heads {n_kv}")
        if cfg.get("block_type", "llama") != "llama" or cfg.get("include_bias") or cfg.get("include_qkv_bias"):
            raise ConvertError(f"{where}: only LLaDA's llama block without biases is supported (llama.cpp's llada graph)")
        tie = bool(cfg.get("weight_tying"))
        names = {"model.transformer.wte.weight": "token_embd.weight",
                 "model.transformer.ln_f.weight": "output_norm.weight"}
        if not tie:
            names["model.transformer.ff_out.weight"] = "output.weight"
        for i in range(n_layers):
            p = f"model.transformer.blocks.{i}."
            names.update({p + "attn_norm.weight": f"blk.{i}.attn_norm.weight",
                          p + "q_proj.weight": f"blk.{i}.attn_q.weight",
                          p + "k_proj.weight": f"blk.{i}.attn_k.weight",
                          p + "v_proj.weight": f"blk.{i}.attn_v.weight",
                          p + "attn_out.weight": f"blk.{i}.attn_output.weight",
                          p + "ff_norm.weight": f"blk.{i}.ffn_norm.weight",
                          p + "ff_proj.weight": f"blk.{i}.ffn_gate.weight",
                          p + "up_proj.weight": f"blk.{i}.ffn_up.weight",
                          p + "ff_out.weight": f"blk.{i}.ffn_down.weight"})
        return dict(arch="llada", d=d, n_layers=n_layers, n_heads=n_heads, n_kv=n_kv, ff=ff, rows=rows,
                    ctx=cfg.get("max_sequence_length", 4096), theta=float(cfg.get("rope_theta", 10000.0)),
                    eps=float(cfg.get("rms_norm_eps", 1e-5)), names=names, permute_qk=True, shift_logits=False)
    if mt == "Dream":
        d = positive_int(cfg, "hidden_size", MAX_DIM, where)
        n_layers = positive_int(cfg, "num_hidden_layers", MAX_LAYERS, where)
        n_heads = positive_int(cfg, "num_attention_heads", MAX_DIM, where)
        n_kv = cfg.get("num_key_value_heads") or n_heads
        ff = positive_int(cfg, "intermediate_size", 1 << 20, where)
        rows = positive_int(cfg, "vocab_size", MAX_VOCAB, where)
        if d % n_heads or n_heads % n_kv:
            raise ConvertError(f"{where}: hidden_size {d} must be a multiple of num_attention_heads {n_heads}, heads of KV heads {n_kv}")
        names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
                 "lm_head.weight": "output.weight"}
        for i in range(n_layers):
            p = f"model.layers.{i}."
            names.update({p + "input_layernorm.weight": f"blk.{i}.attn_norm.weight",
                          p + "self_attn.q_proj.weight": f"blk.{i}.attn_q.weight",
                          p + "self_attn.k_proj.weight": f"blk.{i}.attn_k.weight",
                          p + "self_attn.v_proj.weight": f"blk.{i}.attn_v.weight",
                          p + "self_attn.q_proj.bias": f"blk.{i}.attn_q.bias",
                          p + "self_attn.k_proj.bias": f"blk.{i}.attn_k.bias",
                          p + "self_attn.v_proj.bias": f"blk.{i}.attn_v.bias",
                          p + "self_attn.o_proj.weight": f"blk.{i}.attn_output.weight",
                          p + "post_attention_layernorm.weight": f"blk.{i}.ffn_norm.weight",
                          p + "mlp.gate_proj.weight": f"blk.{i}.ffn_gate.weight",
                          p + "mlp.up_proj.weight": f"blk.{i}.ffn_up.weight",
                          p + "mlp.down_proj.weight": f"blk.{i}.ffn_down.weight"})
        return dict(arch="dream", d=d, n_layers=n_layers, n_heads=n_heads, n_kv=n_kv, ff=ff, rows=rows,
                    ctx=cfg.get("max_position_embeddings", 32768), theta=float(cfg.get("rope_theta", 10000.0)),
                    eps=float(cfg.get("rms_norm_eps", 1e-6)), names=names, permute_qk=False, shift_logits=True)
    raise ConvertError(f"{where}: model_type {mt!r} is not supported; expected \"llada\" (LLaDA) or \"Dream\"")


def expected_shape(a, gname):
    d, ff, rows, dh = a["d"], a["ff"], a["rows"], a["d"] // a["n_heads"]
    kv = a["n_kv"] * dh
    base = gname.split(".", 2)[-1] if gname.startswith("blk.") else gname
    return {"token_embd.weight": [rows, d], "output.weight": [rows, d], "output_norm.weight": [d],
            "attn_norm.weight": [d], "ffn_norm.weight": [d], "attn_q.weight": [d, d], "attn_k.weight": [kv, d],
            "attn_v.weight": [kv, d], "attn_q.bias": [d], "attn_k.bias": [kv], "attn_v.bias": [kv],
            "attn_output.weight": [d, d], "ffn_gate.weight": [ff, d], "ffn_up.weight": [ff, d],
            "ffn_down.weight": [d, ff]}[base]


def permute_rows(bits, n_head, rows_per_head):
    """HF half-split RoPE layout -> ggml adjacent-pair layout, per head (conversion/llada.py `permute`)."""
    cols = bits.shape[1]
    return (bits.reshape(n_head, 2, rows_per_head // 2, cols).swapaxes(1, 2).reshape(n_head * rows_per_head, cols))


# ---------------------------------------------------------------- tokenizer

def bytes_to_unicode():
    """GPT-2's byte -> printable character table (the alphabet of byte-level BPE token strings)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def pre_tokenizer_name(pre, where):
    """llama.cpp pre-tokenizer name for a tokenizer.json `pre_tokenizer` (only the ones llama.cpp implements)."""
    if pre is None:
        raise ConvertError(f"{where}: no pre_tokenizer; expected a byte-level BPE (or use --vocab ids)")
    if pre.get("type") == "ByteLevel" and pre.get("use_regex", True) and not pre.get("add_prefix_space", False):
        return "gpt-2"
    if pre.get("type") == "Sequence":
        items = pre.get("pretokenizers", [])
        splits = [p for p in items if p.get("type") == "Split"]
        levels = [p for p in items if p.get("type") == "ByteLevel"]
        if len(splits) == 1 and len(levels) == 1 and len(items) == 2 and not levels[0].get("use_regex", True):
            rx = splits[0].get("pattern", {}).get("Regex")
            if rx == QWEN2_REGEX:
                return "qwen2"
            if rx == LLAMA3_REGEX:
                return "llama-bpe"
    raise ConvertError(f"{where}: pre_tokenizer {json.dumps(pre)[:120]} has no llama.cpp equivalent this converter knows; "
                       "use --vocab ids")


def hf_vocab(model_dir, cfg, arch, rows):
    """(tokens, types, merges, pre, special ids, add_bos, add_eos, chat template) from the folder's tokenizer."""
    tj_path = os.path.join(model_dir, "tokenizer.json")
    tc_path = os.path.join(model_dir, "tokenizer_config.json")
    tc = read_json(tc_path, "the tokenizer config") if os.path.exists(tc_path) else {}
    added = []  # (id, content, special)
    if os.path.exists(tj_path):
        tj = read_json(tj_path, "a Hugging Face tokenizer.json")
        model = tj.get("model") or {}
        if model.get("type") != "BPE" or (tj.get("decoder") or {}).get("type") != "ByteLevel":
            raise ConvertError(f"{tj_path}: expected a byte-level BPE model (model.type BPE, ByteLevel decoder), found "
                               f"{model.get('type')!r} / {(tj.get('decoder') or {}).get('type')!r}; use --vocab ids")
        if tj.get("normalizer") is not None:
            raise ConvertError(f"{tj_path}: a normalizer ({tj['normalizer'].get('type')}) has no llama.cpp gpt2 equivalent; use --vocab ids")
        vocab = model.get("vocab") or {}
        merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges") or []]
        pre = pre_tokenizer_name(tj.get("pre_tokenizer"), tj_path)
        added = [(t["id"], t["content"], bool(t.get("special"))) for t in tj.get("added_tokens") or []]
    elif os.path.exists(os.path.join(model_dir, "vocab.json")) and os.path.exists(os.path.join(model_dir, "merges.txt")):
        vocab = read_json(os.path.join(model_dir, "vocab.json"), "a BPE vocab.json")
        with open(os.path.join(model_dir, "merges.txt"), encoding="utf-8") as f:
            merges = [ln.rstrip("\n") for ln in f if ln.strip() and not ln.startswith("#version")]
        if arch != "dream":
            raise ConvertError(f"{model_dir}: vocab.json + merges.txt without tokenizer.json is only known for Dream (Qwen2 pre-tokenizer)")
        pre = "qwen2"
        for k, v in (tc.get("added_tokens_decoder") or {}).items():
            added.append((int(k), v["content"], bool(v.get("special"))))
    else:
        raise ConvertError(f"{model_dir}: no tokenizer.json (nor vocab.json + merges.txt); expected a Hugging Face "
                           "tokenizer, or pass --vocab ids")
    tokens = [None] * rows
    types = [0] * rows
    for text, i in vocab.items():
        if not 0 <= i < rows:
            raise ConvertError(f"{model_dir}: token {text!r} has id {i}, outside the {rows} embedding rows")
        tokens[i], types[i] = text, 1  # NORMAL
    for i, text, special in added:
        if not 0 <= i < rows:
            raise ConvertError(f"{model_dir}: added token {text!r} has id {i}, outside the {rows} embedding rows")
        tokens[i], types[i] = text, (3 if special else 4)  # CONTROL / USER_DEFINED
    for i in range(rows):
        if tokens[i] is None:
            tokens[i], types[i] = f"[PAD{i}]", 5  # UNUSED
    ids = {t: i for i, t in enumerate(tokens)}

    def tok_id(v):
        if isinstance(v, dict):
            v = v.get("content")
        return ids.get(v) if isinstance(v, str) else None

    special = {}
    bos = tok_id(tc.get("bos_token")) if tc.get("bos_token") is not None else cfg.get("bos_token_id")
    for key, val in (("bos", bos), ("eos", cfg.get("eos_token_id")), ("pad", cfg.get("pad_token_id")),
                     ("mask", cfg.get("mask_token_id"))):
        if isinstance(val, int) and 0 <= val < rows:
            special[key] = val
    if "<|eot_id|>" in ids:
        special["eot"] = ids["<|eot_id|>"]
    template = tc.get("chat_template") if isinstance(tc.get("chat_template"), str) else None
    return dict(tokens=tokens, types=types, merges=merges, pre=pre, special=special,
                add_bos=bool(tc.get("add_bos_token", False)), add_eos=bool(tc.get("add_eos_token", False)),
                template=template)


def ids_vocab(cfg, rows):
    mask = cfg.get("mask_token_id")
    if not isinstance(mask, int) or not 0 <= mask < rows:
        raise ConvertError(f"config.json: expected \"mask_token_id\" in 0..{rows - 1} (llama-diffusion-cli needs the mask id), found {mask!r}")
    special = {"mask": mask}
    for key, k in (("bos", "bos_token_id"), ("eos", "eos_token_id"), ("pad", "pad_token_id")):
        v = cfg.get(k)
        if isinstance(v, int) and 0 <= v < rows:
            special[key] = v
    # gpt2 vocabularies need a merges array; this one never applies (no NORMAL tokens exist).
    return dict(tokens=[f"[t{i}]" for i in range(rows)], types=[4] * rows, merges=["[t0] [t1]"], pre="gpt-2",
                special=special, add_bos=False, add_eos=False, template=None)


# ---------------------------------------------------------------- main

def convert(model_dir, out, gguf_py, vocab_kind, passthrough):
    where = os.path.join(model_dir, "config.json")
    cfg = read_json(where, "the model's config.json")
    a = describe(cfg, where)
    gguf = import_gguf(gguf_py)
    try:
        tensors = map_checkpoint(model_dir)
    except FileNotFoundError as e:
        raise ConvertError(f"{model_dir}: no model.safetensors or model.safetensors.index.json ({e.filename} missing)")
    except ValueError as e:
        raise ConvertError(str(e))
    if a["arch"] == "dream" and "lm_head.weight" not in tensors and cfg.get("tie_word_embeddings"):
        del a["names"]["lm_head.weight"]
    missing = [n for n in a["names"] if n not in tensors]
    if missing:
        raise ConvertError(f"{model_dir}: {len(missing)} expected tensor(s) missing, first {missing[0]!r}")
    for hf_name, gname in a["names"].items():
        dt, shape, _ = tensors[hf_name]
        want = expected_shape(a, gname)
        if shape != want:
            raise ConvertError(f"{model_dir}: {hf_name} has shape {shape}, expected {want} from config.json")
    v = hf_vocab(model_dir, cfg, a["arch"], a["rows"]) if vocab_kind == "hf" else ids_vocab(cfg, a["rows"])
    if "mask" not in v["special"]:
        raise ConvertError(f"{where}: no usable \"mask_token_id\"; llama-diffusion-cli needs the mask id")

    tmp = out + ".tmp"
    w = gguf.GGUFWriter(tmp, a["arch"])
    w.add_name(os.path.basename(os.path.normpath(model_dir)))
    w.add_file_type(gguf.LlamaFileType.MOSTLY_BF16)
    w.add_context_length(int(a["ctx"]))
    w.add_embedding_length(a["d"])
    w.add_block_count(a["n_layers"])
    w.add_feed_forward_length(a["ff"])
    w.add_head_count(a["n_heads"])
    w.add_head_count_kv(a["n_kv"])
    w.add_rope_freq_base(a["theta"])
    w.add_rope_dimension_count(a["d"] // a["n_heads"])
    w.add_layer_norm_rms_eps(a["eps"])
    w.add_vocab_size(a["rows"])
    w.add_causal_attention(False)
    w.add_diffusion_shift_logits(a["shift_logits"])

    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(v["pre"])
    w.add_token_list(v["tokens"])
    w.add_token_types(v["types"])
    w.add_token_merges(v["merges"])
    sp = v["special"]
    for key, fn in (("bos", w.add_bos_token_id), ("eos", w.add_eos_token_id), ("pad", w.add_pad_token_id),
                    ("mask", w.add_mask_token_id), ("eot", w.add_eot_token_id)):
        if key in sp:
            fn(sp[key])
    w.add_add_bos_token(v["add_bos"])
    w.add_add_eos_token(v["add_eos"])
    template = PASSTHROUGH_TEMPLATE if passthrough else v["template"]
    if template:
        w.add_chat_template(template)

    dh = a["d"] // a["n_heads"]
    for hf_name, gname in a["names"].items():
        dt, shape, raw = tensors[hf_name]
        if len(shape) == 1:
            vals = (raw.astype(np.uint32) << 16).view(np.float32) if dt == "BF16" else np.asarray(raw, np.float32)
            w.add_tensor(gname, np.ascontiguousarray(vals, dtype=np.float32))
            continue
        if dt == "BF16":
            bits = raw.reshape(shape)
        else:
            bits = f32_to_bf16_bits(np.asarray(raw, np.float32)).reshape(shape)
        if a["permute_qk"] and gname.endswith("attn_q.weight"):
            bits = permute_rows(np.asarray(bits), a["n_heads"], dh)
        elif a["permute_qk"] and gname.endswith("attn_k.weight"):
            bits = permute_rows(np.asarray(bits), a["n_kv"], dh)
        w.add_tensor(gname, bits, raw_shape=shape, raw_dtype=gguf.GGMLQuantizationType.BF16)
    try:
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        os.replace(tmp, out)
    except BaseException:
        w.close()
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return a, v


def main(argv):
    ap = argparse.ArgumentParser(prog="hf_to_gguf.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("model_dir")
    ap.add_argument("out")
    ap.add_argument("--gguf-py", default=os.environ.get("GGUF_PY"), help="llama.cpp's gguf-py folder (or GGUF_PY)")
    ap.add_argument("--vocab", choices=["hf", "ids"], default="hf")
    ap.add_argument("--prompt-passthrough", action="store_true")
    args = ap.parse_args(argv)
    if not args.out.endswith(".gguf"):
        print(f"hf_to_gguf: expected an output path ending in .gguf, found {args.out!r}", file=sys.stderr)
        return 2
    try:
        a, v = convert(args.model_dir, args.out, args.gguf_py, args.vocab, args.prompt_passthrough)
    except ConvertError as e:
        print(f"hf_to_gguf: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"hf_to_gguf: {e.filename or args.out}: {e.strerror}", file=sys.stderr)
        return 1
    print(f"hf_to_gguf: wrote {args.out} ({a['arch']}, {a['n_layers']} layers, d {a['d']}, {a['rows']} tokens, "
          f"vocab {args.vocab}, pre {v['pre']})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
