"""Training data and held-out evaluation sets for the next demo model (v2), seeded and replayable.

Families (each sample: question, answer, family, size, key, template):

  story-v1    tools/arith_data.py's stories, unchanged (1-3 operations, numbers up to ~40; data/arith-test.jsonl)
  story       new story templates (people, shops, farms, ...), 1-4 operations, operands up to 999
  whatis      "What is 17 + 25?", "What's 340 minus 17?", "What is the product of 12 and 7?"
  imperative  "Compute 340 - 17.", "Add 17 and 25.", "Divide 84 by 7."
  equation    "17 plus 25 =", "340-17=", "12 * 7 = ?"
  howmuch     "How much is 12 times 7?", "If you take 17 away from 340, how many are left?"
  chain       2-4 operations: "What is 12 + 7 - 3?", "Start with 12. Add 7. Multiply by 3. What is the result?"
  count       numeric instructions: "What comes after 7?", "How many letters are in the word apple?"
  text        text instructions with fixed answers: "Repeat: ...", "Reverse the letters of abc", "Count from 3 to 9."
  unseen      phrasings that are NEVER trained on ("Tell me the sum of 17 and 25."): held-out only

Numeric answers are worked steps, one per line, ending "#### N" (GSM8K's layout, so `dyllm eval` and lm-eval's
flexible extraction apply): "12+7=19.\\n19*3=57.\\n#### 57". Text answers are the text alone (scored by exact match).
Operations: + - * / on non-negative integers (a factor or divisor 2-12, exact division only). Operand size
classes: small (largest operand <= 20), medium (21-199), large (200-999).

Held-out rule (tools/arith_data.py's, extended to computations): a sample is never trained on when the SHA-256
bucket of its question text (arith_data.test_bucket, as in v1) OR of its computation key ("key:" + key) is the test
bucket. The key is the computation without its wording ("17;+25", "12;+7;*3", "rev:abc"), the same in every family
and phrasing. The held-out files take only samples whose KEY is in the test bucket, so no phrasing of a held-out
computation is ever trained on; arith_data's own test questions (data/arith-test.jsonl) stay out by the text rule.

    /usr/bin/python3 tools/demo_data.py --selftest                  # rule, answers, determinism, committed files (~10 s)
    /usr/bin/python3 tools/demo_data.py --write-heldout data        # (re)writes data/heldout-*.jsonl
    /usr/bin/python3 tools/demo_data.py --sample 12 --seed 5        # print a few training samples
"""
import argparse
import glob
import json
import os
import random
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import arith_data  # noqa: E402
from arith_data import test_bucket  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "data")

SIZES = {"small": (1, 20), "medium": (21, 199), "large": (200, 999)}
SIZE_NAMES = list(SIZES)
OPS = ["+", "-", "*", "/"]
SYM = {"+": ["+"], "-": ["-"], "*": ["*", "x", "×"], "/": ["/", "÷"]}
WORD = {"+": ["plus"], "-": ["minus"], "*": ["times", "multiplied by"], "/": ["divided by"]}

# Training mix (fractions of training samples). unseen is held-out only.
MIX = {"story-v1": 0.08, "story": 0.16, "whatis": 0.12, "imperative": 0.11, "equation": 0.09, "howmuch": 0.08,
       "chain": 0.14, "count": 0.10, "text": 0.12}
TRAIN_FAMILIES = list(MIX)
ALL_FAMILIES = TRAIN_FAMILIES + ["unseen"]
# Operand size classes of training samples.
SIZE_MIX = {"small": 0.35, "medium": 0.35, "large": 0.30}

WORDS = ("the cat dog sun moon red blue green big small tree house car book pen cup map box fish bird star rain "
         "snow hat shoe door key ball cake milk tea apple bread river hill road ship boat game song king queen "
         "light dark fast slow happy cold warm good old new one two three four five six seven eight nine ten "
         "and with from over under near far left right up down open close jump run walk sing read write draw "
         "play stop go come see look find keep give take make help stay turn bring hold sit stand sleep dream "
         "water fire stone wood glass paper music lamp chair table clock phone seed leaf flower garden window "
         "yellow orange purple black white brown pink silver gold quick lazy quiet loud soft hard sweet").split()
LETTERS = "abcdefghijklmnopqrstuvwxyz"
NAMES = arith_data.NAMES + ["Liam", "Nora", "Eli", "Ivy", "Finn", "Lucy", "Hugo", "Maya"]
ITEMS = arith_data.ITEMS + ["beads", "rocks", "buttons", "tickets", "flowers", "candles", "pencils", "balloons"]
PLACES = [("shop", "the shop"), ("library", "the library"), ("farm", "the farm"), ("school", "the school"),
          ("bakery", "the bakery"), ("zoo", "the zoo")]
PLACE_ITEMS = {"shop": ["toys", "pens", "hats", "cups"], "library": ["books", "maps", "magazines"],
               "farm": ["eggs", "apples", "sheep", "chickens"], "school": ["pencils", "desks", "chairs"],
               "bakery": ["cakes", "cookies", "rolls", "pies"], "zoo": ["tickets", "birds", "fish"]}
CONTAINERS = [("box", "boxes"), ("bag", "bags"), ("pack", "packs"), ("jar", "jars"), ("basket", "baskets")]


# ------------------------------------------------------------------------------------------- arithmetic
def apply(a, op, b):
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    assert a % b == 0
    return a // b


def size_of(max_operand):
    for name, (lo, hi) in SIZES.items():
        if max_operand <= hi:
            return name
    return "large"


def draw_size(rng):
    r, acc = rng.random(), 0.0
    for name, p in SIZE_MIX.items():
        acc += p
        if r < acc:
            return name
    return "large"


def operand(rng, size, at_least=1):
    """An operand no larger than the class's maximum."""
    return rng.randint(at_least, SIZES[size][1])


def big_operand(rng, size):
    """An operand inside the class (it makes the problem's size)."""
    lo, hi = SIZES[size]
    return rng.randint(lo, hi)


def one_op(rng, size, op=None):
    """(a, op, b) with the largest operand in the size class, result a non-negative integer."""
    op = op or rng.choice(["+", "+", "-", "-", "*", "/"])
    if op == "+":
        a, b = big_operand(rng, size), operand(rng, size)
        if rng.random() < 0.5:
            a, b = b, a
    elif op == "-":
        a, b = big_operand(rng, size), operand(rng, size)
        if b > a:
            a, b = b, a
    elif op == "*":
        k = rng.randint(2, 12)
        a = big_operand(rng, size) if size != "small" else rng.randint(1, 20)
        a, b = (a, k) if rng.random() < 0.7 else (k, a)
    else:
        k = rng.randint(2, 12)
        lo, hi = SIZES[size]
        q = rng.randint(max(1, -(-lo // k)), max(1, hi // k))
        a, b = k * q, k
    return a, op, b


def steps_text(start, ops):
    """Worked answer for a chain: one line per operation, then '#### N'."""
    lines, v = [], start
    for op, b in ops:
        r = apply(v, op, b)
        lines.append(f"{v}{op}{b}={r}.")
        v = r
    return "\n".join(lines + [f"#### {v}"]), v


def chain_key(start, ops):
    return ";".join([str(start)] + [f"{op}{b}" for op, b in ops])


def next_op(rng, v, size, allow_div=True, last=False):
    """One more operation on the running value v (kept within 0..99999, division exact)."""
    choices = ["+", "-", "*"] + (["/"] if allow_div else [])
    for _ in range(20):
        op = rng.choice(choices)
        if op == "+":
            b = operand(rng, size)
        elif op == "-":
            if v < 2:
                continue
            b = rng.randint(1, min(v, SIZES[size][1]))
        elif op == "*":
            b = rng.randint(2, 12 if size != "small" else 5)
            if v * b > 99999:
                continue
        else:
            divs = [k for k in range(2, 13) if v % k == 0 and v // k >= 1]
            if not divs:
                continue
            b = rng.choice(divs)
        return op, b
    return "+", operand(rng, size)


# ------------------------------------------------------------------------------------------- single ops
T_WHATIS = [
    ("w0", "What is {a} {sym} {b}?", None),
    ("w1", "What is {a} {word} {b}?", None),
    ("w2", "What's {a} {sym} {b}?", None),
    ("w3", "what is {a}{sym}{b}", None),
    ("w4", "What is the sum of {a} and {b}?", "+"),
    ("w5", "What is the difference between {a} and {b}?", "-"),
    ("w6", "What is the product of {a} and {b}?", "*"),
    ("w7", "What is {a} divided by {b}?", "/"),
    ("w8", "What is {a}{sym}{b}?", None),
]
T_IMPERATIVE = [
    ("i0", "Compute {a} {sym} {b}.", None),
    ("i1", "Calculate {a} {sym} {b}.", None),
    ("i2", "Work out {a} {word} {b}.", None),
    ("i3", "Evaluate {a} {sym} {b}", None),
    ("i4", "Find {a} {word} {b}.", None),
    ("i5", "Add {a} and {b}.", "+"),
    ("i6", "Subtract {b} from {a}.", "-"),
    ("i7", "Multiply {a} by {b}.", "*"),
    ("i8", "Divide {a} by {b}.", "/"),
    ("i9", "Solve: {a} {sym} {b}", None),
]
T_EQUATION = [
    ("e0", "{a} {sym} {b} =", None),
    ("e1", "{a} {word} {b} =", None),
    ("e2", "{a}{sym}{b}=", None),
    ("e3", "{a} {sym} {b} = ?", None),
    ("e4", "{a} {word} {b} equals", None),
]
T_HOWMUCH = [
    ("h0", "How much is {a} {word} {b}?", None),
    ("h1", "How much is {a} {sym} {b}?", None),
    ("h2", "How many is {a} {word} {b}?", None),
    ("h3", "What do you get if you add {a} and {b}?", "+"),
    ("h4", "If you take {b} away from {a}, how many are left?", "-"),
    ("h5", "What do you get when you multiply {a} by {b}?", "*"),
    ("h6", "How many times does {b} go into {a}?", "/"),
    ("h7", "How much do you get when {a} is split into {b} equal parts?", "/"),
]
# Held-out only: these templates never produce a training sample.
T_UNSEEN = [
    ("u0", "Tell me the sum of {a} and {b}.", "+"),
    ("u1", "Please calculate {a} {sym} {b}.", None),
    ("u2", "{a} {word} {b} makes how many?", None),
    ("u3", "I have {a} and take away {b}. What is left?", "-"),
    ("u4", "Give me {a} {sym} {b}.", None),
    ("u5", "Quick question: {a} {word} {b}?", None),
    ("u6", "What number is {a} groups of {b}?", "*"),
    ("u7", "Share {a} equally among {b}. How many each?", "/"),
]
SINGLE = {"whatis": T_WHATIS, "imperative": T_IMPERATIVE, "equation": T_EQUATION, "howmuch": T_HOWMUCH,
          "unseen": T_UNSEEN}


def single_problem(rng, family, size):
    tid, tmpl, fixed = rng.choice(SINGLE[family])
    a, op, b = one_op(rng, size, fixed)
    q = tmpl.format(a=a, b=b, sym=rng.choice(SYM[op]), word=rng.choice(WORD[op]))
    ans, _ = steps_text(a, [(op, b)])
    return q, ans, chain_key(a, [(op, b)]), tid, size_of(max(a, b))


# ------------------------------------------------------------------------------------------- chains
OPW = {"+": ["add {b}", "plus {b}"], "-": ["subtract {b}", "take away {b}"], "*": ["multiply by {b}", "times {b}"],
       "/": ["divide by {b}"]}


def chain_problem(rng, size):
    n_ops = rng.choice([2, 2, 3, 3, 4])
    start = big_operand(rng, size)
    tid = rng.choice(["c0", "c1", "c2", "c3", "c4"])
    plusminus = tid in ("c0", "c1")
    ops, v = [], start
    for _ in range(n_ops):
        if plusminus:
            if v >= 2 and rng.random() < 0.5:
                op, b = "-", rng.randint(1, min(v, SIZES[size][1]))
            else:
                op, b = "+", operand(rng, size)
        else:
            op, b = next_op(rng, v, size)
        ops.append((op, b))
        v = apply(v, op, b)
    if tid == "c0":  # +/- only: left to right equals the usual precedence
        expr = f"{start}" + "".join(f" {op} {b}" for op, b in ops)
        q = f"What is {expr}?"
    elif tid == "c1":
        expr = f"{start}" + "".join(f" {op} {b}" for op, b in ops)
        q = f"{expr} ="
    elif tid == "c2":
        parts = [rng.choice(OPW[op]).format(b=b) for op, b in ops]
        q = f"Start with {start}. " + " ".join(p[0].upper() + p[1:] + "." for p in parts) + " What is the result?"
    elif tid == "c3":
        parts = [rng.choice(OPW[op]).format(b=b) for op, b in ops]
        q = f"Take {start}, " + ", then ".join(parts) + "."
    else:  # fully parenthesised, so precedence never matters
        expr = str(start)
        for j, (op, b) in enumerate(ops):
            expr = f"({expr} {op} {b})" if j < len(ops) - 1 else f"{expr} {op} {b}"
        q = f"Compute {expr}."
    ans, _ = steps_text(start, ops)
    mx = max([start] + [b for _, b in ops])
    return q, ans, chain_key(start, ops), tid, size_of(mx)


# ------------------------------------------------------------------------------------------- stories
def story_problem(rng, size):
    n_ops = rng.choice([1, 2, 2, 3, 3, 4])
    start = big_operand(rng, size)
    if rng.random() < 0.55:
        name = rng.choice(NAMES)
        other = rng.choice([n for n in NAMES if n != name])
        item = rng.choice(ITEMS)
        subj = name
        opening = rng.choice([f"{name} has {start} {item}.", f"{name} starts with {start} {item}.",
                              f"{name} collects {start} {item}."])
        final_q = rng.choice([f"How many {item} does {name} have now?", f"How many {item} does {name} have in the end?"])
        tid = "s-person"
    else:
        key, place = rng.choice(PLACES)
        item = rng.choice(PLACE_ITEMS[key])
        name, other = place[0].upper() + place[1:], rng.choice(NAMES)
        subj = name
        opening = rng.choice([f"{name} has {start} {item}.", f"There are {start} {item} at {place}."])
        final_q = rng.choice([f"How many {item} does {place} have now?", f"How many {item} are at {place} now?"])
        tid = "s-place"
    sentences = [opening]
    ops, v = [], start
    for j in range(n_ops):
        op, b = next_op(rng, v, size, allow_div=(j == n_ops - 1))
        if op == "+":
            s = rng.choice([f"{subj} gets {b} more.", f"{other} gives {subj} {b} {item}." if tid == "s-person"
                            else f"{subj} receives {b} more {item}.", f"Then {subj} buys {b} more {item}.",
                            f"{subj} finds {b} more."])
        elif op == "-":
            s = rng.choice([f"{subj} gives {b} to {other}.", f"{subj} sells {b} {item}.", f"{subj} loses {b} {item}.",
                            f"Then {b} {item} are taken away."])
        elif op == "*":
            s = rng.choice([f"Then {subj} gets {b} times as many.", f"The number of {item} grows {b} times bigger.",
                            f"{subj} ends up with {b} times as many {item}."])
        else:
            c1, cn = rng.choice(CONTAINERS)
            if rng.random() < 0.5:
                s, final_q = f"{subj} puts them into {b} equal {cn}.", f"How many {item} are in each {c1}?"
            else:
                s, final_q = f"{subj} shares them equally among {b} friends.", "How many does each friend get?"
        sentences.append(s)
        ops.append((op, b))
        v = apply(v, op, b)
    q = " ".join(sentences) + " " + final_q
    ans, _ = steps_text(start, ops)
    mx = max([start] + [b for _, b in ops])
    return q, ans, chain_key(start, ops), tid, size_of(mx)


def story_v1_problem(rng):
    q, a = arith_data.make_problem(rng)
    # key from the worked steps "a+b=c. c*k=d." -> "a;+b;*k"
    steps = re.findall(r"(\d+)([-+*])(\d+)=\d+\.", a)
    start, ops = int(steps[0][0]), [(op, int(b)) for _, op, b in steps]
    return q, a, chain_key(start, ops), "v1", size_of(max([start] + [b for _, b in ops]))


# ------------------------------------------------------------------------------------------- instructions
def count_problem(rng, size):
    tid = rng.choice(["n-after", "n-before", "n-letters", "n-larger", "n-smaller", "n-double", "n-half", "n-max"])
    lo, hi = SIZES[size]
    n = rng.randint(max(lo, 2), hi)
    if tid == "n-after":
        q = rng.choice([f"What comes after {n}?", f"What number comes after {n}?", f"What is one more than {n}?",
                        f"What is the next number after {n}?"])
        ans, key = steps_text(n, [("+", 1)])[0], chain_key(n, [("+", 1)])
    elif tid == "n-before":
        q = rng.choice([f"What comes before {n}?", f"What number comes before {n}?", f"What is one less than {n}?"])
        ans, key = steps_text(n, [("-", 1)])[0], chain_key(n, [("-", 1)])
    elif tid == "n-double":
        q = rng.choice([f"What is double {n}?", f"What is twice {n}?", f"Double {n}."])
        ans, key = steps_text(n, [("*", 2)])[0], chain_key(n, [("*", 2)])
    elif tid == "n-half":
        m = 2 * max(1, n // 2)
        q = rng.choice([f"What is half of {m}?", f"Halve {m}."])
        ans, key = steps_text(m, [("/", 2)])[0], chain_key(m, [("/", 2)])
        n = m
    elif tid == "n-letters":
        w = rng.choice(WORDS)
        q = rng.choice([f"How many letters are in the word {w}?", f"How many letters does {w} have?"])
        ans, key = f"{w} has {len(w)} letters.\n#### {len(w)}", f"len:{w}"
        return q, ans, key, tid, "-"
    else:
        k = 2 if tid != "n-max" else rng.randint(3, 5)
        xs = [n] + [rng.randint(1, hi) for _ in range(k - 1)]
        if len(set(xs)) < len(xs):
            xs = sorted(set(xs)) if len(set(xs)) >= 2 else [n, n + 1]
        rng.shuffle(xs)
        if tid == "n-max":
            r = max(xs)
            q = rng.choice([f"What is the largest number in {', '.join(map(str, xs))}?",
                            f"Which is the biggest: {', '.join(map(str, xs))}?"])
            ans, key = f"The largest is {r}.\n#### {r}", "max:" + ",".join(map(str, xs))
        elif tid == "n-larger":
            a, b = xs[0], xs[1]
            r = max(a, b)
            q = rng.choice([f"Which is larger, {a} or {b}?", f"Which is bigger: {a} or {b}?"])
            ans, key = f"{r} is larger.\n#### {r}", f"max:{a},{b}"
        else:
            a, b = xs[0], xs[1]
            r = min(a, b)
            q = rng.choice([f"Which is smaller, {a} or {b}?", f"Which is less: {a} or {b}?"])
            ans, key = f"{r} is smaller.\n#### {r}", f"min:{a},{b}"
        return q, ans, key, tid, size_of(max(xs))
    return q, ans, key, tid, size_of(n)


def text_problem(rng):
    tid = rng.choice(["t-repeat", "t-repeat", "t-reverse", "t-upper", "t-sort", "t-count", "t-first", "t-last"])
    if tid == "t-repeat":
        s = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 8)))
        q = rng.choice([f"Repeat: {s}", f"Say this again: {s}", f"Copy this: {s}", f"Repeat after me: {s}"])
        return q, s, "rep:" + s, tid
    if tid == "t-reverse":
        s = "".join(rng.choice(LETTERS) for _ in range(rng.randint(2, 6)))
        q = rng.choice([f"Reverse the letters of {s}", f"Spell {s} backwards.", f"Write {s} in reverse."])
        return q, s[::-1], "rev:" + s, tid
    if tid == "t-upper":
        w = rng.choice(WORDS)
        q = rng.choice([f"Write {w} in capital letters.", f"Uppercase: {w}"])
        return q, w.upper(), "up:" + w, tid
    if tid == "t-sort":
        xs = [rng.randint(0, 99) for _ in range(rng.randint(3, 6))]
        sep = rng.choice([" ", ", "])
        q = rng.choice([f"Sort these numbers: {sep.join(map(str, xs))}",
                        f"Put in order from smallest to largest: {sep.join(map(str, xs))}"])
        return q, sep.join(map(str, sorted(xs))), "sort:" + ",".join(map(str, xs)), tid
    if tid == "t-count":
        a = rng.randint(0, 90)
        b = a + rng.randint(2, 9)
        q = rng.choice([f"Count from {a} to {b}.", f"List the numbers from {a} to {b}."])
        return q, " ".join(str(i) for i in range(a, b + 1)), f"cnt:{a}-{b}", tid
    words = [rng.choice(WORDS) for _ in range(rng.randint(2, 6))]
    s = " ".join(words)
    if tid == "t-first":
        q = rng.choice([f"What is the first word of: {s}", f"Say the first word: {s}"])
        return q, words[0], "first:" + s, tid
    q = rng.choice([f"What is the last word of: {s}", f"Say the last word: {s}"])
    return q, words[-1], "last:" + s, tid


# ------------------------------------------------------------------------------------------- sampling
def make_sample(rng, family, size=None):
    """One sample of a family (ignores the held-out rule). size: a size class, or None to draw one."""
    size = size or draw_size(rng)
    if family in SINGLE:
        q, a, key, tid, got = single_problem(rng, family, size)
    elif family == "chain":
        q, a, key, tid, got = chain_problem(rng, size)
    elif family == "story":
        q, a, key, tid, got = story_problem(rng, size)
    elif family == "story-v1":
        q, a, key, tid, got = story_v1_problem(rng)
    elif family == "count":
        q, a, key, tid, got = count_problem(rng, size)
    elif family == "text":
        q, a, key, tid = text_problem(rng)
        got = "-"
    else:
        raise ValueError(f"unknown family {family!r}; expected one of {ALL_FAMILIES}")
    return {"question": q, "answer": a, "family": family, "size": got, "key": key, "template": tid}


def trainable(sample):
    """The training rule: neither the question text nor the computation key is in arith_data's test bucket, and
    the template is not a held-out-only one."""
    return not (test_bucket(sample["question"]) or test_bucket("key:" + sample["key"]) or sample["family"] == "unseen")


def held_out(sample):
    """Eligible for a held-out file: the computation key is in the test bucket (so no phrasing of it is trained)."""
    return test_bucket("key:" + sample["key"])


def pick_family(rng, mix=MIX):
    r, acc = rng.random() * sum(mix.values()), 0.0
    for fam, p in mix.items():
        acc += p
        if r < acc:
            return fam
    return list(mix)[-1]


def train_samples(n, seed, mix=MIX):
    """n training samples (repeats allowed: small families have few distinct questions), none held out."""
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        s = make_sample(rng, pick_family(rng, mix))
        if trainable(s):
            out.append(s)
    return out


def heldout_samples(n, seed, families, sizes=None):
    """n distinct held-out samples, drawn round-robin over families (and size classes when given)."""
    rng = random.Random(seed)
    out, seen, i = [], set(), 0
    tries = 0
    while len(out) < n:
        tries += 1
        if tries > 200000 * max(1, n):
            raise RuntimeError(f"could not draw {n} held-out samples of {families} {sizes}")
        fam = families[i % len(families)]
        size = sizes[(i // len(families)) % len(sizes)] if sizes else None
        s = make_sample(rng, fam, size)
        if not held_out(s) or s["question"] in seen or (size and s["size"] != size):
            continue
        seen.add(s["question"])
        out.append(s)
        i += 1
    return out


# The committed held-out files: name -> (families, size classes or None, n, seed).
ARITH_SEEN = ["whatis", "imperative", "equation", "howmuch", "chain", "story"]
HELDOUT = {
    "whatis": (["whatis"], SIZE_NAMES, 240, 101),
    "imperative": (["imperative"], SIZE_NAMES, 240, 102),
    "equation": (["equation"], SIZE_NAMES, 240, 103),
    "howmuch": (["howmuch"], SIZE_NAMES, 240, 104),
    "chain": (["chain"], SIZE_NAMES, 240, 105),
    "story": (["story"], SIZE_NAMES, 240, 106),
    "count": (["count"], None, 200, 107),
    "unseen": (["unseen"], SIZE_NAMES, 240, 108),
    "small": (ARITH_SEEN, ["small"], 240, 109),
    "medium": (ARITH_SEEN, ["medium"], 240, 110),
    "large": (ARITH_SEEN, ["large"], 240, 111),
    "text": (["text"], None, 200, 112),
}


def heldout_lines(name):
    fams, sizes, n, seed = HELDOUT[name]
    return [json.dumps(s, ensure_ascii=False) + "\n" for s in heldout_samples(n, seed, fams, sizes)]


def write_heldout(folder):
    os.makedirs(folder, exist_ok=True)
    for name in HELDOUT:
        path = os.path.join(folder, f"heldout-{name}.jsonl")
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            f.writelines(heldout_lines(name))
        os.replace(path + ".tmp", path)
        print("wrote", path, HELDOUT[name][2], "lines")


# ------------------------------------------------------------------------------------------- self-check
def check_answer(s):
    """The worked steps are right arithmetic, chained, and the final number follows them. Returns an error or None."""
    a = s["answer"]
    if s["family"] == "text":
        return None if a and "####" not in a and a == a.strip() else f"bad text answer {a!r}"
    m = re.search(r"#### (\d+)$", a)
    if not m:
        return f"no '#### N' at the end of {a!r}"
    steps = re.findall(r"(\d+)([-+*/])(\d+)=(\d+)\.", a)
    prev = None
    for x, op, y, r in steps:
        x, y, r = int(x), int(y), int(r)
        if op == "/" and (y == 0 or x % y):
            return f"inexact division in {a!r}"
        if apply(x, op, y) != r:
            return f"wrong step {x}{op}{y}={r} in {a!r}"
        if prev is not None and x != prev:
            return f"steps not chained in {a!r}"
        prev = r
    if steps and prev != int(m.group(1)):
        return f"final number differs from the last step in {a!r}"
    if s["family"] not in ("count",) and not steps:
        return f"no worked step in {a!r}"
    return None


def selftest(n_train=30000, seed=7):
    import time
    t0 = time.time()
    fails = []

    def need(ok, msg):
        if not ok:
            fails.append(msg)

    train = train_samples(n_train, seed)
    need(train == train_samples(n_train, seed), "train_samples is not deterministic for a seed")
    need(train != train_samples(n_train, seed + 1), "different seeds give the same samples")
    fams = {s["family"] for s in train}
    need(fams == set(TRAIN_FAMILIES), f"training families {sorted(fams)} != {sorted(TRAIN_FAMILIES)}")
    for s in train:
        need(trainable(s), f"train_samples returned a sample the rule excludes: {s['question']!r}")
        need(not test_bucket(s["question"]), f"a test-bucket question is in the training data: {s['question']!r}")
        need(not test_bucket("key:" + s["key"]), f"a test-bucket computation is in the training data: {s['key']!r}")
        need(s["family"] != "unseen", "an unseen-phrasing sample is in the training data")
        err = check_answer(s)
        need(err is None, f"{s['family']}: {err}")
    unseen_prefixes = {t.split("{")[0] for _, t, _ in T_UNSEEN if not t.startswith("{")}
    need(not any(s["question"].startswith(p) for s in train for p in unseen_prefixes),
         "a training question starts like an unseen template")
    sizes = {(s["family"], s["size"]) for s in train}
    for fam in ARITH_SEEN:
        for size in SIZE_NAMES:
            need((fam, size) in sizes, f"no {size} {fam} sample in {n_train} training samples")
    # every v1 test question (data/arith-test.jsonl) is held out under v2 and never generated for training
    v1 = [json.loads(line) for line in open(os.path.join(DATA, "arith-test.jsonl"))]
    need(all(test_bucket(p["question"]) for p in v1), "data/arith-test.jsonl has a question outside the test bucket")
    v1q = {p["question"] for p in v1}
    need(not any(s["question"] in v1q for s in train), "a data/arith-test.jsonl question is in the training data")

    train_q = {s["question"] for s in train}
    train_k = {s["key"] for s in train}
    for name in HELDOUT:
        lines = heldout_lines(name)
        need(lines == heldout_lines(name), f"heldout-{name} is not deterministic")
        for line in lines:
            s = json.loads(line)
            need(held_out(s), f"heldout-{name}: not held out: {s['question']!r}")
            need(s["question"] not in train_q, f"heldout-{name}: question also in training data: {s['question']!r}")
            need(s["key"] not in train_k, f"heldout-{name}: computation also in training data: {s['key']!r}")
            err = check_answer(s)
            need(err is None, f"heldout-{name}: {err}")
        path = os.path.join(DATA, f"heldout-{name}.jsonl")
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                need(f.readlines() == lines, f"{path} differs from what the generator writes (rerun --write-heldout)")
        else:
            fails.append(f"{path} is missing (run --write-heldout data)")
    extra = sorted(set(glob.glob(os.path.join(DATA, "heldout-*.jsonl")))
                   - {os.path.join(DATA, f"heldout-{n}.jsonl") for n in HELDOUT})
    need(not extra, f"held-out files the generator does not know: {extra}")
    # the rule itself: about 19% of samples are excluded from training (two ~10% buckets), about 10% are eligible
    # for held-out files, and every eligible one is excluded from training
    rng = random.Random(seed)
    mixed = [make_sample(rng, f) for f in TRAIN_FAMILIES for _ in range(400)]
    frac = sum(not trainable(s) for s in mixed) / len(mixed)
    need(0.13 <= frac <= 0.26, f"excluded fraction {frac:.3f} outside the expected ~19% (two 10% buckets)")
    need(not any(held_out(s) and trainable(s) for s in mixed), "a held-out-eligible sample is trainable")
    for m in fails[:20]:
        print("FAIL", m)
    if fails:
        print(f"demo_data selftest: {len(fails)} failures")
        return 1
    print(f"demo_data selftest: ok ({n_train} training samples, {len(HELDOUT)} held-out sets, "
          f"excluded from training {frac:.3f}, {time.time() - t0:.1f} s)")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--selftest", action="store_true", help="check the held-out rule, answers, determinism, data/ files")
    ap.add_argument("--write-heldout", metavar="DIR", help="write heldout-*.jsonl into DIR")
    ap.add_argument("--sample", type=int, default=0, help="print this many training samples")
    ap.add_argument("--family", choices=ALL_FAMILIES, help="with --sample: only this family")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    if args.write_heldout:
        write_heldout(args.write_heldout)
    if args.sample:
        rng = random.Random(args.seed)
        mix = {args.family: 1.0} if args.family else MIX
        for s in (train_samples(args.sample, args.seed, mix) if args.family != "unseen"
                  else [make_sample(rng, "unseen") for _ in range(args.sample)]):
            print(json.dumps(s, ensure_ascii=False))
    if args.selftest:
        sys.exit(selftest())
    if not (args.write_heldout or args.sample or args.selftest):
        ap.print_help()


if __name__ == "__main__":
    main()
