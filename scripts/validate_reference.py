#!/usr/bin/env python3
"""The reference validation pipeline, for comparing `resnet validate` against.

Pillow decode (`Image.open(f).convert("RGB")`), the model zoo's `preprocess` of SPEC §3.1
exactly (shorter side to 256 with Python `round` and `Image.BILINEAR`, center crop 224 at
(W//2-112, H//2-112), /255, ImageNet mean/std, CHW, float32), ONNX Runtime on the CPU with
ORT_ENABLE_ALL and intra_op_num_threads = --threads, batches of --batch (25) images, all in
one process, one image after another as the zoo's scripts do. Reads class folders named by
WNID (DIR/<wnid>/*.jpg|jpeg|png, labels = the WNID's line in synset.txt). Prints one JSON
object: images_per_s, seconds (decode through the last batch; the session is created before
the clock starts), count, top1, top5, top1_correct, top5_correct.

Usage: validate_reference.py --model M.onnx --data DIR [--threads T] [--batch 25]
                             [--limit N] [--synset FILE]
"""
import argparse, json, os, sys, time

import numpy as np
import onnxruntime as ort
from PIL import Image

MEAN = np.array([0.485, 0.456, 0.406])
STD = np.array([0.229, 0.224, 0.225])
EXTENSIONS = (".jpg", ".jpeg", ".png")


def preprocess(img):
    """imagenet_preprocess.py's `preprocess`, on a PIL RGB image."""
    w, h = img.size
    ratio = 256 / min(w, h)
    size = (int(round(ratio * w)), 256) if w > h else (256, int(round(ratio * h)))
    img = img.resize(size, Image.BILINEAR)
    a = np.asarray(img)  # H, W, 3 uint8
    hh, ww = a.shape[:2]
    y0, x0 = hh // 2 - 112, ww // 2 - 112
    a = a[y0:y0 + 224, x0:x0 + 224]
    a = a.transpose(2, 0, 1).astype(np.float32)  # CHW
    out = np.empty_like(a)
    for c in range(3):
        out[c] = (a[c] / 255 - MEAN[c]) / STD[c]
    return out


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    shared = os.environ.get("RESNET_SHARED_DIR", os.path.join(here, "..", "..", "shared"))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True, help="class folders named by WNID")
    ap.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0: its default)")
    ap.add_argument("--batch", type=int, default=25)
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--synset", default=os.path.join(shared, "data", "labels", "synset.txt"))
    a = ap.parse_args()

    wnids = [line.split()[0] for line in open(a.synset) if line.strip()]
    label_of = {w: i for i, w in enumerate(wnids)}
    items = []
    for wnid in sorted(os.listdir(a.data)):
        folder = os.path.join(a.data, wnid)
        if wnid not in label_of or not os.path.isdir(folder):
            continue
        for name in sorted(os.listdir(folder)):
            if name.lower().endswith(EXTENSIONS):
                items.append((os.path.join(folder, name), label_of[wnid]))
    if a.limit:
        items = items[:a.limit]
    if not items:
        sys.exit(f"validate_reference: no class folders with images in {a.data}")

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if a.threads:
        opts.intra_op_num_threads = a.threads
        opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(a.model, opts, providers=["CPUExecutionProvider"])
    input_name = sess.get_inputs()[0].name

    top1 = top5 = 0
    start = time.perf_counter()
    for b in range(0, len(items), a.batch):
        chunk = items[b:b + a.batch]
        x = np.stack([preprocess(Image.open(path).convert("RGB")) for path, _ in chunk])
        logits = sess.run(None, {input_name: x})[0]
        for row, (_, label) in zip(logits, chunk):
            # Stable descending order, as the zoo's argsort(prob)[::-1] up to ties.
            best = np.argsort(-row, kind="stable")[:5]
            top1 += int(best[0] == label)
            top5 += int(label in best)
    seconds = time.perf_counter() - start
    n = len(items)
    print(json.dumps({
        "images_per_s": n / seconds, "seconds": seconds, "count": n,
        "top1": top1 / n, "top5": top5 / n, "top1_correct": top1, "top5_correct": top5,
        "threads": a.threads, "batch": a.batch, "onnxruntime": ort.__version__,
    }))


if __name__ == "__main__":
    main()
