"""SinkObserver on hand-built tensors: blocks, padding and learned sinks against direct formulas."""
import torch

from sinkfix.capture.observers import SinkObserver


def _batch(lengths, heads=2, kv_heads=1, d=3, seed=0, sink=False):
    """Right-padded causal probabilities [B, H, T, T] with the mask a model would add, plus values.

    With ``sink``, a learned sink logit per head is one more softmax column (gpt-oss); its mass
    [B, H, T] is returned as well.
    """
    torch.manual_seed(seed)
    batch, width = len(lengths), max(lengths)
    scores = torch.randn(batch, heads, width, width)
    minimum = torch.finfo(torch.float32).min
    for b, n in enumerate(lengths):
        visible = torch.ones(width, width).tril().bool()
        visible[:, n:] = False  # padding keys are hidden from every query
        scores[b] = scores[b] + torch.where(visible, 0.0, minimum)
    value = torch.randn(batch, kv_heads, width, d)
    if not sink:
        return scores.softmax(dim=-1), scores, value
    column = torch.randn(1, heads, 1, 1).expand(batch, heads, width, 1)
    full = torch.cat([scores, column], dim=-1).softmax(dim=-1)
    return full[..., :-1], scores, value, full[..., -1]


def _feed(observer, layer, probs, scores, value, block, sink=None):
    for start in range(0, probs.shape[-2], block):
        stop = start + block
        part = None if sink is None else sink[:, :, start:stop]
        observer.observe(layer, probs[:, :, start:stop], value, scores[:, :, start:stop], start=start, sink_mass=part)


def test_blocks_and_padding_against_direct_formulas():
    lengths = [5, 3]
    probs, scores, value, sink = _batch(lengths, sink=True)
    sink[1, :, 3:] = 99.0  # padding rows: must not reach the mean
    observer = SinkObserver(keep_maps=True, lengths=lengths)
    _feed(observer, 0, probs, scores, value, block=2, sink=sink)
    for b, n in enumerate(lengths):
        seq = observer.sequence(b)
        real = probs[b, :, :n, :n]  # the sequence alone: its rows and columns
        torch.testing.assert_close(seq.received[0], real.sum(dim=-2) / n)
        mass = sink[b, :, :n]  # the row's distribution: the real keys plus the sink column
        entropy = (-torch.special.xlogy(real, real).sum(dim=-1) - torch.special.xlogy(mass, mass)).mean(dim=-1)
        torch.testing.assert_close(seq.entropy[0], entropy, atol=1e-5, rtol=0)
        torch.testing.assert_close(seq.maps[0], real)
        torch.testing.assert_close(seq.value_norm_head[0], value[b, :, :n].norm(dim=-1))
        torch.testing.assert_close(seq.learned_sink_mass[0], sink[b, :, :n].mean(dim=-1))
        assert seq.projected is None


def test_reductions_are_float32_and_on_cpu_for_bfloat16_inputs():
    probs, scores, value = _batch([4])
    observer = SinkObserver(keep_maps=False)
    _feed(observer, 0, probs.bfloat16(), scores.bfloat16(), value.bfloat16(), block=3)
    seq = observer.sequence(0)
    assert seq.received.dtype == torch.float32 and seq.received.device.type == "cpu" and seq.maps is None
    torch.testing.assert_close(seq.received[0], probs[0].mean(dim=-2), atol=1e-2, rtol=0)


def test_projected_norms_with_gqa():
    probs, scores, value = _batch([4], heads=4, kv_heads=2, d=3)
    w_o = torch.randn(6, 4 * 3)  # hidden x (H * d)
    grams = torch.stack([w_o[:, h * 3:(h + 1) * 3].T @ w_o[:, h * 3:(h + 1) * 3] for h in range(4)])
    observer = SinkObserver(keep_maps=False, output_grams=[grams])
    _feed(observer, 0, probs, scores, value, block=4)
    projected = observer.sequence(0).projected[0]
    for h in range(4):
        direct = (value[0, h // 2] @ w_o[:, h * 3:(h + 1) * 3].T).norm(dim=-1)
        torch.testing.assert_close(projected[h], direct, atol=1e-5, rtol=1e-5)


def test_layer_progress_and_out_of_order_blocks():
    probs, scores, value = _batch([4])
    done = []
    observer = SinkObserver(keep_maps=False, on_layer=done.append)
    _feed(observer, 0, probs, scores, value, block=3)
    _feed(observer, 1, probs, scores, value, block=4)
    assert done == [1, 2] and observer.sequence(0).received.shape == (2, 2, 4)
    try:
        observer.observe(2, probs[:, :, 2:], value, scores[:, :, 2:], start=2)
    except RuntimeError as error:
        assert "out of order" in str(error)
    else:
        raise AssertionError("a block that does not follow the previous one must be refused")
