"""The training loop's step: channels-last training computes what the default layout does."""
from __future__ import annotations

import copy

import torch

from topnas.platform.train.step import train_step
from topnas.topformer import TopFormer


def test_channels_last_step_matches_default_layout() -> None:
    # BN in eval mode: batch statistics of 2 images on 2x2 maps amplify float rounding ~1e4-fold
    # (a 1e-7 input change moves train-mode gradients by 1e-3), which would hide nothing but noise
    torch.manual_seed(0)
    model = TopFormer.from_preset("tiny", num_classes=5, norm="BN").eval()
    cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
    g = torch.Generator().manual_seed(1)
    img = torch.randn(2, 3, 64, 64, generator=g)
    label = torch.randint(0, 5, (2, 64, 64), generator=g)
    label[:, :8] = 255
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    results = []
    for net, x in ((model, img), (cl, img.contiguous(memory_format=torch.channels_last))):
        opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
        loss = train_step(net, opt, scaler, x, label)
        results.append((loss, [p.grad.clone() for p in net.parameters()], [p.detach().clone() for p in net.parameters()]))
    (loss_a, grads_a, params_a), (loss_b, grads_b, params_b) = results
    torch.testing.assert_close(loss_b, loss_a, rtol=1e-5, atol=1e-6)
    assert not loss_a.requires_grad and loss_a.dim() == 0
    for ga, gb in zip(grads_a, grads_b):
        torch.testing.assert_close(gb, ga, rtol=1e-4, atol=1e-6)
    for pa, pb in zip(params_a, params_b):
        torch.testing.assert_close(pb, pa, rtol=1e-5, atol=1e-5)  # Adam moves each by <= ~lr (1e-3)
    conv = next(p for p in cl.parameters() if p.dim() == 4 and p.shape[-1] > 1)
    assert conv.is_contiguous(memory_format=torch.channels_last)
