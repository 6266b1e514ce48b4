#!/usr/bin/env python3
"""Writes the bench/files tree: deterministic text files from a seed.

    python3 make_tree.py DIR SMALL_FILES LARGE_FILES LARGE_MIB SEED

SMALL_FILES files of 0-16 KiB (uniform sizes, every 997th file empty), 100 to a
directory, 10 directories to a group: DIR/gNNN/dNN/fNNNNNNN.txt. LARGE_FILES files of
LARGE_MIB MiB each, DIR/gNNN/dNN/bigK.txt, in directories spread evenly over the tree (so a
`find | xargs -n 256` pipeline gets them in different batches, not all in one). Every
file is a slice of one text pool: lines of 0-120 characters, words of 1-12 letters with some
punctuation, indented lines and blank lines, ASCII only. Nine in ten non-empty small files
end with a newline; every large file does. Prints "files bytes" when done.
"""

import os
import random
import sys

POOL_BYTES = 4 << 20
MIB = 1 << 20
MAX_SMALL = 16 * 1024
PER_DIR = 100
DIRS_PER_GROUP = 10


def make_pool(rng):
    letters = "etaoinshrdlcumwfgypbvkjxqz"
    weights = [12, 9, 8, 8, 7, 7, 6, 6, 6, 4, 4, 3, 3, 2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1]
    vocab = []
    for _ in range(6000):
        length = min(12, max(1, int(rng.expovariate(1 / 5)) + 1))
        vocab.append("".join(rng.choices(letters, weights, k=length)))
    # Zipf-like word frequencies.
    word_weights = [1 / (rank + 1) for rank in range(len(vocab))]
    words = rng.choices(vocab, word_weights, k=POOL_BYTES // 4)
    punct = [",", ".", ";", ":", "()", "=", "->", "{", "}", "#", "//", "\"\""]
    out, size, i = [], 0, 0
    while size < POOL_BYTES:
        roll = rng.random()
        if roll < 0.08:
            line = ""
        else:
            target = rng.randint(8, 120)
            indent = " " * (4 * rng.randint(0, 3)) if roll < 0.4 else ("\t" if roll < 0.45 else "")
            parts, length = [], len(indent)
            while length < target:
                word = words[i % len(words)]
                i += 1
                if rng.random() < 0.1:
                    word += rng.choice(punct)
                parts.append(word)
                length += len(word) + 1
            line = indent + " ".join(parts)
        out.append(line)
        size += len(line) + 1
    return ("\n".join(out) + "\n").encode("ascii")[:POOL_BYTES]


def main():
    root, small, large, large_mib, seed = sys.argv[1], *map(int, sys.argv[2:6])
    rng = random.Random(seed)
    pool = make_pool(rng)
    pool_len = len(pool)
    leaves = max(1, -(-small // PER_DIR))

    def leaf_dir(leaf):
        path = os.path.join(root, "g%03d" % (leaf // DIRS_PER_GROUP), "d%02d" % (leaf % DIRS_PER_GROUP))
        os.makedirs(path, exist_ok=True)
        return path

    total_bytes = 0
    current_leaf, current_dir = -1, None
    for n in range(small):
        leaf = n // PER_DIR
        if leaf != current_leaf:
            current_leaf, current_dir = leaf, leaf_dir(leaf)
        size = 0 if n % 997 == 0 else rng.randint(0, MAX_SMALL)
        start = rng.randrange(0, pool_len - MAX_SMALL)
        data = pool[start:start + size]
        if size and data[-1:] != b"\n" and rng.random() < 0.9:
            data = data[:-1] + b"\n"
        with open(os.path.join(current_dir, "f%07d.txt" % n), "wb") as out:
            out.write(data)
        total_bytes += size

    for k in range(large):
        # A different 1 MiB block of the pool for each large file, ending in a newline.
        start = (k * 977_593) % (pool_len - MIB)
        block = pool[start:start + MIB - 1] + b"\n"
        leaf = int((k + 0.5) * leaves / large) if large else 0
        with open(os.path.join(leaf_dir(leaf), "big%d.txt" % k), "wb") as out:
            for _ in range(large_mib):
                out.write(block)
        total_bytes += large_mib * MIB

    print(small + large, total_bytes)


if __name__ == "__main__":
    main()
