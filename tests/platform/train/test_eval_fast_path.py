"""Evaluation's fast path (inference copy, channels-last, batched) predicts what the plain path does."""
from __future__ import annotations

import torch

from topnas.platform.train.loop import evaluate, inference_copy
from topnas.topformer import TopFormer


class _Images:
    """Six images of two sizes (batches must not mix sizes) with random labels, 255 = ignore."""

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(0)
        self.items = []
        for i in range(6):
            h, w = (64, 96) if i in (2, 3) else (96, 64)
            label = torch.randint(0, 4, (h, w), generator=g)
            label[:4] = 255
            self.items.append({"img": torch.randn(3, h, w, generator=g), "gt_semantic_seg": label})

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        return self.items[i]


def _model() -> TopFormer:
    torch.manual_seed(0)
    m = TopFormer.from_preset("tiny", num_classes=4, norm="BN")
    for mod in m.modules():  # non-trivial running statistics
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.2, 0.2)
            mod.running_var.uniform_(0.5, 1.5)
    return m.train()


def test_fast_and_plain_paths_agree_and_leave_the_model_as_it_was():
    model, data = _model(), _Images()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    kw = dict(rank=0, world_size=1, device=torch.device("cpu"), num_classes=4)
    plain = evaluate(model, data, fast=False, **kw)
    fast = evaluate(model, data, fast=True, batch_size=4, **kw)
    assert fast["mIoU"] == plain["mIoU"] and fast["aAcc"] == plain["aAcc"]
    assert fast["IoU_per_class"] == plain["IoU_per_class"]
    assert model.training  # restored
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    conv = next(p for p in model.parameters() if p.dim() == 4 and p.shape[-1] > 1)
    assert conv.is_contiguous()  # the training model keeps its layout; only the copy is channels-last


def test_inference_copy_is_channels_last_and_in_eval_mode():
    model = _model()
    fast = inference_copy(model)
    conv = next(p for p in fast.parameters() if p.dim() == 4 and p.shape[-1] > 1)
    assert not fast.training and conv.is_contiguous(memory_format=torch.channels_last)
    assert model.training and fast is not model


def test_cpu_predictions_equal_the_official_test_path():
    """Channels-last resize + argmax over threads == mmseg's whole_inference (two resizes, softmax, argmax)."""
    import torch.nn.functional as F

    from topnas.platform.train.loop import _predict_cpu

    g = torch.Generator().manual_seed(3)
    logits = torch.randn(3, 5, 8, 12, generator=g) * 3
    orig = [(64, 96), (50, 70), (64, 96)]
    threads = torch.get_num_threads()
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            preds = _predict_cpu(logits, orig, (64, 96))
            for i, pred in enumerate(preds):
                x = F.interpolate(logits[i:i + 1], size=(64, 96), mode="bilinear", align_corners=False)
                x = F.interpolate(x, size=orig[i], mode="bilinear", align_corners=False)
                want = F.softmax(x, dim=1).argmax(dim=1)[0]
                assert pred.shape == orig[i] and torch.equal(pred, want)
    finally:
        torch.set_num_threads(threads)
