"""The official decode-head loss: mmseg 0.19 ``CrossEntropyLoss`` at label resolution, its mean.

Logits are upsampled bilinearly (``align_corners=False``) to the label size, per-pixel cross-entropy
uses ``ignore_index=255``, and the mean runs over ALL pixels: ignored pixels add 0 to the sum but
count in the denominator (mmseg 0.19 has no ``avg_non_ignore``).

On CPU, when the label size is an integer multiple of the logit size (the x8 training crops), the
same value and gradients (to float rounding) come from a cheaper path: torch's CPU bilinear
resize (and, above all, its backward) and ``log_softmax``/``nll_loss`` with its zero-filled
gradient are the bulk of a TopFormer-T training step at 512x512. There the resize is two
separable matrix products over three neighbouring source pixels per output pixel, and the
cross-entropy is one autograd function that keeps ``exp(logit - max)`` from the forward pass and
turns it into the gradient in place (``benchmarks/official_speed.py`` times it in the step).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

__all__ = ["IGNORE_INDEX", "seg_cross_entropy", "upsample_bilinear_int"]

IGNORE_INDEX = 255


def seg_cross_entropy(
    logits: torch.Tensor,
    labels: torch.Tensor,
    ignore_index: int = IGNORE_INDEX,
    align_corners: bool = False,
    class_weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean cross-entropy of ``logits`` (B, K, h, w) against ``labels`` (B, H, W), ignored pixels counted.

    ``class_weight`` (K,): each pixel's loss times its label's weight before the mean (mmseg's
    ``class_weight``; the denominator stays the pixel count). Computed in float32 even under
    autocast. Returns a scalar tensor.
    """
    if labels.dim() == 4 and labels.shape[1] == 1:
        labels = labels[:, 0]
    weight = None if class_weight is None else class_weight.to(device=logits.device, dtype=torch.float32)
    fast = logits.device.type == "cpu" and not align_corners and _integer_scale(logits, labels) is not None
    if fast:
        up = upsample_bilinear_int(logits.float(), *_integer_scale(logits, labels))
        return _SumCrossEntropy.apply(up, labels.long(), ignore_index, weight) / labels.numel()
    if logits.shape[-2:] != labels.shape[-2:]:
        logits = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=align_corners)
    # sum / all pixels == mmseg's mean with ignored pixels in the denominator, without a per-pixel tensor
    total = F.cross_entropy(logits.float(), labels.long(), weight=weight, reduction="sum", ignore_index=ignore_index)
    return total / labels.numel()


def _integer_scale(logits: torch.Tensor, labels: torch.Tensor) -> tuple[int, int] | None:
    (h, w), (H, W) = logits.shape[-2:], labels.shape[-2:]
    if h and w and H % h == 0 and W % w == 0 and (H, W) != (h, w):
        return H // h, W // w
    return None


def _phase_weights(scale: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(3, scale): output ``scale*m + r`` from source pixels m-1, m, m+1 (torch's ``align_corners=False`` rule).

    The source coordinate is ``(k + 0.5) / scale - 0.5`` = ``m + (r + 0.5) / scale - 0.5``; torch clamps
    it at 0 and at the last pixel, which edge replication of the source reproduces.
    """
    w = torch.zeros(3, scale, dtype=torch.float64)
    for r in range(scale):
        off = (r + 0.5) / scale - 0.5
        if off < 0:
            w[0, r], w[1, r] = -off, 1 + off
        else:
            w[1, r], w[2, r] = 1 - off, off
    return w.to(dtype=dtype, device=device)


def _upsample_last(x: torch.Tensor, scale: int) -> torch.Tensor:
    if scale == 1:
        return x
    n = x.shape[-1]
    xp = torch.cat([x[..., :1], x, x[..., -1:]], dim=-1)
    windows = torch.stack([xp[..., 0:n], xp[..., 1:n + 1], xp[..., 2:n + 2]], dim=-1)  # contiguous (..., n, 3)
    out = windows.view(-1, 3) @ _phase_weights(scale, x.dtype, x.device)
    return out.view(*x.shape[:-1], n * scale)


def upsample_bilinear_int(x: torch.Tensor, scale_h: int, scale_w: int) -> torch.Tensor:
    """``F.interpolate(x, scale x size, mode="bilinear", align_corners=False)`` for integer scales.

    Equal to torch's result to float rounding; autograd's backward is two small matrix products
    instead of torch's scalar CPU resize backward.
    """
    t = _upsample_last(x.transpose(-1, -2), scale_h).transpose(-1, -2)
    return _upsample_last(t.contiguous(), scale_w)


class _SumCrossEntropy(torch.autograd.Function):
    """Summed cross-entropy over (B, K, H, W) logits, ``ignore_index`` pixels adding 0.

    The forward pass keeps ``exp(logits - max)``; the backward turns it into
    ``softmax - onehot`` in place, masked on ignored pixels (no zero-filled gradient, no scatter of
    a full tensor, no second exponential).
    """

    @staticmethod
    def forward(ctx, logits: torch.Tensor, labels: torch.Tensor, ignore_index: int,
                class_weight: torch.Tensor | None = None) -> torch.Tensor:
        valid = labels != ignore_index
        target = labels.masked_fill(~valid, 0).unsqueeze(1)
        peak = logits.amax(dim=1, keepdim=True)
        e = torch.sub(logits, peak).exp_()
        denom = e.sum(dim=1)
        lse = denom.log() + peak.squeeze(1)
        picked = logits.gather(1, target).squeeze(1)
        # a pixel's weight: 0 where ignored, its class's weight (or 1) elsewhere
        pixel_w = valid.to(logits.dtype) if class_weight is None else torch.where(valid, class_weight[target[:, 0]], 0.0)
        loss = (pixel_w * (lse - picked)).sum()
        ctx.save_for_backward(e, denom, target, pixel_w)
        return loss

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: torch.Tensor):
        e, denom, target, pixel_w = ctx.saved_tensors
        g = grad_out * pixel_w
        grad = e.mul_((g / denom).unsqueeze(1))  # the saved buffer becomes the gradient: backward runs once
        grad.scatter_add_(1, target, -g.unsqueeze(1).to(grad.dtype))
        return grad, None, None, None
