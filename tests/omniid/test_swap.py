"""The identity-swap check's parts: the derangement, own and swapped losses drawn with the same
masks / timesteps / noise in both stages, the gap's bookkeeping, the bootstrap interval, the
held-out frames and the representation's own learning rate."""
from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import torch

from omniid.config import get_preset
from omniid.data import split_holdout
from omniid.train_step import mask_generator
from omniid.objectives import build_objective
from omniid.optim import build_optimizer, set_lr
from omniid.swap import SwapGap, bootstrap_interval, derangement, own_and_swapped
from omniid.swap import evaluate as swap_evaluate
from omniid_fixtures import one_torch_thread  # noqa: F401  (pytest fixture)


@pytest.mark.parametrize("n", range(2, 12))
def test_a_derangement_is_a_permutation_without_fixed_points(n):
    for seed in range(20):
        order = derangement(n, seed)
        assert sorted(order) == list(range(n))
        assert all(order[i] != i for i in range(n))
    assert derangement(n, 3) == derangement(n, 3)  # fixed by its seed


def test_a_derangement_needs_two():
    with pytest.raises(ValueError, match="at least 2"):
        derangement(1)


def _batch(stage: str, b: int = 3) -> dict:
    g = torch.Generator().manual_seed(1)
    preset = get_preset("tiny", stage=stage)
    side, target = preset.model.image_size, (preset.flow.image_size if stage == "flow" else preset.model.image_size)
    return {"identity": [f"id{i}" for i in range(b)], "inputs": torch.randn(b, 3, 3, side, side, generator=g),
            "input_valid": torch.ones(b, 3, dtype=torch.bool),
            "targets": torch.rand(b, 2, 3, target, target, generator=g) * 2 - 1,
            "masks": torch.ones(b, 2, 1, target, target)}


@pytest.mark.parametrize("stage", ["mtd", "flow"])
def test_own_and_swapped_losses_draw_the_same_masks_timesteps_and_noise(stage):
    torch.manual_seed(0)
    model = build_objective(stage, get_preset("tiny", stage=stage)).eval()
    batch = _batch(stage)
    with torch.no_grad():
        if stage == "flow":  # to_v_ip starts at zero: give the tokens a way in, as training would
            for param in model.adapter.parameters():
                param.normal_(0, 0.1)
        tokens = model.represent(batch)
        plain = model(batch, mask_generator(torch.device("cpu"), 0, 1, 0))
        own = model(batch, mask_generator(torch.device("cpu"), 0, 1, 0), tokens=tokens)
        swapped = model(batch, mask_generator(torch.device("cpu"), 0, 1, 0), tokens=tokens[[1, 2, 0]])
    assert torch.equal(plain.loss, own.loss)  # the eval loss is what it was before the check
    assert own.aux.keys() == swapped.aux.keys() and own.aux
    for key in own.aux:  # MTD: the masked patches; flow: t and ε - z (same latents, same noise)
        assert torch.equal(own.aux[key], swapped.aux[key]), key
    assert not torch.equal(own.pred, swapped.pred)  # the tokens did reach the decoder


def test_own_and_swapped_returns_both_losses_and_none_without_an_order():
    torch.manual_seed(0)
    model = build_objective("mtd", get_preset("tiny")).eval()
    batch = _batch("mtd")

    def fresh():
        return mask_generator(torch.device("cpu"), 0, 1, 0)

    with torch.no_grad():
        own, swapped = own_and_swapped(model, batch, fresh, derangement(3, 0))
        alone, none = own_and_swapped(model, batch, fresh, None)
        assert own == alone == model(batch, fresh()).loss.item() and none is None
        assert swapped != own


def test_the_gap_averages_paired_batches_only():
    gap = SwapGap.of([1.0, 2.0, 4.0], [1.5, None, 4.5])
    assert gap.loss == pytest.approx(7 / 3)  # every batch
    assert gap.loss_swapped == pytest.approx(3.0) and gap.swap_gap == pytest.approx(0.5)  # batches 0 and 2
    assert gap.swap_gap_rel == pytest.approx(0.5 / 2.5)
    assert gap.record("heldout") == {"heldout_loss": gap.loss, "heldout_loss_swapped": 3.0,
                                     "heldout_swap_gap": gap.swap_gap, "heldout_swap_gap_rel": gap.swap_gap_rel,
                                     "heldout_swap_loss_own": 2.5, "heldout_swap_batches": 2, "heldout_batches": 3}
    assert not gap.near_zero(0.1) and gap.near_zero(0.5)
    assert SwapGap.of([1.0], [1.0 - 1e-3]).near_zero(1e-3)  # a negative gap is near zero too
    lone = SwapGap.of([1.0], [None])
    assert lone.swap_gap is None and not lone.near_zero(1e-3) and "no batch" in lone.describe()
    assert (lone.swap_loss_own, lone.swap_batches, lone.batches) == (None, 0, 1)


def test_a_set_with_unpaired_batches_prints_the_own_loss_its_gap_is_taken_from():
    """Batch 1 has no pair: the line must not put the every-batch loss (7/3) beside the paired
    batches' swapped loss (3.0) as if +0.5 were their difference; it names both sets and counts."""
    gap = SwapGap.of([1.0, 2.0, 4.0], [1.5, None, 4.5])
    assert gap.describe() == ("loss 2.33333 over 3 batches; on the 2 with two identities or more: own 2.50000 "
                              "swapped 3.00000 swap gap +0.50000 (+20.00%)")
    whole = SwapGap.of([1.0, 4.0], [1.5, 4.5])  # every batch paired: one loss, as before
    assert whole.describe() == "loss 2.50000 swapped 3.00000 swap gap +0.50000 (+20.00%)"
    assert whole.swap_loss_own == whole.loss and whole.swap_batches == whole.batches == 2
    with pytest.raises(ValueError, match="one each a batch"):
        SwapGap.of([1.0, 2.0], [1.5])


def test_evaluate_takes_both_terms_of_the_gap_from_the_same_batches():
    """The real tiny MTD objective on a batch of 3 identities and one of 1 (no pair): the gap and
    its relative size come from batch 0's own and swapped losses alone, the loss from both."""
    torch.manual_seed(0)
    model = build_objective("mtd", get_preset("tiny")).eval()
    paired, single = _batch("mtd", 3), _batch("mtd", 1)
    generator = partial(mask_generator, torch.device("cpu"), 0, 1)
    result = swap_evaluate(model, [paired, single], generator, seed=0)
    with torch.no_grad():
        own, swapped = own_and_swapped(model, paired, partial(generator, 0), derangement(3, 0))
        alone = model(single, generator(1)).loss.item()
    assert (result.swap_batches, result.batches) == (1, 2)
    assert result.swap_loss_own == pytest.approx(own) and result.loss_swapped == pytest.approx(swapped)
    assert result.swap_gap == pytest.approx(swapped - own)
    assert result.swap_gap_rel == pytest.approx((swapped - own) / own)
    assert result.loss == pytest.approx((own + alone) / 2)
    record = result.record("eval")
    assert record["eval_loss_swapped"] - record["eval_swap_loss_own"] == pytest.approx(record["eval_swap_gap"])


def test_the_bootstrap_interval_is_seeded_and_holds_the_mean():
    values = [0.1, 0.3, 0.2, 0.5, 0.0]
    mean, low, high = bootstrap_interval(values, 500, seed=4)
    assert mean == pytest.approx(np.mean(values)) and low < mean < high
    assert bootstrap_interval(values, 500, seed=4) == (mean, low, high)
    assert bootstrap_interval([0.2], 100) == (0.2, 0.2, 0.2)
    assert all(np.isnan(v) for v in bootstrap_interval([float("nan")]))


def test_holdout_keeps_each_identitys_last_faces_out():
    identities = {"a": list("abcdef"), "b": list("xyz"), "c": list("pq")}
    kept, held = split_holdout(identities, 2)
    assert kept == {"a": list("abcd"), "b": ["x"], "c": list("pq")}
    assert held == {"a": list("ef"), "b": list("yz")}  # c has too few faces to lose any
    assert split_holdout(identities, 0) == (identities, {})


def test_the_representation_can_learn_at_its_own_rate():
    torch.manual_seed(0)
    model = build_objective("mtd", get_preset("tiny"))
    plain = build_optimizer(model, get_preset("tiny").optim)
    assert len(plain.param_groups) == 2 and "lr_scale" not in plain.param_groups[0]
    optimizer = build_optimizer(model, get_preset("tiny", **{"optim.representation_lr_scale": 0.01}).optim)
    set_lr(optimizer, 1e-3)
    encoder = {id(p) for p in model.encoder.parameters()}
    for group in optimizer.param_groups:
        inside = {id(p) in encoder for p in group["params"]}
        assert len(inside) <= 1  # a group is all encoder or none of it
        assert group["lr"] == pytest.approx(1e-5 if inside == {True} else 1e-3)
    assert sum(len(g["params"]) for g in optimizer.param_groups) == sum(len(g["params"]) for g in plain.param_groups)
