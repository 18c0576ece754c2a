"""Train the bundled demo model: a small LLaDA-architecture masked diffusion LM on synthetic GSM8K-format word
problems (tools/arith_data.py), written in the exact upstream LLaDA layout (bf16 model.safetensors, config.json
with model_type "llada", generation_config.json, a byte-level BPE tokenizer.json, the real tokenizer_config.json
chat template with renumbered special tokens).

Objective: LLaDA SFT (GUIDELINES.md): the prompt stays clean, the response (answer, <|eot_id|>, then <|endoftext|>
padding) is masked at ratio t ~ U(eps, 1]; cross-entropy on masked tokens divided by t, summed per sequence and
divided by its response length, averaged over the batch. Half the prompts are the raw question, half the
chat-templated question, so the model answers either way.

Runs on torch 1.13 (CPU, Debian) and torch 2.x (CUDA, bf16 autocast). Training stops on a step count or a time
budget; the cosine schedule is sized from the measured step time.

    /usr/bin/python3 tools/train_demo.py --out /tmp/demo --steps 5 --device cpu          # smoke test
    python3 tools/train_demo.py --out $OUT/model --time-budget 420 --device cuda         # the real run
"""
import argparse
import json
import math
import os
import random
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import arith_data  # noqa: E402
import tiny_tokenizer as tt  # noqa: E402
from safetensors_io import write_safetensors  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
LLADA_UP = os.environ.get("LLADA_UPSTREAM", os.path.join(HERE, "..", "test", "fixtures", "upstream", "llada-8b-instruct"))
SPECIALS = ["<|startoftext|>", "<|endoftext|>", "<|mdm_mask|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
GEN = 48  # response canvas the model is trained to fill


def load_json(p):
    with open(p) as f:
        return json.load(f)


# ------------------------------------------------------------------------------------------ tokenizer
def build_tokenizer(corpus, n_merges):
    is_digit = lambda s: any(ch.isdigit() for ch in s)  # noqa: E731
    vocab, merges = tt.learn_bpe(corpus, n_merges, allow=lambda a, b: not (is_digit(a) or is_digit(b)))
    base = len(vocab)
    added = [(base + j, name, True) for j, name in enumerate(SPECIALS)]
    return vocab, merges, added


def chat(question):
    # LLaDA's chat template for one user turn (models.md §1.5): BOS, header, trimmed content, EoT, assistant header.
    return ("<|startoftext|><|start_header_id|>user<|end_header_id|>\n\n" + question.strip()
            + "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")


# ------------------------------------------------------------------------------------------ model
class RMSNorm(nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype) * self.weight


def rope(x, cos, sin):
    h = x.shape[-1] // 2
    x1, x2 = x[..., :h], x[..., h:]
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        d, f = c["d_model"], c["mlp_hidden_size"]
        self.nh = c["n_heads"]
        self.attn_norm = RMSNorm(d, c["rms_norm_eps"])
        self.q_proj = nn.Linear(d, d, bias=False)
        self.k_proj = nn.Linear(d, d, bias=False)
        self.v_proj = nn.Linear(d, d, bias=False)
        self.attn_out = nn.Linear(d, d, bias=False)
        self.ff_norm = RMSNorm(d, c["rms_norm_eps"])
        self.ff_proj = nn.Linear(d, f, bias=False)  # gate
        self.up_proj = nn.Linear(d, f, bias=False)
        self.ff_out = nn.Linear(f, d, bias=False)  # down

    def forward(self, x, cos, sin, bias):
        B, L, D = x.shape
        h = self.attn_norm(x)
        sh = lambda t: t.view(B, L, self.nh, D // self.nh).transpose(1, 2)  # noqa: E731
        q, k, v = sh(self.q_proj(h)), sh(self.k_proj(h)), sh(self.v_proj(h))
        q, k = rope(q.float(), cos, sin).to(v.dtype), rope(k.float(), cos, sin).to(v.dtype)
        if hasattr(F, "scaled_dot_product_attention"):
            a = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        else:
            s = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
            if bias is not None:
                s = s + bias
            a = torch.softmax(s.float(), -1).to(v.dtype) @ v
        x = x + self.attn_out(a.transpose(1, 2).reshape(B, L, D))
        h = self.ff_norm(x)
        return x + self.ff_out(F.silu(self.ff_proj(h)) * self.up_proj(h))


class LLaDA(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.wte = nn.Embedding(c["embedding_size"], c["d_model"])
        self.blocks = nn.ModuleList([Block(c) for _ in range(c["n_layers"])])
        self.ln_f = RMSNorm(c["d_model"], c["rms_norm_eps"])
        self.ff_out = nn.Linear(c["d_model"], c["embedding_size"], bias=False)  # LM head
        dh = c["d_model"] // c["n_heads"]
        inv = 1.0 / (c["rope_theta"] ** (torch.arange(0, dh, 2, dtype=torch.float) / dh))
        self.register_buffer("inv_freq", inv, persistent=False)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02)
            elif isinstance(m, nn.Embedding):
                nn.init.normal_(m.weight, std=0.02)
        for b in self.blocks:
            nn.init.normal_(b.attn_out.weight, std=0.02 / math.sqrt(2 * c["n_layers"]))
            nn.init.normal_(b.ff_out.weight, std=0.02 / math.sqrt(2 * c["n_layers"]))

    def forward(self, ids, key_valid=None):
        B, L = ids.shape
        pos = torch.arange(L, device=ids.device, dtype=torch.float)
        fr = torch.outer(pos, self.inv_freq)
        emb = torch.cat([fr, fr], -1)
        cos, sin = emb.cos(), emb.sin()
        bias = None
        if key_valid is not None:
            bias = torch.zeros(B, 1, 1, L, device=ids.device)
            bias = bias.masked_fill(~key_valid[:, None, None, :], float("-inf"))
        x = self.wte(ids)
        for b in self.blocks:
            x = b(x, cos, sin, None if bias is None else bias.to(x.dtype))
        return self.ff_out(self.ln_f(x))

    def hf_state_dict(self):
        sd = {"model.transformer.wte.weight": self.wte.weight, "model.transformer.ln_f.weight": self.ln_f.weight,
              "model.transformer.ff_out.weight": self.ff_out.weight}
        for i, b in enumerate(self.blocks):
            p = f"model.transformer.blocks.{i}."
            for n in ["attn_norm", "ff_norm"]:
                sd[p + n + ".weight"] = getattr(b, n).weight
            for n in ["q_proj", "k_proj", "v_proj", "attn_out", "ff_proj", "up_proj", "ff_out"]:
                sd[p + n + ".weight"] = getattr(b, n).weight
        return {k: v.detach().float().cpu().numpy() for k, v in sd.items()}


# ------------------------------------------------------------------------------------------ data
def encode_set(tok, probs, ids):
    """-> list of (prompt ids, response ids [answer, eot]) with half raw, half chat prompts."""
    out = []
    for i, p in enumerate(probs):
        prompt = p["question"] if i % 2 == 0 else chat(p["question"])
        resp = tok.encode(" " + p["answer"] if False else p["answer"]) + [ids["<|eot_id|>"]]
        if len(resp) > GEN:
            continue
        out.append((tok.encode(prompt), resp))
    return out


def make_batch(samples, idx, ids, device):
    """Right-aligned layout: prompt, response, then EOS padding to the batch's longest prompt + GEN."""
    P = max(len(samples[i][0]) for i in idx)
    L = P + GEN
    x = torch.full((len(idx), L), ids["<|endoftext|>"], dtype=torch.long)
    is_resp = torch.zeros((len(idx), L), dtype=torch.bool)
    for r, i in enumerate(idx):
        pr, rs = samples[i]
        x[r, :len(pr)] = torch.tensor(pr)
        x[r, len(pr):len(pr) + len(rs)] = torch.tensor(rs)
        is_resp[r, len(pr):] = True
    return x.to(device), is_resp.to(device)


def sft_loss(model, x, is_resp, mask_id, eps=1e-3):
    B, L = x.shape
    t = (1 - eps) * torch.rand(B, 1, device=x.device) + eps
    masked = (torch.rand(B, L, device=x.device) < t) & is_resp
    xin = torch.where(masked, torch.full_like(x, mask_id), x)
    logits = model(xin)
    ce = F.cross_entropy(logits[masked].float(), x[masked], reduction="none")
    resp_len = is_resp.sum(1, keepdim=True).expand(B, L)[masked].float()
    return (ce / t.expand(B, L)[masked] / resp_len).sum() / B


# ------------------------------------------------------------------------------------------ eval
@torch.no_grad()
def greedy_generate(model, prompts, mask_id, gen=GEN, steps=GEN, block=16, device="cpu"):
    """LLaDA generate.py, greedy, low-confidence remasking, semi-AR blocks; left-padded batch with key mask."""
    P = max(len(p) for p in prompts)
    B = len(prompts)
    x = torch.full((B, P + gen), mask_id, dtype=torch.long, device=device)
    valid = torch.ones((B, P + gen), dtype=torch.bool, device=device)
    for r, p in enumerate(prompts):
        x[r, :P - len(p)] = 0
        valid[r, :P - len(p)] = False
        x[r, P - len(p):P] = torch.tensor(p, device=device)
    nb = gen // block
    spb = steps // nb
    for b in range(nb):
        s, e = P + b * block, P + (b + 1) * block
        n = (x[:, s:e] == mask_id).sum(1)
        sched = [(n // spb + (i < n % spb).long()) for i in range(spb)]
        for i in range(spb):
            m = x == mask_id
            logits = model(x, valid if not bool(valid.all()) else None).float()
            x0 = logits.argmax(-1)
            conf = torch.softmax(logits, -1).gather(-1, x0[..., None])[..., 0]
            conf[:, e:] = -float("inf")
            conf = torch.where(m, conf, torch.full_like(conf, -float("inf")))
            for r in range(B):
                k = int(sched[i][r])
                if k > 0:
                    top = torch.topk(conf[r], k).indices
                    x[r, top] = x0[r, top]
    return x[:, P:]


def extract(text):
    import re
    m = re.findall(r"-?\d[\d,]*\.?\d*", text)
    return m[-1].rstrip(".").replace(",", "") if m else None


def evaluate(model, tok, ids, probs, device, n=128):
    model.eval()
    chat_prompts = [tok.encode(chat(p["question"])) for p in probs[:n]]
    raw_prompts = [tok.encode(p["question"]) for p in probs[:n]]
    res = {}
    for name, prompts in [("chat", chat_prompts), ("raw", raw_prompts)]:
        out = greedy_generate(model, prompts, ids["<|mdm_mask|>"], device=device)
        ok = 0
        for r, p in enumerate(probs[:n]):
            toks = out[r].tolist()
            cut = [t for t in toks if t not in (ids["<|eot_id|>"], ids["<|endoftext|>"], ids["<|mdm_mask|>"])]
            # stop at the first end token
            for j, t in enumerate(toks):
                if t in (ids["<|eot_id|>"], ids["<|endoftext|>"]):
                    cut = toks[:j]
                    break
            text = tok.decode(cut, skip_special=True)
            ok += extract(text) == p["answer"].split("####")[-1].strip()
        res[name] = ok / n
    model.train()
    return res


# ------------------------------------------------------------------------------------------ main
def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--steps", type=int, default=0, help="stop after this many steps (0 = use --time-budget)")
    ap.add_argument("--time-budget", type=float, default=400.0, help="seconds of training")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--lr", type=float, default=1.5e-3)
    ap.add_argument("--d-model", type=int, default=320)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--heads", type=int, default=5)
    ap.add_argument("--mlp", type=int, default=896)
    ap.add_argument("--merges", type=int, default=200)
    ap.add_argument("--train-problems", type=int, default=200000)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--eval-n", type=int, default=256, help="held-out problems in the final evaluation")
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    np.random.seed(args.seed)
    dev = torch.device(args.device)
    t_start = time.time()

    train = arith_data.problems("train", args.train_problems, seed=args.seed)
    test = arith_data.problems("test", 256, seed=args.seed + 1)
    corpus = " ".join(p["question"] + " " + p["answer"] for p in train[:3000]) + " user assistant"
    vocab, merges, added = build_tokenizer(corpus, args.merges)
    tok = tt.TinyTokenizer(vocab, merges, added)
    ids = {name: i for i, name, _ in added}
    n_tok = len(vocab) + len(added)
    emb = ((n_tok + 63) // 64) * 64

    cfg = load_json(os.path.join(LLADA_UP, "config.json"))
    cfg.update({"d_model": args.d_model, "n_layers": args.layers, "n_heads": args.heads, "n_kv_heads": args.heads,
                "mlp_hidden_size": args.mlp, "vocab_size": n_tok, "embedding_size": emb, "max_sequence_length": 1024,
                "rope_theta": 10000.0, "mask_token_id": ids["<|mdm_mask|>"], "eos_token_id": ids["<|endoftext|>"],
                "pad_token_id": ids["<|endoftext|>"]})
    gen_cfg = load_json(os.path.join(LLADA_UP, "generation_config.json"))
    gen_cfg.update({"bos_token_id": ids["<|startoftext|>"], "eos_token_id": ids["<|endoftext|>"]})

    samples = encode_set(tok, train, ids)
    print(f"vocab {n_tok} (embedding {emb}), {len(samples)} train samples, prep {time.time() - t_start:.1f}s", flush=True)

    model = LLaDA(cfg).to(dev)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"params {n_params / 1e6:.2f}M", flush=True)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.1)
    use_amp = dev.type == "cuda"
    warm = 300
    total = args.steps if args.steps else 10 ** 9
    log = []
    ema = None
    step = 0
    t0 = time.time()
    while step < total:
        if not args.steps and step == 200:
            per = (time.time() - t0) / 200
            total = int(args.time_budget / per)
            print(f"step time {per * 1000:.1f} ms -> {total} steps", flush=True)
        lr = args.lr * min(1.0, (step + 1) / warm) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, step / max(total, 1)))))
        for g in opt.param_groups:
            g["lr"] = lr
        idx = np.random.randint(0, len(samples), args.batch)
        x, is_resp = make_batch(samples, idx, ids, dev)
        if use_amp:
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = sft_loss(model, x, is_resp, ids["<|mdm_mask|>"])
        else:
            loss = sft_loss(model, x, is_resp, ids["<|mdm_mask|>"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
        step += 1
        if step % 500 == 0 or step == total:
            entry = {"step": step, "loss_ema": round(ema, 4), "lr": lr, "elapsed_s": round(time.time() - t0, 1)}
            if step % 2000 == 0 or step == total:
                entry["dev_acc"] = evaluate(model, tok, ids, test, dev, n=min(64, args.eval_n))
            log.append(entry)
            print(json.dumps(entry), flush=True)

    final = evaluate(model, tok, ids, test, dev, n=args.eval_n)
    print(f"held-out accuracy ({args.eval_n}, greedy, gen 48 / steps 48 / block 16):", final, flush=True)

    os.makedirs(args.out, exist_ok=True)
    write_safetensors(os.path.join(args.out, "model.safetensors"), model.hf_state_dict(), dtype="BF16")
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    with open(os.path.join(args.out, "generation_config.json"), "w") as f:
        json.dump(gen_cfg, f, indent=2)
    with open(os.path.join(args.out, "tokenizer.json"), "w") as f:
        json.dump(tt.tokenizer_json(vocab, merges, added), f, ensure_ascii=False)
    tc = load_json(os.path.join(LLADA_UP, "tokenizer_config.json"))
    up = {v["content"]: v for v in tc["added_tokens_decoder"].values()}
    tc["added_tokens_decoder"] = {str(i): up[name] for i, name, _ in added}
    tc["model_max_length"] = 1024
    with open(os.path.join(args.out, "tokenizer_config.json"), "w") as f:
        json.dump(tc, f, indent=2)
    with open(os.path.join(args.out, "special_tokens_map.json"), "w") as f:
        json.dump(load_json(os.path.join(LLADA_UP, "special_tokens_map.json")), f, indent=2)
    with open(os.path.join(args.out, "train_log.json"), "w") as f:
        json.dump({"args": vars(args), "params": n_params, "steps": step, "train_seconds": round(time.time() - t0, 1),
                   "final_loss_ema": ema, "held_out_accuracy": final, "log": log,
                   "device": torch.cuda.get_device_name(0) if use_amp else "cpu", "torch": torch.__version__}, f, indent=2)
    print("wrote", args.out, flush=True)


if __name__ == "__main__":
    main()
