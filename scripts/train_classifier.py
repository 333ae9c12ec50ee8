#!/usr/bin/python3
"""Trains the Fashion-MNIST classifier shipped in models/: a small CNN on images in [-1, 1].

It is (a) a reward, `classifier:models/fashion_classifier.pt:<class>` (log-probability of a
class), and (b) the feature extractor of the FD score: its TorchScript module has
`features(x)` (the penultimate layer, 128 numbers) besides `forward(x) -> logits`.

    /usr/bin/python3 scripts/train_classifier.py [--epochs 4] [--seed 0] [--out models/fashion_classifier.pt]
"""
import argparse
import json
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
import fashion_mnist  # noqa: E402


class Classifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.conv3 = nn.Conv2d(64, 64, 3, padding=1)
        self.fc = nn.Linear(64 * 3 * 3, 128)
        self.out = nn.Linear(128, 10)

    @torch.jit.export
    def features(self, x):
        h = F.max_pool2d(F.silu(self.conv1(x)), 2)   # 14x14
        h = F.max_pool2d(F.silu(self.conv2(h)), 2)   # 7x7
        h = F.max_pool2d(F.silu(self.conv3(h)), 2)   # 3x3
        return F.silu(self.fc(h.flatten(1)))

    def forward(self, x):
        return self.out(self.features(x))


def accuracy(model, x, y):
    with torch.no_grad():
        return sum((model(x[i:i + 1000]).argmax(1) == y[i:i + 1000]).sum().item()
                   for i in range(0, len(x), 1000)) / len(x)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="models/fashion_classifier.pt")
    args = p.parse_args()
    torch.manual_seed(args.seed)
    torch.set_num_threads(os.cpu_count() or 1)
    x, y = fashion_mnist.load("train")
    xt, yt = fashion_mnist.load("test")
    model = Classifier()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    start = time.time()
    for epoch in range(args.epochs):
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 128):
            idx = perm[i:i + 128]
            # Light augmentation: random horizontal flips (clothes stay clothes).
            xb = torch.where(torch.rand(len(idx), 1, 1, 1) < 0.5, x[idx], x[idx].flip(3))
            loss = F.cross_entropy(model(xb), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        print(f"epoch {epoch + 1}: test accuracy {accuracy(model, xt, yt):.4f} ({time.time() - start:.0f} s)")
        model.train()
    model.eval()
    scripted = torch.jit.script(model)
    scripted.save(args.out)
    acc = accuracy(model, xt, yt)
    with open(os.path.splitext(args.out)[0] + ".json", "w") as f:
        json.dump({"kind": "classifier", "input_shape": [1, 28, 28], "data_range": [-1, 1],
                   "classes": fashion_mnist.CLASSES, "test_accuracy": acc, "epochs": args.epochs,
                   "seed": args.seed, "trained_by": "scripts/train_classifier.py",
                   "train_seconds": round(time.time() - start)}, f, indent=2)
    print(f"wrote {args.out}: test accuracy {acc:.4f}")


if __name__ == "__main__":
    main()
