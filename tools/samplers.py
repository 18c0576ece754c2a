"""Ports of the official samplers, on top of tools/reference.py (docs/models.md §1.4, §2.4).

- LLaDA `generate.py` (`generate`, `get_num_transfer_tokens`, `add_gumbel_noise`): blocks, low_confidence /
  random remasking, cfg, logits_eos_inf, and the confidence_eos_eot_inf chained-assignment quirk.
- Dream `generation_utils.py` `_sample` + `sample_tokens` (+ top_p_logits / top_k_logits): linspace
  timesteps with eps, k = int(fp32 mean-masked-count * (1 - s/t)), algs maskgit_plus / topk_margin / entropy
  (alg_temp 0/None -> top-k; > 0 -> multinomial), origin, shifted logits, left padding.

Randomness is injectable (`rand`: callable(shape, dtype) -> tensor in [0, 1)); the fixtures use T = 0 and
confidence-based remasking only, so they need none. The model is any callable returning fp32 logits.

Per-step confidence functions (`llada_step`, `dream_step`) take given logits, so a TypeScript sampler can be
checked on exactly the same logits.

Tie policy: torch.topk's order on equal values is unspecified. `TieChecker` fails the fixture build when a
top-k boundary (k-th vs (k+1)-th confidence), an argmax (top-1 vs top-2 logit at a transferred position) or
a top_p nucleus boundary is closer than a margin, so no written fixture depends on tie order or on ~1e-5
differences between engines.
"""
import json
import os

import numpy as np
import torch
import torch.nn.functional as F

import reference as ref

NEG_INF = float("-inf")


class TieError(Exception):
    pass


class TieChecker:
    def __init__(self, conf_rel=2e-4, conf_abs=1e-6, logit_gap=1e-3, top_p_gap=2e-5):
        self.conf_rel, self.conf_abs, self.logit_gap, self.top_p_gap = conf_rel, conf_abs, logit_gap, top_p_gap
        self.min_conf_margin = float("inf")  # smallest (gap / tolerance) seen, for the record
        self.min_logit_gap = float("inf")

    def topk_boundary(self, conf_row, k, where):
        """conf_row: 1-D fp32 tensor (may hold -inf); k positions will be chosen by torch.topk."""
        if k <= 0:
            return
        s = torch.sort(conf_row.double(), descending=True).values
        if s[k - 1] == NEG_INF:
            raise TieError(f"{where}: top-{k} reaches -inf entries (selection among ties)")
        if k < s.numel() and s[k] != NEG_INF:
            a, b = float(s[k - 1]), float(s[k])
            tol = max(self.conf_abs, self.conf_rel * max(abs(a), abs(b)))
            if a - b < tol:
                raise TieError(f"{where}: top-{k} boundary tie ({a!r} vs {b!r})")
            self.min_conf_margin = min(self.min_conf_margin, (a - b) / tol)

    def argmax(self, logits_row, where):
        s = torch.sort(logits_row.double(), descending=True).values
        gap = float(s[0] - s[1])
        if not gap >= self.logit_gap:
            raise TieError(f"{where}: argmax tie (gap {gap})")
        self.min_logit_gap = min(self.min_logit_gap, gap)

    def nucleus(self, logits_row, top_p, where):
        sorted_logits = torch.sort(logits_row, descending=True).values
        cum = torch.cumsum(F.softmax(sorted_logits, dim=-1), dim=-1).double()
        d = float((cum - top_p).abs().min())
        if d < self.top_p_gap:
            raise TieError(f"{where}: cumulative probability within {d} of top_p")


# =========================================================================================== LLaDA
def add_gumbel_noise(logits, temperature, rand=None):
    if temperature == 0:
        return logits  # the SAME tensor (matters for the confidence_eos_eot_inf quirk)
    logits = logits.to(torch.float64)
    noise = (rand or (lambda shape, dtype: torch.rand(shape, dtype=dtype)))(logits.shape, torch.float64)
    gumbel_noise = (-torch.log(noise)) ** temperature
    return logits.exp() / gumbel_noise


def get_num_transfer_tokens(mask_index, steps):
    mask_num = mask_index.sum(dim=1, keepdim=True)
    base = mask_num // steps
    remainder = mask_num % steps
    num = torch.zeros(mask_num.size(0), steps, dtype=torch.int64) + base
    for i in range(mask_num.size(0)):
        num[i, :remainder[i]] += 1
    return num


def llada_step(logits, x, mask_id, prompt_len, block_end, temperature=0.0, remasking="low_confidence",
               eos_id=None, eot_id=None, logits_eos_inf=False, confidence_eos_eot_inf=False, rand=None):
    """One step of generate.py after the model call. logits: [B, N, V] (already CFG-combined); modified in
    place exactly like upstream. Returns (x0, confidence, x0_logits): x0 [B,N] (x kept where not masked),
    confidence [B,N] (-inf outside candidates), and the tensor the argmax was taken over."""
    mask_index = x == mask_id
    if logits_eos_inf:
        logits[:, :, eos_id] = NEG_INF
    logits_with_noise = add_gumbel_noise(logits, temperature, rand)
    x0 = torch.argmax(logits_with_noise, dim=-1)
    argmax_src = logits_with_noise.clone()
    if confidence_eos_eot_inf:
        # upstream: `logits_with_noise[:, :, 126081] = logits[:, :, 126348] = -torch.inf`
        # (chained assignment, left to right; at T == 0 both names are the same tensor)
        logits_with_noise[:, :, eos_id] = NEG_INF
        logits[:, :, eot_id] = NEG_INF
    if remasking == "low_confidence":
        p = F.softmax(logits, dim=-1)
        x0_p = torch.squeeze(torch.gather(p, dim=-1, index=torch.unsqueeze(x0, -1)), -1)
    elif remasking == "random":
        x0_p = (rand or (lambda shape, dtype: torch.rand(shape, dtype=dtype)))((x0.shape[0], x0.shape[1]),
                                                                            torch.float32)
    else:
        raise NotImplementedError(remasking)
    x0_p[:, block_end:] = NEG_INF
    x0 = torch.where(mask_index, x0, x)
    confidence = torch.where(mask_index, x0_p, torch.tensor(NEG_INF, dtype=x0_p.dtype))
    return x0, confidence, argmax_src


def llada_generate(model, prompt, attention_mask=None, steps=128, gen_length=128, block_length=128,
                   temperature=0.0, cfg_scale=0.0, remasking="low_confidence", mask_id=126336, eos_id=126081,
                   eot_id=126348, logits_eos_inf=False, confidence_eos_eot_inf=False, rand=None, record=None,
                   ties=None):
    """model(x, attention_mask) -> fp32 logits. record: list receiving one dict per step."""
    prompt = torch.as_tensor(prompt, dtype=torch.long)
    B, P = prompt.shape
    x = torch.full((B, P + gen_length), mask_id, dtype=torch.long)
    x[:, :P] = prompt.clone()
    if attention_mask is not None:
        attention_mask = torch.as_tensor(attention_mask, dtype=torch.long)
        attention_mask = torch.cat([attention_mask, torch.ones((B, gen_length), dtype=attention_mask.dtype)], dim=-1)
    prompt_index = x != mask_id
    assert gen_length % block_length == 0
    num_blocks = gen_length // block_length
    assert steps % num_blocks == 0
    steps = steps // num_blocks
    for nb in range(num_blocks):
        block_end = P + (nb + 1) * block_length
        block_mask_index = x[:, P + nb * block_length:block_end] == mask_id
        num_transfer_tokens = get_num_transfer_tokens(block_mask_index, steps)
        for i in range(steps):
            mask_index = x == mask_id
            if cfg_scale > 0.0:
                un_x = x.clone()
                un_x[prompt_index] = mask_id
                x_ = torch.cat([x, un_x], dim=0)
                # upstream raises here when attention_mask is None (unbound attention_mask_)
                attention_mask_ = torch.cat([attention_mask, attention_mask], dim=0)
                logits = model(x_, attention_mask_)
                logits, un_logits = torch.chunk(logits, 2, dim=0)
                logits = un_logits + (cfg_scale + 1) * (logits - un_logits)
            else:
                logits = model(x, attention_mask)
            x0, confidence, argmax_src = llada_step(
                logits, x, mask_id, P, block_end, temperature, remasking, eos_id, eot_id, logits_eos_inf,
                confidence_eos_eot_inf, rand)
            transfer_index = torch.zeros_like(x0, dtype=torch.bool)
            chosen = []
            for j in range(confidence.shape[0]):
                k = int(num_transfer_tokens[j, i])
                if ties is not None:
                    ties.topk_boundary(confidence[j], k, f"block {nb} step {i} row {j}")
                _, select_index = torch.topk(confidence[j], k=k)
                transfer_index[j, select_index] = True
                chosen.append(sorted(select_index.tolist()))
                if ties is not None:
                    for pos in select_index.tolist():
                        ties.argmax(argmax_src[j, pos], f"block {nb} step {i} row {j} pos {pos}")
            x[transfer_index] = x0[transfer_index]
            if record is not None:
                record.append({"block": nb, "step": i, "k": num_transfer_tokens[:, i].tolist(),
                               "transfer": chosen, "tokens": [x[j, c].tolist() for j, c in enumerate(chosen)],
                               "confidence": confidence.clone().numpy(), "canvas": x.clone().tolist()})
    return x


# =========================================================================================== Dream
def top_p_logits(logits, top_p=None):
    sorted_logits, sorted_indices = torch.sort(logits, descending=True)
    cumulative_probs = torch.cumsum(F.softmax(sorted_logits, dim=-1), dim=-1)
    sorted_indices_to_remove = cumulative_probs > top_p
    sorted_indices_to_remove[..., 1:] = sorted_indices_to_remove[..., :-1].clone()
    sorted_indices_to_remove[..., 0] = 0
    mask = torch.zeros_like(logits, dtype=torch.bool)
    mask = mask.scatter_(-1, sorted_indices, sorted_indices_to_remove)
    return logits.masked_fill(mask, torch.finfo(logits.dtype).min)


def top_k_logits(logits, top_k=None):
    top_k = min(top_k, logits.size(-1))
    indices_to_remove = logits < torch.topk(logits, top_k)[0][..., -1, None]
    return logits.masked_fill(indices_to_remove, torch.finfo(logits.dtype).min)


def sample_tokens(logits, temperature=0.0, top_p=None, top_k=None, margin_confidence=False, neg_entropy=False,
                  categorical=None):
    """Dream's sample_tokens on [M, V] logits. categorical(probs) -> ids replaces dists.Categorical (T > 0)."""
    if temperature > 0:
        logits = logits / temperature
    if top_p is not None and top_p < 1:
        logits = top_p_logits(logits, top_p)
    if top_k is not None:
        logits = top_k_logits(logits, top_k)
    probs = torch.softmax(logits, dim=-1)
    if temperature > 0:
        try:
            x0 = (categorical or (lambda p: torch.distributions.Categorical(probs=p).sample()))(probs)
            confidence = torch.gather(probs, -1, x0.unsqueeze(-1)).squeeze(-1)
        except Exception:
            confidence, x0 = probs.max(dim=-1)
    else:
        confidence, x0 = probs.max(dim=-1)
    if margin_confidence:
        sorted_probs, _ = torch.sort(probs, dim=-1, descending=True)
        confidence = sorted_probs[:, 0] - sorted_probs[:, 1]
    if neg_entropy:
        epsilon = 1e-10
        log_probs = torch.log(probs + epsilon)
        confidence = torch.sum(probs * log_probs, dim=-1)
    return confidence, x0


def dream_step(logits, alg, temperature=0.0, top_p=None, top_k=None, categorical=None):
    """Confidence and x0 for the [M, V] logits of the masked positions (already shifted)."""
    kw = dict(temperature=temperature, top_p=top_p, top_k=top_k, categorical=categorical)
    if alg == "maskgit_plus":
        return sample_tokens(logits, **kw)
    if alg == "topk_margin":
        return sample_tokens(logits, margin_confidence=True, **kw)
    if alg == "entropy":
        return sample_tokens(logits, neg_entropy=True, **kw)
    raise RuntimeError(f"Unknown alg: {alg}")


def dream_timesteps(steps, eps):
    return torch.linspace(1, eps, steps + 1)


def dream_num_transfer(mask_index, t, s, last):
    num_mask_token = mask_index.sum() / mask_index.shape[0]  # int64 / int -> fp32
    return int(num_mask_token * (1 - s / t)) if not last else int(num_mask_token)


def shift_logits(logits):
    return torch.cat([logits[:, :1], logits[:, :-1]], dim=1)


def dream_transfer_step(x, logits, i, timesteps, alg="entropy", alg_temp=None, temperature=0.0, top_p=None,
                        top_k=None, mask_token_id=151666, rand=None, categorical=None, multinomial=None,
                        ties=None):
    """Step i of `_sample` after the model call: `logits` [B,N,V] are already SHIFTED. Updates x in place and
    returns the step record {step, t, s, k, confidence [B,N] (-inf = not a candidate), transfer, tokens,
    canvas}."""
    rand = rand or (lambda shape, dtype: torch.rand(shape, dtype=dtype))
    steps = timesteps.numel() - 1
    mask_index = x == mask_token_id
    mask_logits = logits[mask_index]
    t, s = timesteps[i], timesteps[i + 1]
    rec = {"step": i, "t": t.numpy(), "s": s.numpy()}
    if alg == "origin":
        p_transfer = 1 - s / t if i < steps - 1 else 1
        x0 = torch.zeros_like(x[mask_index], dtype=torch.long) + mask_token_id
        transfer_index_t_s = rand(x0.shape, torch.float32) < p_transfer
        _, x0[transfer_index_t_s] = sample_tokens(mask_logits[transfer_index_t_s], temperature=temperature,
                                                  top_p=top_p, top_k=top_k, categorical=categorical)
        x[mask_index] = x0.clone()
    else:
        confidence, x0 = dream_step(mask_logits, alg, temperature, top_p, top_k, categorical)
        k = dream_num_transfer(mask_index, t, s, i == steps - 1)
        full_confidence = torch.full_like(x, NEG_INF, dtype=logits.dtype)
        full_confidence[mask_index] = confidence
        rec["k"] = k
        rec["confidence"] = full_confidence.clone().numpy()
        chosen = [[] for _ in range(x.shape[0])]
        if k > 0:
            if alg_temp is None or alg_temp == 0:
                if ties is not None:
                    for j in range(x.shape[0]):
                        ties.topk_boundary(full_confidence[j], k, f"step {i} row {j}")
                _, transfer_index = torch.topk(full_confidence, k)
            else:
                fc = F.softmax(full_confidence / alg_temp, dim=-1)
                transfer_index = (multinomial or torch.multinomial)(fc, k)
            x_ = torch.zeros_like(x, dtype=torch.long) + mask_token_id
            x_[mask_index] = x0.clone()
            row_indices = torch.arange(x.size(0)).unsqueeze(1).expand_as(transfer_index)
            x[row_indices, transfer_index] = x_[row_indices, transfer_index]
            chosen = [sorted(r) for r in transfer_index.tolist()]
            if ties is not None:
                for j, r in enumerate(chosen):
                    for pos in r:
                        ties.argmax(logits[j, pos], f"step {i} row {j} pos {pos}")
                if top_p is not None and top_p < 1:  # the nucleus shapes every masked confidence
                    for row in mask_logits:
                        ties.nucleus(row, top_p, f"step {i} (masked row)")
        rec["transfer"] = chosen
        rec["tokens"] = [x[j, c].tolist() for j, c in enumerate(chosen)]
    rec["canvas"] = x.clone().tolist()
    return rec


def dream_generate(model, input_ids, attention_mask=None, max_new_tokens=16, steps=16, eps=1e-3, alg="entropy",
                   alg_temp=None, temperature=0.0, top_p=None, top_k=None, mask_token_id=151666, rand=None,
                   categorical=None, multinomial=None, record=None, ties=None):
    """model(x, tok_idx, allowed) -> fp32 unshifted logits (tok_idx/allowed None = arange / "full")."""
    input_ids = torch.as_tensor(input_ids, dtype=torch.long)
    max_length = max_new_tokens + input_ids.shape[1]
    x = F.pad(input_ids, (0, max_length - input_ids.shape[1]), value=mask_token_id)
    if attention_mask is not None and torch.any(torch.as_tensor(attention_mask) == 0.0):
        attention_mask = torch.as_tensor(attention_mask)
        attention_mask = F.pad(attention_mask, (0, max_length - attention_mask.shape[1]), value=1.0)
        tok_idx = attention_mask.long().cumsum(-1) - 1
        tok_idx.masked_fill_(attention_mask == 0, 1)
        allowed = torch.logical_and(attention_mask.unsqueeze(1).unsqueeze(-2).bool(),
                                    attention_mask.unsqueeze(1).unsqueeze(-1).bool())
    else:
        tok_idx, allowed = None, None
    timesteps = dream_timesteps(steps, eps)
    for i in range(steps):
        logits = shift_logits(model(x, tok_idx, allowed))
        rec = dream_transfer_step(x, logits, i, timesteps, alg, alg_temp, temperature, top_p, top_k, mask_token_id,
                                  rand, categorical, multinomial, ties)
        if record is not None:
            record.append(rec)
    return x


# =========================================================================================== fixtures
def render_llada_chat(text):
    return ("<|startoftext|><|start_header_id|>user<|end_header_id|>\n\n" + text.strip()
            + "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")


def render_dream_chat(text):
    return ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n" + text
            + "<|im_end|>\n<|im_start|>assistant\n")


def left_pad(rows, pad_id):
    n = max(len(r) for r in rows)
    return [[pad_id] * (n - len(r)) + r for r in rows], [[0] * (n - len(r)) + [1] * len(r) for r in rows]


LLADA_CASES = [
    # name, prompts, settings
    ("single_block", ["Hi"], dict(steps=16, gen_length=16, block_length=16)),
    ("semi_ar_remainder", ["Hi"], dict(steps=6, gen_length=10, block_length=5)),
    ("fewer_steps", ["What is the answer?"], dict(steps=4, gen_length=16, block_length=8)),
    ("logits_eos_inf", ["Hi"], dict(steps=8, gen_length=8, block_length=8, logits_eos_inf=True)),
    ("confidence_eos_eot_inf", ["Hi"], dict(steps=4, gen_length=8, block_length=8, confidence_eos_eot_inf=True)),
    ("cfg", ["Hi"], dict(steps=8, gen_length=8, block_length=4, cfg_scale=1.0)),
    ("padded_batch", ["Hi", "What is the answer?"], dict(steps=8, gen_length=8, block_length=4)),
    ("prompt_with_masks", ["the <M> sat on the <M>."], dict(steps=4, gen_length=8, block_length=8)),
]

DREAM_CASES = [
    ("entropy", ["Hi"], dict(max_new_tokens=12, steps=12, alg="entropy")),
    ("maskgit_plus_fewer_steps", ["Hi"], dict(max_new_tokens=12, steps=5, alg="maskgit_plus")),
    ("topk_margin_top_k", ["What is the answer?"], dict(max_new_tokens=12, steps=6, alg="topk_margin", top_k=8)),
    ("entropy_top_p", ["Hi"], dict(max_new_tokens=12, steps=12, alg="entropy", top_p=0.92)),
    ("maskgit_plus_top_p", ["Hi"], dict(max_new_tokens=8, steps=4, alg="maskgit_plus", top_p=0.92)),
    ("padded_batch", ["Hi", "What is the answer?"], dict(max_new_tokens=10, steps=5, alg="entropy", top_p=0.85)),
]


def _finish(ties):
    return {"min_topk_margin_over_tolerance": ties.min_conf_margin if ties.min_conf_margin != float("inf") else None,
            "min_argmax_logit_gap": ties.min_logit_gap if ties.min_logit_gap != float("inf") else None}


def write_generate_fixtures(out_dir, summary, seed, jdump):
    from tiny_tokenizer import TinyTokenizer

    head = {"magic": "dyllm-fixture", "version": 1, "kind": "generate", "seed": seed,
            "generator": "tools/make_fixtures.py (tools/samplers.py)", "torch": torch.__version__,
            "model_math": "fp32 reference (tools/reference.py) on the bf16 checkpoint weights",
            "tie_tolerance": {"confidence_rel": 2e-4, "confidence_abs": 1e-6, "argmax_logit_gap": 1e-3,
                              "top_p_cum_gap": 2e-5}}

    # ---------------- LLaDA
    cfg, tok_ids, vocab, merges, added, w = summary["llada"]
    tok = TinyTokenizer(vocab, merges, added)
    mask_id, eos_id, eot_id, pad_id = (cfg["mask_token_id"], cfg["eos_token_id"], tok_ids["<|eot_id|>"],
                                       cfg["pad_token_id"])

    def llada_model(x, m):
        with torch.no_grad():
            return ref.llada_forward(w, cfg, x, m)

    cases = []
    for name, prompts, st in LLADA_CASES:
        texts = [render_llada_chat(p.replace("<M>", "<|mdm_mask|>")) for p in prompts]
        ids = [tok.encode(t) for t in texts]
        for t, i in zip(texts, ids):
            assert tok.decode(i) == t
        if len(ids) > 1:
            ids, mask = left_pad(ids, pad_id)
        else:
            mask = [[1] * len(ids[0])] if st.get("cfg_scale", 0) > 0 else None
        settings = dict(dict(temperature=0.0, cfg_scale=0.0, remasking="low_confidence", logits_eos_inf=False,
                             confidence_eos_eot_inf=False), **st)
        rec, ties = [], TieChecker()
        try:
            x = llada_generate(llada_model, ids, mask, mask_id=mask_id, eos_id=eos_id, eot_id=eot_id,
                               record=rec, ties=ties, **settings)
        except TieError as e:
            raise SystemExit(f"llada generate case {name}: {e}")
        P = len(ids[0])
        cases.append({"name": name, "settings": dict(settings, mask_id=mask_id, eos_id=eos_id, eot_id=eot_id),
                      "prompt_text": texts, "prompt_ids": ids, "attention_mask": mask, "prompt_length": P,
                      "steps": rec, "final": x.tolist(), "generated": x[:, P:].tolist(),
                      "generated_text": [tok.decode([t for t in r if t in tok.inv or t in tok.added_inv])
                                         for r in x[:, P:].tolist()],
                      "checks": _finish(ties)})
    doc = dict(head, model="llada", checkpoint="llada-tiny", cases=cases)
    with open(os.path.join(out_dir, "llada-tiny", "generate.json"), "w") as f:
        f.write(jdump(doc) + "\n")

    # ---------------- Dream
    cfg, tok_ids, vocab, merges, added, w = summary["dream"]
    tok = TinyTokenizer(vocab, merges, added)
    mask_id, pad_id = cfg["mask_token_id"], cfg["pad_token_id"]

    def dream_model(x, tok_idx, allowed):
        with torch.no_grad():
            return ref.dream_forward(w, cfg, x, position_ids=tok_idx, allowed=allowed)

    cases = []
    for name, prompts, st in DREAM_CASES:
        texts = [render_dream_chat(p) for p in prompts]
        ids = [tok.encode(t) for t in texts]
        for t, i in zip(texts, ids):
            assert tok.decode(i) == t
        if len(ids) > 1:
            ids, mask = left_pad(ids, pad_id)
        else:
            mask = None
        settings = dict(dict(temperature=0.0, top_p=None, top_k=None, eps=1e-3, alg_temp=0.0), **st)
        rec, ties = [], TieChecker()
        try:
            x = dream_generate(dream_model, ids, mask, mask_token_id=mask_id, record=rec, ties=ties, **settings)
        except TieError as e:
            raise SystemExit(f"dream generate case {name}: {e}")
        P = len(ids[0])
        cases.append({"name": name, "settings": dict(settings, mask_token_id=mask_id),
                      "prompt_text": texts, "prompt_ids": ids, "attention_mask": mask, "prompt_length": P,
                      "timesteps": dream_timesteps(settings["steps"], settings["eps"]).numpy(),
                      "steps": rec, "final": x.tolist(), "generated": x[:, P:].tolist(),
                      "generated_text": [tok.decode([t for t in r if t in tok.inv or t in tok.added_inv])
                                         for r in x[:, P:].tolist()],
                      "checks": _finish(ties)})
    doc = dict(head, model="dream", checkpoint="dream-tiny", cases=cases)
    with open(os.path.join(out_dir, "dream-tiny", "generate.json"), "w") as f:
        f.write(jdump(doc) + "\n")


def write_step_fixtures(out_dir, seed, jdump):
    """test/fixtures/samplers/steps.json: single sampler steps on GIVEN random logits (no model), so a
    TypeScript sampler can be unit-tested on exactly these logits."""
    rng = np.random.Generator(np.random.PCG64(seed + 10))
    B, N, V = 2, 10, 16
    mask_id, eos_id, eot_id = 15, 13, 14
    base_logits = torch.tensor(rng.standard_normal((B, N, V)) * 2.0, dtype=torch.float32)
    base_logits[0, 4, eos_id] += 6.0  # EOS is the argmax here
    base_logits[0, 5, eot_id] += 6.0  # EOT is the argmax here
    base_logits[1, 6, eos_id] += 6.0
    x_init = torch.tensor([[3, 5, 1, mask_id, mask_id, mask_id, 7, mask_id, mask_id, mask_id],
                           [2, mask_id, 4, mask_id, mask_id, 9, mask_id, mask_id, mask_id, mask_id]])
    llada = []
    for name, flags in [("low_confidence", {}), ("logits_eos_inf", {"logits_eos_inf": True}),
                        ("confidence_eos_eot_inf", {"confidence_eos_eot_inf": True}),
                        ("both_flags", {"logits_eos_inf": True, "confidence_eos_eot_inf": True})]:
        prompt_len, block_end, k = 3, 8, [2, 3]
        logits, x = base_logits.clone(), x_init.clone()
        x0, conf, src = llada_step(logits, x, mask_id, prompt_len, block_end, eos_id=eos_id, eot_id=eot_id, **flags)
        ties, chosen = TieChecker(), []
        for j in range(B):
            ties.topk_boundary(conf[j], k[j], f"llada {name} row {j}")
            sel = torch.topk(conf[j], k[j]).indices
            for pos in sel.tolist():
                ties.argmax(src[j, pos], f"llada {name} row {j} pos {pos}")
            chosen.append(sorted(sel.tolist()))
            x[j, sel] = x0[j, sel]
        llada.append({"name": name, "settings": dict({"temperature": 0.0, "remasking": "low_confidence",
                                                       "logits_eos_inf": False, "confidence_eos_eot_inf": False},
                                                      **flags),
                      "prompt_length": prompt_len, "block_end": block_end, "k": k, "x": x_init.tolist(),
                      "x0": x0.tolist(), "confidence": conf.numpy(), "transfer": chosen, "x_after": x.tolist()})
    dream = []
    for alg in ("maskgit_plus", "topk_margin", "entropy"):
        for extra in ({}, {"top_p": 0.9}, {"top_k": 4}):
            for i in (0, 2, 4):
                steps, eps = 5, 1e-3
                x = x_init.clone()
                ties = TieChecker()
                rec = dream_transfer_step(x, base_logits.clone(), i, dream_timesteps(steps, eps), alg, None, 0.0,
                                          extra.get("top_p"), extra.get("top_k"), mask_id, ties=ties)
                mi = x_init == mask_id
                _, x0 = dream_step(base_logits[mi], alg, 0.0, extra.get("top_p"), extra.get("top_k"))
                x0_full = torch.full_like(x_init, -1)
                x0_full[mi] = x0
                dream.append({"name": f"{alg}{''.join(f'_{a}{b}' for a, b in extra.items())}_step{i}",
                              "settings": dict({"alg": alg, "alg_temp": None, "temperature": 0.0, "top_p": None,
                                                "top_k": None, "steps": steps, "eps": eps, "step": i}, **extra),
                              "x": x_init.tolist(), "t": rec["t"], "s": rec["s"], "k": rec["k"],
                              "x0": x0_full.tolist(), "confidence": rec["confidence"], "transfer": rec["transfer"],
                              "x_after": rec["canvas"]})
    doc = {"magic": "dyllm-fixture", "version": 1, "kind": "sampler-steps", "seed": seed + 10,
           "generator": "tools/make_fixtures.py (tools/samplers.py write_step_fixtures)", "torch": torch.__version__,
           "mask_id": mask_id, "eos_id": eos_id, "eot_id": eot_id, "vocab": V,
           "logits": base_logits.numpy(), "llada": llada, "dream": dream}
    os.makedirs(os.path.join(out_dir, "samplers"), exist_ok=True)
    with open(os.path.join(out_dir, "samplers", "steps.json"), "w") as f:
        f.write(jdump(doc) + "\n")
