"""Fast paths of the learners, numerically the same as their eager code: CUDA graphs, torch.compile, K experts
in one batched update, and the batched Sinkhorn of the OT rewards.

Why a package of its own: at the paper's sizes an update is a few hundred small kernels, so on a GPU the time goes
into launching them (an H100 ran a state update 9x faster in one CUDA graph than eagerly). Everything here keeps
the eager code as the reference it is tested against. On a CPU only the batched Sinkhorn matters (the OT
rewards use it everywhere); the rest is selected by config (`agent.compile`, distillation `compile`).
"""
