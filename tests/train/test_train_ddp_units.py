"""The pieces of train/ddp.py that need no processes: how a global batch is split over ranks."""

import pytest

from fakedet.errors import DataError
from fakedet.train.ddp import check_batch, epoch_seed, step_batches


@pytest.mark.parametrize("n,per_step,world", [(16, 4, 2), (17, 4, 2), (19, 6, 3), (10, 8, 4), (9, 3, 1)])
def test_ranks_together_take_the_single_process_steps(n, per_step, world):
    order = list(reversed(range(n)))
    one = step_batches(order, per_step, 0, 1, least=world)
    ranks = [step_batches(order, per_step, r, world, least=world) for r in range(world)]
    assert all(len(r) == len(one) for r in ranks)  # every rank takes as many steps: DDP never waits forever
    for k, step in enumerate(one):
        parts = [r[k] for r in ranks]
        assert all(parts)  # no rank has an empty share
        merged = [parts[i % world][i // world] for i in range(len(step))]  # interleaved back, as gather_batch
        assert merged == step
    taken = sorted(i for s in one for i in s)
    assert taken == sorted(order[: len(taken)]) and n - len(taken) < max(per_step, 1)


def test_a_short_last_step_is_dropped_only_below_the_least():
    assert step_batches(list(range(10)), 4, 0, 1, least=2) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert step_batches(list(range(9)), 4, 0, 1, least=2) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert step_batches(list(range(10)), 4, 1, 2, least=4) == [[1, 3], [5, 7]]


def test_global_batch_must_split_over_the_ranks():
    check_batch(8, 2, 2)
    check_batch(7, 1, 1)
    with pytest.raises(DataError, match="--batch 6 is the global batch \\(3 pairs\\)"):
        check_batch(6, 2, 2)
    with pytest.raises(DataError, match="multiple of 4"):
        check_batch(6, 1, 4)


def test_epoch_seeds_differ_by_rank_and_epoch_and_repeat():
    seeds = {epoch_seed(s, e, r) for s in range(2) for e in range(3) for r in range(4)}
    assert len(seeds) == 24
    assert epoch_seed(1, 2, 3) == epoch_seed(1, 2, 3) and 0 <= epoch_seed(1, 2, 3) < 2**63


def test_eval_refuses_torchrun_with_one_line(tmp_path, monkeypatch, capsys):
    from fakedet.cli import main

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert main(["eval", str(tmp_path), "--data", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "fakedet eval is single-process: run it without torchrun" in err[0]
