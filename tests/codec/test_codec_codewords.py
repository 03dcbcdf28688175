"""codec.codewords: the one nearest-codeword search and the one Lloyd loop, on inputs small enough
to work out by hand."""

import torch

import codec.codebook_fitting
import codec.quantizer
import codec.trainer.trainable
from codec.codewords import lloyd, nearest


def test_nearest_by_hand_with_a_tie_to_the_lowest_index():
    x = torch.tensor([[0.0, 0.0], [1.0, 1.0], [3.0, 0.0], [2.5, 2.0]])
    codewords = torch.tensor([[0.0, 0.0], [2.0, 2.0], [3.0, 1.0]])
    # (1, 1) is at squared distance 2 from codewords 0 and 1: the lower index wins
    assert nearest(x, codewords).tolist() == [0, 0, 2, 1]
    assert nearest(x, codewords).dtype == torch.int64


def test_lloyd_by_hand_and_an_empty_cluster_keeps_its_center():
    x = torch.tensor([[0.0], [1.0], [10.0], [11.0]])
    start = torch.tensor([[0.0], [1.0], [100.0]])
    assert torch.equal(lloyd(x, start.clone(), 0), start)
    # step 1: {0}, {1, 10, 11}, {} -> 0, 22/3, 100; step 2: {0, 1}, {10, 11}, {} -> 0.5, 10.5, 100
    assert torch.equal(lloyd(x, start.clone(), 1), torch.tensor([[0.0], [22.0 / 3.0], [100.0]]))
    centers = start.clone()
    out = lloyd(x, centers, 2)
    assert out is centers  # in place
    assert torch.equal(centers, torch.tensor([[0.5], [10.5], [100.0]]))


def test_quantizer_fitting_and_training_share_the_one_copy():
    book = codec.quantizer.Codebook(3, 2)
    book.embed.data.copy_(torch.tensor([[0.0, 0.0], [2.0, 2.0], [3.0, 1.0]]))
    assert book.nearest(torch.tensor([[1.0, 1.0], [3.0, 0.0]])).tolist() == [0, 2]
    assert codec.codebook_fitting.nearest is nearest and codec.codebook_fitting.lloyd is lloyd
    assert codec.trainer.trainable.nearest is nearest and codec.trainer.trainable.lloyd is lloyd
    assert not hasattr(codec.codebook_fitting, "_nearest") and not hasattr(codec.trainer.trainable, "_nearest")
