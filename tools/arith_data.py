"""Synthetic GSM8K-format word problems with worked answers, for the bundled demo model.

Each problem is a short story with 1-3 arithmetic operations on small numbers; the answer shows every step and
ends with `#### N`, exactly the GSM8K layout, so lm-eval's flexible extraction applies. A problem is held out
(never trained on) when a hash of its question text falls in the test bucket, so train and test never share a
question, whatever the seed.

    /usr/bin/python3 tools/arith_data.py --out data/arith-test.jsonl --split test --n 500 --seed 1
"""
import argparse
import hashlib
import json
import random

NAMES = ["Tom", "Anna", "Ben", "Lily", "Sam", "Mia", "Jack", "Emma", "Leo", "Zoe", "Max", "Ava", "Noah", "Ella", "Owen", "Ruby"]
ITEMS = ["apples", "pens", "books", "cards", "coins", "eggs", "shells", "stickers", "marbles", "cookies", "toys", "stamps"]
CONTAINERS = ["boxes", "bags", "packs", "jars", "baskets"]


def test_bucket(question):
    """True for the held-out ~10% of all possible questions."""
    return int(hashlib.sha256(question.encode()).hexdigest()[:8], 16) % 10 == 0


def make_problem(rng):
    name = rng.choice(NAMES)
    other = rng.choice([n for n in NAMES if n != name])
    item = rng.choice(ITEMS)
    n_ops = rng.choice([1, 2, 2, 3])
    value = rng.randint(2, 40)
    sentences = [f"{name} has {value} {item}."]
    steps = []
    for _ in range(n_ops):
        kind = rng.choice(["add", "sub", "mul", "add", "sub"])
        if kind == "mul" and value <= 30:
            k = rng.randint(2, 4)
            sentences.append(rng.choice([
                f"Then {name} gets {k} times as many.",
                f"{name} makes the pile {k} times bigger.",
            ]))
            steps.append(f"{value}*{k}={value * k}.")
            value *= k
        elif kind == "sub" and value >= 3:
            k = rng.randint(1, min(value - 1, 30))
            sentences.append(rng.choice([
                f"{name} gives {k} to {other}.",
                f"{name} loses {k} {item}.",
                f"{name} eats {k}." if item in ("apples", "eggs", "cookies") else f"{name} sells {k} {item}.",
            ]))
            steps.append(f"{value}-{k}={value - k}.")
            value -= k
        else:
            k = rng.randint(1, 30)
            sentences.append(rng.choice([
                f"{name} buys {k} more.",
                f"{other} gives {name} {k} {item}.",
                f"{name} finds {k} more {item}.",
            ]))
            steps.append(f"{value}+{k}={value + k}.")
            value += k
    question = " ".join(sentences) + f" How many {item} does {name} have now?"
    answer = " ".join(steps) + f" #### {value}"
    return question, answer


def problems(split, n, seed):
    rng = random.Random(seed)
    seen = set()
    out = []
    while len(out) < n:
        q, a = make_problem(rng)
        if q in seen or test_bucket(q) != (split == "test"):
            continue
        seen.add(q)
        out.append({"question": q, "answer": a})
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--split", choices=["train", "test"], required=True)
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    with open(args.out, "w") as f:
        for p in problems(args.split, args.n, args.seed):
            f.write(json.dumps(p) + "\n")


if __name__ == "__main__":
    main()
