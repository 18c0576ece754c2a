"""A tiny synthetic byte-level BPE (GPT-2 style) for the test fixtures.

256 byte tokens (ids 0..255 in GPT-2 bytes_to_unicode order, so id 0 is "!"), then merges learned from a
small English+digits text, then the model's added (special) tokens. Also a reference encoder/decoder that
follows the Hugging Face `tokenizers` semantics for this exact configuration: added tokens are split out of
the raw text first, the rest goes through the GPT-2 regex (ByteLevel use_regex=true, add_prefix_space=false),
byte->unicode mapping, then BPE by merge rank.
"""
import re
from collections import Counter

# GPT-2 pre-tokenizer regex; the fixtures only ever see ASCII, for which [A-Za-z]/[0-9] equal \p{L}/\p{N}.
GPT2_PAT = re.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?[^\W\d_]+| ?\d+| ?(?:[^\s\w]|_)+|\s+(?!\S)|\s+""")

TRAIN_TEXT = (
    "the quick brown fox jumps over the lazy dog. the dog and the cat sat on the mat. "
    "hello world! hi there, how are you? i am fine, thank you. what is the answer? "
    "the answer is 42. one two three four five six seven eight nine ten. "
    "1 + 1 = 2, 2 + 2 = 4, 10 + 20 = 30, 12 * 12 = 144, 2024 and 2025 and 100 and 1000. "
    "there is a theory that the end is near, and then another one starts again and again. "
    "user assistant system helpful answer question the the the and and in in on on"
)


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return bs, [chr(c) for c in cs]


BS, CS = bytes_to_unicode()
BYTE_TO_CHAR = {b: c for b, c in zip(BS, CS)}
CHAR_TO_BYTE = {c: b for b, c in zip(BS, CS)}


def _words(text):
    return ["".join(BYTE_TO_CHAR[b] for b in m.encode("utf-8")) for m in GPT2_PAT.findall(text)]


def learn_bpe(text=TRAIN_TEXT, n_merges=40, allow=None):
    """Classic BPE training; ties in pair counts broken by the lexicographically smallest pair.
    `allow(a, b)` (optional) vetoes merges, e.g. to keep every digit its own token."""
    vocab = {c: i for i, c in enumerate(CS)}
    words = Counter(tuple(w) for w in _words(text))
    merges = []
    for _ in range(n_merges):
        pairs = Counter()
        for w, c in words.items():
            for a, b in zip(w, w[1:]):
                if allow is None or allow(a, b):
                    pairs[(a, b)] += c
        if not pairs:
            break
        best = min(pairs.items(), key=lambda kv: (-kv[1], kv[0]))[0]
        merges.append(best)
        new = best[0] + best[1]
        vocab[new] = len(vocab)
        nw = Counter()
        for w, c in words.items():
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and (w[i], w[i + 1]) == best:
                    out.append(new)
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            nw[tuple(out)] += c
        words = nw
    return vocab, merges


class TinyTokenizer:
    def __init__(self, vocab, merges, added):
        """added: list of (id, content, special)."""
        self.vocab = vocab
        self.inv = {i: t for t, i in vocab.items()}
        self.ranks = {m: r for r, m in enumerate(merges)}
        self.added = {c: i for i, c, _ in added}
        self.added_inv = {i: (c, s) for i, c, s in added}

    def _bpe(self, word):
        parts = list(word)
        while len(parts) > 1:
            cand = [(self.ranks.get((a, b), 1 << 30), j) for j, (a, b) in enumerate(zip(parts, parts[1:]))]
            r, j = min(cand)
            if r == 1 << 30:
                break
            parts[j:j + 2] = [parts[j] + parts[j + 1]]
        return [self.vocab[p] for p in parts]

    def encode(self, text):
        ids = []
        if self.added:
            pat = re.compile("(" + "|".join(re.escape(t) for t in sorted(self.added, key=len, reverse=True)) + ")")
            pieces = pat.split(text)
        else:
            pieces = [text]
        for k, piece in enumerate(pieces):
            if k % 2 == 1:
                ids.append(self.added[piece])
            elif piece:
                for w in _words(piece):
                    ids.extend(self._bpe(w))
        return ids

    def decode(self, ids, skip_special=False):
        out, buf = [], []
        for i in ids:
            if i in self.added_inv:
                c, s = self.added_inv[i]
                if buf:
                    out.append(bytes(buf).decode("utf-8", "replace"))
                    buf = []
                if not (skip_special and s):
                    out.append(c)
            elif i in self.inv:
                buf.extend(CHAR_TO_BYTE[ch] for ch in self.inv[i])
            else:
                raise KeyError(f"id {i} not in tokenizer")
        if buf:
            out.append(bytes(buf).decode("utf-8", "replace"))
        return "".join(out)


def tokenizer_json(vocab, merges, added):
    """HF tokenizers `tokenizer.json` dict (byte-level BPE, list-of-strings merges)."""
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {"id": i, "content": c, "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": s}
            for i, c, s in added
        ],
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": None,
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": vocab,
            "merges": [f"{a} {b}" for a, b in merges],
        },
    }
