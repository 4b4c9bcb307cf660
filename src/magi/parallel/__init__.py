"""Multi-process execution applied from outside the networks (torch.distributed; gloo on CPU, nccl on GPU)."""
