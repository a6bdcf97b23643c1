"""Generic fast-path machinery, numerically the same as eager code: CUDA-graph capture of a step
(cuda_graph.py), graphed batch-1 policy inference (graphed_policy.py) and the batched Sinkhorn of the OT rewards
(sinkhorn.py).

Why a package of its own: at the paper's sizes an update is a few hundred small kernels, so on a GPU the time goes
into launching them (an H100 ran a state update 9x faster in one CUDA graph than eagerly). The learner-specific
fast steps live beside the learners they mirror and are tested against: learning/rl/fast_update.py (the expert
update), learning/rl/batched.py (K experts in one vmapped update), learning/distill/fast_step.py (the
distillation step). On a CPU only the batched Sinkhorn matters (the OT rewards use it everywhere); the rest is
selected by config (`agent.compile`, distillation `compile`).
"""
