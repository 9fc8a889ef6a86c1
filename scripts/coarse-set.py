#!/usr/bin/env python3
"""Builds the coarse fine-tuning task from the 200 ImageNet sample images (docs/finetune-coarse.md).

Each sample's ImageNet class index (the line of its WordNet id in labels/synset.txt) maps to
one of five coarse classes (COARSE below); the images of each coarse class, sorted by file
name, go to OUT/val/<coarse>/ when their position is 3 mod 4 (every 4th) and to
OUT/train/<coarse>/ otherwise. Files are hard-linked, or copied when OUT is on another file
system (or with --copy). OUT/coarse-map.tsv lists every image with its wnid, class index,
coarse class and split. Running it again over an existing OUT only adds what is missing.

Plain python3, no third-party packages:

    python3 scripts/coarse-set.py OUT [--samples ../shared/data/imagenet-samples] [--copy]
"""

import argparse
import csv
import errno
import os
import shutil
import sys

# (coarse class, inclusive ImageNet index ranges). Order matters: the first match wins, and
# "other_animal" is the rest of the animal classes 0–397 after dogs and birds.
COARSE = [
    ("dog", [(151, 268)]),
    ("bird", [(7, 24), (80, 100), (127, 146)]),
    ("other_animal", [(0, 397)]),
    ("artifact", [(398, 923)]),  # abacus … plate: man-made objects
    ("food_nature", [(924, 999)]),  # foods, geology, people, plants and fungi, toilet tissue
]
MIN_PER_CLASS = 10
VAL_EVERY = 4  # position % 4 == 3 goes to val


def coarse_class(index):
    for name, ranges in COARSE:
        if any(lo <= index <= hi for lo, hi in ranges):
            return name
    raise ValueError(f"class index {index} is outside 0..999")


def read_synset(path):
    with open(path, encoding="utf-8") as f:
        wnids = [line.split()[0] for line in f if line.strip()]
    if len(wnids) != 1000:
        sys.exit(f"{path}: expected 1000 classes, found {len(wnids)}")
    return {wnid: i for i, wnid in enumerate(wnids)}


def read_samples(samples_dir, index_of):
    """(file, wnid, index) per image of labels.tsv, checked against synset.txt and the images folder."""
    rows = []
    tsv = os.path.join(samples_dir, "labels.tsv")
    with open(tsv, encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            wnid = row["wnid"]
            if wnid not in index_of:
                sys.exit(f"{tsv}: {row['file']}: wnid {wnid} is not in synset.txt")
            index = index_of[wnid]
            if int(row["label"]) != index:
                sys.exit(f"{tsv}: {row['file']}: label {row['label']} but {wnid} is line {index} of synset.txt")
            path = os.path.join(samples_dir, "images", row["file"])
            if not os.path.isfile(path):
                sys.exit(f"{path}: listed in labels.tsv but missing")
            rows.append((row["file"], wnid, index))
    return rows


def place(src, dst, copy):
    """Hard-links (or copies) src to dst; returns the mode used, or None when dst already exists."""
    if os.path.exists(dst):
        if os.path.getsize(dst) != os.path.getsize(src):
            sys.exit(f"{dst}: exists with another size than {src}; remove it first")
        return None
    if not copy:
        try:
            os.link(src, dst)
            return "link"
        except OSError as e:
            if e.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                raise
    tmp = dst + ".part"
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)
    return "copy"


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    default_samples = os.path.normpath(os.path.join(here, "..", "..", "shared", "data", "imagenet-samples"))
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", help="output folder (gets train/, val/ and coarse-map.tsv)")
    ap.add_argument("--samples", default=default_samples, help="the imagenet-samples folder (default: %(default)s)")
    ap.add_argument("--synset", help="synset.txt (default: SAMPLES/../labels/synset.txt)")
    ap.add_argument("--copy", action="store_true", help="copy instead of hard-linking")
    args = ap.parse_args()

    synset = args.synset or os.path.join(args.samples, "..", "labels", "synset.txt")
    rows = read_samples(args.samples, read_synset(synset))

    by_class = {}
    for file, wnid, index in rows:
        by_class.setdefault(coarse_class(index), []).append((file, wnid, index))

    names = sorted(by_class)
    short = [n for n in names if len(by_class[n]) < MIN_PER_CLASS]
    if short:
        sys.exit(f"coarse classes with fewer than {MIN_PER_CLASS} images: {short}")

    modes = {"link": 0, "copy": 0, None: 0}
    table = []
    for name in names:
        for pos, (file, wnid, index) in enumerate(sorted(by_class[name])):
            split = "val" if pos % VAL_EVERY == VAL_EVERY - 1 else "train"
            folder = os.path.join(args.out, split, name)
            os.makedirs(folder, exist_ok=True)
            modes[place(os.path.join(args.samples, "images", file), os.path.join(folder, file), args.copy)] += 1
            table.append((file, wnid, index, name, split))

    with open(os.path.join(args.out, "coarse-map.tsv"), "w", encoding="utf-8") as f:
        f.write("file\twnid\tlabel\tcoarse\tsplit\n")
        for row in table:
            f.write("\t".join(map(str, row)) + "\n")

    print(f"{'class':<14}{'train':>7}{'val':>6}{'total':>7}")
    for name in names:
        n_train = sum(1 for r in table if r[3] == name and r[4] == "train")
        n_val = sum(1 for r in table if r[3] == name and r[4] == "val")
        print(f"{name:<14}{n_train:>7}{n_val:>6}{n_train + n_val:>7}")
    n_val = sum(1 for r in table if r[4] == "val")
    print(f"{'all':<14}{len(table) - n_val:>7}{n_val:>6}{len(table):>7}")
    print(f"linked {modes['link']}, copied {modes['copy']}, already present {modes[None]} -> {args.out}")


if __name__ == "__main__":
    main()
