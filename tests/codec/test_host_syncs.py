import torch

from codec.host_syncs import count_host_syncs


def test_counts_the_calls_that_wait_for_the_device_and_restores_the_methods():
    original = torch.Tensor.item
    x = torch.arange(4.0)
    with count_host_syncs("cpu") as counts:
        x.sum().item()
        x.tolist()
        x.to("cpu")  # on the CPU a move to the device looks the same: not counted (see the module)
        x.to(torch.float64)
        bool(x[0] > 1)
        float(x[1])
        host = (x * 2).cpu()
        host.tolist()  # already on the host: not counted
        host[0].item()  # a new tensor from a host tensor: counted (conservative)
    assert counts == {"item": 2, "tolist": 1, "cpu": 1, "__bool__": 1, "__float__": 1}
    with count_host_syncs("cuda") as counts:  # other device: nothing counted
        x.sum().item()
    assert not counts and torch.Tensor.item is original
