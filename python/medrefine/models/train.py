"""How the shipped reference weights were made: one recipe per zoo model (``medrefine train``).

A recipe is a fixed number of optimiser steps on random crops (or whole padded images) of the
dataset's ``train`` split, so the same command reproduces a model card on a GPU in minutes or on a
2-core CPU in under half an hour. Loss: cross-entropy + soft Dice. Optimiser: AdamW with a cosine
learning-rate schedule. Augmentation: flips on every spatial axis and a random affine change of
the normalised intensities.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from tqdm import tqdm

from medrefine.data import Dataset, open_dataset
from medrefine.models.preprocess import Preprocessing
from medrefine.models.unet import UNet, UNetConfig

IGNORE = 255


@dataclass(frozen=True)
class TrainRecipe:
    """Everything that determines a reference model's training run.

    The network is trained at the resolution its encoder sees: when ``unet.input_scale`` is not 1,
    images and labels are resampled by it first and the network is trained without resampling,
    which computes the same function as the shipped network minus its final upsampling of the head
    input, at a fraction of the cost.

    Attributes:
        crop: spatial size of each training sample (array order, at the encoder's resolution);
            smaller images are padded (the padding is ignored by the loss), larger ones cropped.
        groups: restrict training to these dataset groups (DSB ``group`` column), None = all.
    """

    unet: UNetConfig
    steps: int
    batch_size: int
    crop: tuple[int, ...]
    lr: float = 2e-3
    weight_decay: float = 1e-4
    groups: tuple[str, ...] | None = None
    seed: int = 0

    @property
    def preprocessing(self) -> Preprocessing:
        u = self.unet
        return Preprocessing(u.spatial_dims, u.in_channels, u.stride)


FLUORESCENCE = (
    "256x256_gray_dark",
    "256x320_gray_dark",
    "260x347_gray_dark",
    "360x360_gray_dark",
    "512x640_gray_dark",
    "520x696_gray_dark",
    "603x1272_gray_dark",
    "1040x1388_gray_dark",
)

RECIPES: dict[str, TrainRecipe] = {
    "nuclei-unet2d": TrainRecipe(
        UNetConfig(spatial_dims=2, in_channels=3, num_classes=2, base_channels=32, depth=4),
        steps=1500,
        batch_size=8,
        crop=(128, 128),
    ),
    "fetalhead-unet2d": TrainRecipe(
        UNetConfig(
            spatial_dims=2,
            in_channels=1,
            num_classes=2,
            base_channels=16,
            depth=5,
            max_channels=128,
            head_levels=3,
            input_scale=0.25,
        ),
        steps=1200,
        batch_size=8,
        crop=(144, 208),
    ),
    "hippocampus-unet3d": TrainRecipe(
        UNetConfig(spatial_dims=3, in_channels=1, num_classes=3, base_channels=16, depth=4),
        steps=1500,
        batch_size=2,
        crop=(40, 56, 40),
    ),
}
RECIPES["nuclei-fluo-unet2d"] = replace(RECIPES["nuclei-unet2d"], groups=FLUORESCENCE)


def _samples(
    ds: Dataset, recipe: TrainRecipe, split: str
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Normalised unpadded images ``(C, *spatial)`` float32 and labels ``(*spatial)`` int64."""
    prep, scale = recipe.preprocessing, recipe.unet.input_scale
    out = []
    for case_id in ds.ids(split, recipe.groups):
        case = ds.load(case_id)
        x = prep(case.image)[
            (slice(None), slice(None)) + tuple(slice(0, n) for n in case.label.shape)
        ]
        y = torch.from_numpy(case.label.astype(np.int64))
        if scale != 1.0:
            x = F.interpolate(x, scale_factor=scale, mode="area")
            y = F.interpolate(y[None, None].float(), size=x.shape[2:], mode="nearest")[0, 0].long()
        out.append((x[0], y))
    return out


def _crop(
    x: torch.Tensor,
    y: torch.Tensor,
    size: tuple[int, ...],
    rng: np.random.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random crop of ``size``, padding (loss-ignored) where the image is smaller."""
    pads: list[int] = []
    for s, c in zip(reversed(y.shape), reversed(size), strict=True):
        pads += [0, max(c - s, 0)]
    x, y = F.pad(x, pads), F.pad(y, pads, value=IGNORE)
    starts = [int(rng.integers(0, s - c + 1)) for s, c in zip(y.shape, size, strict=True)]
    window = tuple(slice(a, a + c) for a, c in zip(starts, size, strict=True))
    return x[(slice(None),) + window], y[window]


def _batch(
    data: list[tuple[torch.Tensor, torch.Tensor]],
    recipe: TrainRecipe,
    rng: np.random.Generator,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = [], []
    for i in rng.integers(0, len(data), recipe.batch_size):
        x, y = _crop(*data[int(i)], recipe.crop, rng)
        for axis in range(y.ndim):
            if rng.random() < 0.5:
                x, y = x.flip(axis + 1), y.flip(axis)
        x = x * float(rng.uniform(0.8, 1.25)) + float(rng.uniform(-0.2, 0.2))
        xs.append(x)
        ys.append(y)
    return torch.stack(xs).to(device), torch.stack(ys).to(device)


def _loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    ce = F.cross_entropy(logits, y, ignore_index=IGNORE)
    valid = (y != IGNORE).unsqueeze(1)
    prob = logits.softmax(1) * valid
    onehot = F.one_hot(y.clamp(max=logits.shape[1] - 1), logits.shape[1]).movedim(-1, 1) * valid
    dims = tuple(range(2, y.ndim + 1))
    inter, denom = (prob * onehot).sum(dims), (prob + onehot).sum(dims)
    dice = (2 * inter[:, 1:] + 1) / (denom[:, 1:] + 1)
    return ce + (1 - dice.mean())


@torch.no_grad()
def predict(net: UNet, prep: Preprocessing, image: np.ndarray, device: torch.device) -> np.ndarray:
    """Label mask (uint8, spatial shape of ``image``) of the whole network."""
    shape = prep.spatial_shape(image)
    logits = net(prep(image).to(device))[0]
    return logits.argmax(0)[tuple(slice(0, s) for s in shape)].cpu().numpy().astype(np.uint8)


def _dice(gt: np.ndarray, pred: np.ndarray, num_classes: int) -> float:
    scores = [
        2 * np.sum((gt == c) & (pred == c)) / (np.sum(gt == c) + np.sum(pred == c))
        for c in range(1, num_classes)
        if np.any(gt == c)
    ]
    return float(np.mean(scores)) if scores else float("nan")


def train(
    name: str, data: str | Path, out: str | Path, device: str = "cpu", steps: int | None = None
) -> dict[str, object]:
    """Train zoo model ``name`` on ``data`` (its train split); write weights and card to ``out``.

    Returns the card: recipe, training time and machine, and test-split Dice of the network alone.
    """
    recipe = RECIPES[name]
    steps = steps or recipe.steps
    torch.manual_seed(recipe.seed)
    rng = np.random.default_rng(recipe.seed)
    dev = torch.device(device)
    ds = open_dataset(data)
    train_set = _samples(ds, recipe, "train")
    net = UNet(replace(recipe.unet, input_scale=1.0)).to(dev)
    opt = torch.optim.AdamW(net.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=recipe.lr, total_steps=steps, pct_start=0.05
    )
    start = time.perf_counter()
    net.train()
    bar = tqdm(range(steps), desc=name, mininterval=2.0)
    for _ in bar:
        x, y = _batch(train_set, recipe, rng, dev)
        loss = _loss(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
        sched.step()
        bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    seconds = time.perf_counter() - start
    shipped = UNet(recipe.unet).to(dev)  # resamples its input itself when input_scale != 1
    shipped.load_state_dict(net.state_dict())
    net = shipped.eval()
    prep = recipe.preprocessing
    test_ids = ds.ids("test", recipe.groups)
    dices = {
        cid: _dice(
            ds.load(cid).label, predict(net, prep, ds.load(cid).image, dev), recipe.unet.num_classes
        )
        for cid in test_ids
    }
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state = {
        k: (v.half() if v.is_floating_point() else v).cpu() for k, v in net.state_dict().items()
    }
    torch.save(state, out / f"{name}.pt")
    card: dict[str, object] = {
        "name": name,
        "recipe": asdict(recipe) | {"steps": steps},
        "train_cases": len(train_set),
        "train_seconds": round(seconds, 1),
        "train_device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "test_cases": len(test_ids),
        "test_dice_mean": float(np.nanmean(list(dices.values()))),
        "test_dice": dices,
    }
    (out / f"{name}.json").write_text(json.dumps(card, indent=1))
    return card


def main(argv: list[str] | None = None) -> int:
    """``python -m medrefine.models.train --model NAME --data DIR [--out DIR] [--device D]``."""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True, choices=sorted(RECIPES))
    parser.add_argument("--data", required=True, help="dataset folder (with cases.csv)")
    parser.add_argument("--out", default="runs/train", help="folder for weights and card")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=None, help="override the recipe's steps")
    args = parser.parse_args(argv)
    card = train(args.model, args.data, args.out, args.device, args.steps)
    print(f"{args.model}: test Dice {card['test_dice_mean']:.4f} after {card['train_seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
