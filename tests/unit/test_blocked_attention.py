"""Several query blocks: causal blocks skip the keys none of their rows sees, and the logits are fused."""
import torch
from torch import nn

from sinkfix.capture import attention as capture

MIN = torch.finfo(torch.float32).min


def causal_mask(n: int, pad_from: int | None = None) -> torch.Tensor:
    """Eager's additive causal mask [1, 1, n, n]; keys from ``pad_from`` on are padding."""
    visible = torch.ones(n, n).tril().bool()
    if pad_from is not None:
        visible[:, pad_from:] = False
    return torch.where(visible, 0.0, MIN)[None, None]


def test_extent_of_causal_blocks_is_the_last_row_plus_one():
    mask = causal_mask(8)
    assert [capture.key_extent(mask[:, :, s:s + 3], None, 8) for s in (0, 3, 6)] == [3, 6, 8]


def test_no_mask_bidirectional_and_non_float_masks_keep_every_key():
    assert capture.key_extent(None, None, 8) == 8
    assert capture.key_extent(torch.zeros(1, 1, 3, 8), None, 8) == 8
    assert capture.key_extent(torch.ones(1, 1, 3, 8, dtype=torch.bool), None, 8) == 8


def test_right_padding_is_skipped_with_the_future():
    mask = causal_mask(8, pad_from=5)
    assert capture.key_extent(mask[:, :, 0:3], None, 8) == 3
    assert capture.key_extent(mask[:, :, 6:8], None, 8) == 5


def test_a_row_that_sees_nothing_keeps_every_key():
    """Eager softmax spreads a fully hidden row evenly over all keys; skipping keys would change that."""
    mask = causal_mask(6)
    mask[..., 1, :] = MIN
    assert capture.key_extent(mask[:, :, 0:3], None, 6) == 6


def test_the_extra_mask_hides_keys_too():
    extra = torch.full((3, 8), float("-inf"))
    extra[:, :2] = 0.0
    assert capture.key_extent(None, extra, 8) == 2
    assert capture.key_extent(causal_mask(8)[:, :, 5:8], extra, 8) == 2


class _Module(nn.Module):
    layer_idx = 0


def test_skipped_blocks_equal_eager_and_hand_observers_the_seen_keys():
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 4, 10, 8), torch.randn(2, 2, 10, 8), torch.randn(2, 2, 10, 8)
    mask = causal_mask(10).expand(2, 1, 10, 10)
    widths: list[int] = []

    class Widths:
        def observe(self, layer, probs, value, scores, start=0, sink_mass=None):
            assert value.shape[-2] == 10 and probs.shape == scores.shape
            widths.append(probs.shape[-1])

    module = _Module().eval()
    whole, weights = capture.sinkfix_attention(module, q, k, v, mask)
    with capture.blocking(3), capture.observing(Widths()):
        blocked, none = capture.sinkfix_attention(module, q, k, v, mask)
    assert widths == [3, 6, 9, 10] and none is None
    torch.testing.assert_close(blocked, whole, atol=1e-6, rtol=0)
    expected = torch.softmax(q @ capture._repeat_kv(k, 2).transpose(2, 3) * 8 ** -0.5 + mask, dim=-1)
    torch.testing.assert_close(weights, expected, atol=1e-6, rtol=0)


def test_fused_logits_equal_the_eager_order_within_rounding():
    torch.manual_seed(1)
    q, k = torch.randn(3, 4, 5, 80), torch.randn(3, 4, 7, 80)
    scale = 80 ** -0.5
    masks = [None, causal_mask(7)[:, :, 2:7], torch.cat([causal_mask(7, pad_from=p)[:, :, 2:7] for p in (7, 6, 4)])]
    extra = torch.zeros(5, 7)
    extra[:, 0] = float("-inf")
    for mask in masks:
        for extra_mask in (None, extra):
            eager = capture._logits(q, k, mask, scale, extra_mask)
            fused = capture._logits(q, k, mask, scale, extra_mask, fused=True)
            torch.testing.assert_close(fused, eager, atol=1e-5, rtol=1e-5)
